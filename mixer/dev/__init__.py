"""Developer tools that ship with mixer: ``mixer dev tiny-model`` makes the tiny offline model the tests
and the README's CPU loop train, so that loop runs without a download."""
