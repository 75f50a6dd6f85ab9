"""Pinned inputs: builds refuse a file that differs from its pin, `mixer pin` writes pins into the
recipe text, and `mixer fetch` downloads through a verified, resumable temporary file (tested
against a local HTTP server that cuts connections and sends wrong bodies)."""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mixer.cli import app
from mixer.core.errors import MixerError
from mixer.recipe.fetch import download
from tests.conftest import flan_rows, write_jsonl

runner = CliRunner()
BODY = b"".join(b'{"inputs": "question %d", "targets": "%d"}\n' % (i, i) for i in range(4000))
SHA = hashlib.sha256(BODY).hexdigest()


class Server:
    """Serves ``files`` on 127.0.0.1; ``cut[path]`` cuts the next N responses of a path halfway,
    ``ranges`` turns range requests on or off; ``requests`` logs (path, Range header)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and server.ranges:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if server.cut.get(self.path, 0) > 0:
                    server.cut[self.path] -= 1
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    thread = threading.Thread(target=s.httpd.serve_forever, daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_fetch_downloads_verifies_the_pin_and_leaves_no_part_file(server: Server, tmp_path: Path) -> None:
    server.files["/flan.jsonl"] = BODY
    dest = download(f"{server.url}/flan.jsonl", tmp_path / "raw" / "flan.jsonl", sha256=SHA)
    assert dest.read_bytes() == BODY
    assert sorted(p.name for p in dest.parent.iterdir()) == ["flan.jsonl"]


def test_a_connection_cut_mid_file_keeps_the_part_and_the_next_fetch_resumes_it(server: Server,
                                                                                 tmp_path: Path) -> None:
    server.files["/flan.jsonl"] = BODY
    server.cut["/flan.jsonl"] = 1
    dest = tmp_path / "flan.jsonl"
    with pytest.raises(MixerError, match="resumes") as e:
        download(f"{server.url}/flan.jsonl", dest, sha256=SHA)
    assert "connection" in str(e.value).lower() or "incompleteread" in str(e.value).lower()
    assert not dest.exists()
    part = tmp_path / "flan.jsonl.part"
    assert 0 < part.stat().st_size < len(BODY)
    offset = part.stat().st_size
    download(f"{server.url}/flan.jsonl", dest, sha256=SHA)
    assert dest.read_bytes() == BODY and not part.exists()
    assert server.requests[-1] == ("/flan.jsonl", f"bytes={offset}-")


def test_a_server_that_ignores_ranges_makes_the_download_start_over_cleanly(server: Server, tmp_path: Path) -> None:
    server.files["/flan.jsonl"] = BODY
    (tmp_path / "flan.jsonl.part").write_bytes(BODY[:1000])
    server.ranges = False
    download(f"{server.url}/flan.jsonl", tmp_path / "flan.jsonl", sha256=SHA)
    assert (tmp_path / "flan.jsonl").read_bytes() == BODY


def test_a_wrong_body_is_removed_and_named_with_both_hashes(server: Server, tmp_path: Path) -> None:
    server.files["/flan.jsonl"] = b"<html>rate limited</html>"
    with pytest.raises(MixerError) as e:
        download(f"{server.url}/flan.jsonl", tmp_path / "flan.jsonl", sha256=SHA)
    actual = hashlib.sha256(b"<html>rate limited</html>").hexdigest()
    assert SHA in str(e.value) and actual in str(e.value) and "flan.jsonl" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_gzip_url_is_decompressed_and_the_pin_is_the_decompressed_file(server: Server, tmp_path: Path) -> None:
    server.files["/trees.jsonl.gz"] = gzip.compress(BODY, mtime=0)
    download(f"{server.url}/trees.jsonl.gz", tmp_path / "trees.jsonl", sha256=SHA)
    assert (tmp_path / "trees.jsonl").read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trees.jsonl"]


def _recipe(tmp_path: Path, files: list, **top: object) -> Path:
    path = tmp_path / "recipe.yaml"
    data = {"name": "pinned", "raw_dir": str(tmp_path / "raw"), "output": str(tmp_path / "out"), **top,
            "sources": [{"name": "flan_v2", "files": files}]}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_mixer_fetch_cli_downloads_then_keeps_a_verified_file(server: Server, tmp_path: Path) -> None:
    server.files["/flan.jsonl"] = BODY
    recipe = _recipe(tmp_path, [{"path": "flan.jsonl", "url": f"{server.url}/flan.jsonl", "sha256": SHA}])
    first = runner.invoke(app, ["fetch", str(recipe)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["fetch", str(recipe)])
    assert again.exit_code == 0 and "pin verified" in again.output
    assert len(server.requests) == 1
    (tmp_path / "raw" / "flan.jsonl").write_bytes(b"edited\n")
    changed = runner.invoke(app, ["fetch", str(recipe)])
    assert changed.exit_code == 2 and "--force" in changed.output
    assert (tmp_path / "raw" / "flan.jsonl").read_bytes() == b"edited\n"


def test_build_refuses_a_file_that_differs_from_its_pin(tmp_path: Path) -> None:
    raw = write_jsonl(tmp_path / "raw" / "flan.jsonl", flan_rows(10))
    recipe = _recipe(tmp_path, [{"path": "flan.jsonl", "sha256": "0" * 64}])
    result = runner.invoke(app, ["build", str(recipe), "-q"])
    assert result.exit_code == 2
    actual = hashlib.sha256(raw.read_bytes()).hexdigest()
    assert "flan.jsonl" in result.output and "0" * 64 in result.output and actual in result.output
    assert not (tmp_path / "out").exists()


def test_a_malformed_pin_is_a_recipe_error_naming_the_key(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "raw" / "flan.jsonl", flan_rows(10))
    recipe = _recipe(tmp_path, [{"path": "flan.jsonl", "sha256": "abc"}])
    result = runner.invoke(app, ["build", str(recipe), "-q"])
    assert result.exit_code == 2 and "files[0].sha256" in result.output


def test_mixer_pin_writes_the_pins_keeping_comments_and_then_the_build_passes(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for name in ("a.jsonl", "b.jsonl", "c.jsonl", "d.jsonl"):
        write_jsonl(raw / name, flan_rows(5, prefix=name))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""# my recipe, with comments that must survive
name: pinned
raw_dir: {raw}
output: {tmp_path / "out"}
sources:
  - name: flan_v2
    files:
      - a.jsonl            # plain entry
      - path: b.jsonl
        url: https://example.org/b.jsonl   # block mapping
      - {{path: c.jsonl, url: https://example.org/c.jsonl}}
      - {{path: d.jsonl, sha256: {"ab" * 32}}}
    take: all
""", encoding="utf-8")
    result = runner.invoke(app, ["pin", str(recipe)])
    assert result.exit_code == 0, result.output
    text = recipe.read_text(encoding="utf-8")
    assert "# my recipe, with comments that must survive" in text and "# block mapping" in text
    files = yaml.safe_load(text)["sources"][0]["files"]
    digests = {n: hashlib.sha256((raw / n).read_bytes()).hexdigest() for n in ("a.jsonl", "b.jsonl", "c.jsonl",
                                                                              "d.jsonl")}
    assert [f["sha256"] for f in files] == list(digests.values())
    assert files[1]["url"] == "https://example.org/b.jsonl"
    built = runner.invoke(app, ["build", str(recipe), "-q"])
    assert built.exit_code == 0, built.output
    write_jsonl(raw / "c.jsonl", flan_rows(6, prefix="c.jsonl"))
    refused = runner.invoke(app, ["build", str(recipe), "-q"])
    assert refused.exit_code == 2 and "c.jsonl" in refused.output


def test_mixer_pin_pins_a_symlinked_recipe_where_it_lives_and_keeps_its_mode(tmp_path: Path) -> None:
    import os

    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(3))
    shared = tmp_path / "shared" / "recipe.yaml"
    shared.parent.mkdir()
    shared.write_text(f"name: t\nraw_dir: {tmp_path / 'raw'}\nsources:\n  - name: flan_v2\n    files: [a.jsonl]\n",
                      encoding="utf-8")
    shared.chmod(0o640)
    link = tmp_path / "recipe.yaml"
    link.symlink_to(shared)
    result = runner.invoke(app, ["pin", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(shared)
    assert "sha256:" in shared.read_text(encoding="utf-8") and shared.stat().st_mode & 0o777 == 0o640


def test_mixer_pin_leaves_a_pinned_recipe_untouched_and_names_the_globs_it_cannot_pin(tmp_path: Path) -> None:
    import os

    for name in ("a.jsonl", "b1.jsonl"):
        write_jsonl(tmp_path / "raw" / name, flan_rows(3, prefix=name))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: t\nraw_dir: {tmp_path / 'raw'}\nsources:\n  - name: flan_v2\n    files: [a.jsonl]\n"
                      "  - name: more\n    adapter: flan_v2\n    files: ['b*.jsonl']\n", encoding="utf-8")
    assert runner.invoke(app, ["pin", str(recipe)]).exit_code == 0
    earlier = recipe.stat().st_mtime_ns - 10**9  # a rewrite shows whatever the clock's resolution
    os.utime(recipe, ns=(earlier, earlier))
    again = runner.invoke(app, ["pin", str(recipe)])
    assert again.exit_code == 0 and "(unchanged)" in again.output
    assert recipe.stat().st_mtime_ns == earlier
    assert "not pinned" in again.output and "more: b*.jsonl" in again.output


def test_mixer_fetch_with_nothing_to_fetch_says_so_and_exits_0(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "raw" / "flan.jsonl", flan_rows(3))
    result = runner.invoke(app, ["fetch", str(_recipe(tmp_path, ["flan.jsonl"]))])
    assert result.exit_code == 0, result.output
    assert "nothing to fetch" in result.output


def test_mixer_fetch_tries_every_file_and_lists_the_failures_at_the_end(server: Server, tmp_path: Path) -> None:
    server.files["/b.jsonl"] = BODY  # a and c fail (404, as a server does offline behind a proxy), b comes
    files = [{"path": f"{n}.jsonl", "url": f"{server.url}/{n}.jsonl"} for n in "abc"]
    result = runner.invoke(app, ["fetch", str(_recipe(tmp_path, files))])
    assert result.exit_code == 2
    text = result.output.replace("\n", " ")
    assert "2 of 3 files could not be fetched (1 downloaded" in text
    assert "a.jsonl" in text and "c.jsonl" in text and "Traceback" not in text
    assert (tmp_path / "raw" / "b.jsonl").read_bytes() == BODY
    assert [p for p, _ in server.requests] == ["/a.jsonl", "/b.jsonl", "/c.jsonl"]


def test_a_second_mixer_pin_says_how_many_files_were_already_pinned(tmp_path: Path) -> None:
    # "pinned 0 of 2 files" read as if nothing could be pinned; the files were pinned by the first run
    for name in ("a.jsonl", "b.jsonl"):
        write_jsonl(tmp_path / "raw" / name, flan_rows(3, prefix=name))
    recipe = _recipe(tmp_path, ["a.jsonl", "b.jsonl"])
    first = runner.invoke(app, ["pin", str(recipe)])
    assert first.exit_code == 0 and "pinned 2 of 2 files" in first.output and "already" not in first.output
    write_jsonl(tmp_path / "raw" / "b.jsonl", flan_rows(4, prefix="b"))  # one file changes: re-pinned
    second = runner.invoke(app, ["pin", str(recipe)])
    assert second.exit_code == 0 and "pinned 1 of 2 files" in second.output
    assert "(1 already pinned, unchanged)" in second.output
    third = runner.invoke(app, ["pin", str(recipe)])
    assert third.exit_code == 0 and "pinned 0 of 2 files" in third.output
    assert "(2 already pinned, unchanged)" in third.output


def test_an_offline_fetch_leaves_no_empty_folder_it_made_and_keeps_the_ones_it_found(tmp_path: Path) -> None:
    # offline, `mixer fetch` left an empty <raw>/cot/ (and <raw>/flan/) per source behind
    raw = tmp_path / "raw"
    (raw / "mine").mkdir(parents=True)  # an empty folder the user made: not fetch's to remove
    closed = "http://127.0.0.1:9"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "raw_dir": str(raw), "sources": [
        {"name": "cot", "files": [{"path": "cot/deep/x.jsonl", "url": f"{closed}/x.jsonl"}]},
        {"name": "flan_v2", "files": [{"path": "mine/y.jsonl", "url": f"{closed}/y.jsonl"}]}]}), encoding="utf-8")
    result = runner.invoke(app, ["fetch", str(recipe)])
    assert result.exit_code == 2 and "2 of 2 files could not be fetched" in result.output
    assert sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*")) == ["mine"]
