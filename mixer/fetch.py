"""``mixer fetch``: download the raw files a recipe names, for users who have the network."""

from __future__ import annotations

import gzip
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console

from mixer.errors import MixerError
from mixer.recipe import Recipe, SourceFile

TIMEOUT_S = 60


def fetch_recipe(recipe: Recipe, *, force: bool = False, console: Console | None = None) -> list[Path]:
    """Download every file with a ``url`` that is not already under ``raw_dir``.

    A ``.gz`` URL for a file whose recipe name lacks ``.gz`` is decompressed on the way (OASST1's
    trees). Hugging Face gated files (LIMA) need ``HF_TOKEN`` in the environment.
    """
    import os

    fetched: list[Path] = []
    targets = [(s.name, f) for s in recipe.sources for f in s.files]
    benches = recipe.decontaminate.benchmarks if recipe.decontaminate else ()
    for b in benches:
        for path, url in zip(b.files, b.url, strict=False):
            targets.append((f"benchmark {b.name}", SourceFile(path, url)))
    if not any(f.url for _, f in targets):
        raise MixerError(f"{recipe.path}: no file in this recipe has a 'url' to fetch")
    for source, f in targets:
        if not f.url:
            continue
        dest = Path(recipe.raw_dir) / f.path
        if dest.exists() and not force:
            if console:
                console.print(f"{dest}: already there", highlight=False)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        request = urllib.request.Request(f.url, headers={"User-Agent": "mixer-fetch"})
        token = os.environ.get("HF_TOKEN")
        if token and "huggingface.co" in f.url:
            request.add_header("Authorization", f"Bearer {token}")
        if console:
            console.print(f"{source}: {f.url} -> {dest}", highlight=False)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(part, "wb") as sink:
                stream = gzip.GzipFile(fileobj=response) if f.url.endswith(".gz") and \
                    not dest.name.endswith(".gz") else response
                shutil.copyfileobj(stream, sink, 1 << 20)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            part.unlink(missing_ok=True)
            reason = getattr(e, "reason", e)
            raise MixerError(f"cannot download {dest} for source {source!r} from {f.url}: {reason} "
                             "(no network here? download it elsewhere and copy it to that path)") from None
        os.replace(part, dest)
        fetched.append(dest)
    return fetched
