"""``mixer fetch``: download the raw files a recipe names, for users who have the network.

A download never leaves a file under its final name that is not the whole, verified file: bytes go
to ``<file>.part``, the size is checked against what the server announced and the sha256 against
the recipe's pin (``sha256:``), and only then is the file renamed into place. An interrupted
download (connection cut, Ctrl-C, kill) keeps its ``.part``, and the next ``mixer fetch`` resumes it
with an HTTP range request, or starts over when the server does not resume. A body that does not
match its pin is deleted and reported with both hashes. An existing file is never replaced unless
``--force`` asks for it.
"""

from __future__ import annotations

import gzip
import http.client
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from mixer.core.digest import file_sha256
from mixer.core.errors import MixerError
from mixer.recipe.load import Recipe, SourceFile

TIMEOUT_S = 60
CHUNK = 1 << 20


def fetch_recipe(recipe: Recipe, *, force: bool = False, console: Console | None = None) -> list[Path]:
    """Download every file with a ``url`` that is not already under ``raw_dir``, and every ``hf`` entry's
    files into the Hugging Face cache.

    A ``.gz`` URL for a file whose recipe name lacks ``.gz`` is decompressed after the download
    (OASST1's trees); the pin is the decompressed file's. Hugging Face gated files (LIMA) need
    ``HF_TOKEN`` in the environment. An existing file is kept (and checked against its pin) unless
    ``force``.
    """
    fetched: list[Path] = []
    targets = [(s.name, f) for s in recipe.sources for f in s.files]
    benches = recipe.decontaminate.benchmarks if recipe.decontaminate else ()
    for b in benches:
        for path, url in zip(b.files, b.url, strict=False):
            targets.append((f"benchmark {b.name}", SourceFile(path, url)))
    if not any(f.url or f.is_hub for _, f in targets):
        if console:
            console.print(f"nothing to fetch: no file in {recipe.path} has a 'url' or 'hf' (its files are expected "
                          f"under {recipe.raw_dir})", highlight=False)
        return fetched
    failed: list[str] = []
    wanted = 0
    for source, f in targets:
        if f.is_hub:
            fetched.extend(_fetch_hub(source, f, console, force))
            continue
        if not f.url:
            continue
        wanted += 1
        try:
            got = _fetch_one(recipe, source, f, force=force, console=console)
        except MixerError as e:  # every file is tried: offline, a user wants the whole list at once
            failed.append(str(e))
            continue
        if got is not None:
            fetched.append(got)
    if failed:
        raise MixerError(f"{len(failed)} of {wanted} files could not be fetched ({len(fetched)} downloaded, "
                         f"{wanted - len(failed) - len(fetched)} already there):\n"
                         + "\n".join(f"  - {m}" for m in failed))
    return fetched


def _fetch_hub(source: str, f: SourceFile, console: Console | None, force: bool) -> list[Path]:
    """A Hub entry's files into the Hugging Face cache (``mixer.recipe.hub``), checked against its pins."""
    from mixer.recipe.hub import resolve_entry

    def warn(message: str) -> None:
        if console:
            console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    r = resolve_entry(source, f, warn=warn, force=force)
    if console:
        pinned = " (pins verified)" if f.hub_pins else ""
        console.print(f"{source}: {len(r.files)} files of hf://datasets/{r.repo}@{r.commit} in the Hugging Face "
                      f"cache{pinned}", highlight=False)
    return [h.local for h in r.files]


def _fetch_one(recipe: Recipe, source: str, f: SourceFile, *, force: bool, console: Console | None) -> Path | None:
    """One file with a ``url``: downloaded (its path), or kept because it is already there (None)."""
    assert f.url is not None
    dest = Path(recipe.raw_dir) / f.path
    if dest.exists() and not force:
        if dest.is_dir():
            raise MixerError(f"{dest}: a folder is where source {source!r} downloads its file")
        if f.sha256 and file_sha256(dest) != f.sha256:
            raise MixerError(f"{dest}: exists and differs from the recipe's pin (expected sha256 {f.sha256}, "
                             f"found {file_sha256(dest)}); pass --force to download it again over it")
        if console:
            console.print(f"{dest}: already there" + (" (pin verified)" if f.sha256 else ""), highlight=False)
        return None
    if console:
        console.print(f"{source}: {f.url} -> {dest}", highlight=False)
    return download(f.url, dest, sha256=f.sha256, source=source)


def download(url: str, dest: Path, *, sha256: str | None = None, source: str = "") -> Path:
    """Download ``url`` to ``dest`` through ``dest.part`` (resumed when present), verify, rename.

    The folders this call creates for ``dest`` are removed again when the download fails and leaves them
    empty (offline, ``mixer fetch`` left an empty ``<raw>/cot/`` per source); a folder that was there
    before, or that holds anything (a ``.part`` kept to resume), stays."""
    made = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]  # deepest first
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _download_into(url, dest, sha256=sha256, source=source)
    except MixerError:
        for folder in made:
            try:
                folder.rmdir()  # only when empty: what it holds is never removed
            except OSError:
                break
        raise


def _download_into(url: str, dest: Path, *, sha256: str | None, source: str) -> Path:
    """``download``'s work, once ``dest``'s folder exists."""
    gunzip = url.endswith(".gz") and not dest.name.endswith(".gz")
    part = dest.with_name(dest.name + (".gz.part" if gunzip else ".part"))
    what = f"{dest} for source {source!r} from {url}" if source else f"{dest} from {url}"
    try:
        _download_part(url, part)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        kept = f"; the {part.stat().st_size:,} bytes received are kept in {part} and the next `mixer fetch` " \
               "resumes" if part.exists() and part.stat().st_size else ""
        if part.exists() and not kept:
            part.unlink()  # opened but nothing came: nothing to resume
        raise MixerError(f"cannot download {what}: {reason}{kept} (no network here? download it elsewhere and "
                         "copy it to that path)") from None
    body = part
    if gunzip:
        body = dest.with_name(dest.name + ".part")
        try:
            with gzip.open(part, "rb") as src, open(body, "wb") as sink:
                shutil.copyfileobj(src, sink, CHUNK)
        except (OSError, EOFError) as e:
            part.unlink(missing_ok=True)
            body.unlink(missing_ok=True)
            raise MixerError(f"{what}: the download is not a valid gzip file ({e}); it was removed, run "
                             "`mixer fetch` again") from None
        part.unlink()
    if sha256:
        actual = file_sha256(body)
        if actual != sha256:
            body.unlink()
            raise MixerError(f"{what}: the downloaded file differs from the recipe's pin: expected sha256 {sha256}, "
                             f"found {actual}; it was removed (the server sent other bytes than the pinned "
                             "file: a new upload, or a proxy's error page)")
    os.replace(body, dest)
    return dest


def _request(url: str, offset: int) -> urllib.request.Request:
    request = urllib.request.Request(url, headers={"User-Agent": "mixer-fetch"})
    token = os.environ.get("HF_TOKEN")
    if token and "huggingface.co" in url:
        request.add_header("Authorization", f"Bearer {token}")
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return request


def _download_part(url: str, part: Path) -> None:
    """Fill ``part`` with the whole body of ``url``: resume from its size when the server answers the
    range request (206), else start over. Raises ``OSError`` when fewer bytes arrive than announced."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = urllib.request.urlopen(_request(url, offset), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left past our bytes: the part may be whole already
            total = _total_from_content_range(e.headers.get("Content-Range"))
            if total == offset:
                return
            part.unlink()  # a part longer than the file: not this file's bytes
            return _download_part(url, part)
        raise
    with response:
        resumed = offset and response.status == 206 and \
            (response.headers.get("Content-Range") or "").startswith(f"bytes {offset}-")
        if resumed:
            total = _total_from_content_range(response.headers.get("Content-Range"))
        else:
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with open(part, "ab" if resumed else "wb") as sink:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except http.client.IncompleteRead as e:  # cut mid-body: keep what came, to resume
                    sink.write(e.partial)
                    raise
                if not chunk:
                    break
                sink.write(chunk)
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(f"connection closed after {size:,} of {total:,} bytes")


def _total_from_content_range(value: str | None) -> int | None:
    """``bytes 100-199/1000`` or ``bytes */1000`` -> 1000."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None
