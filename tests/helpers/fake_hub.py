"""A Hugging Face Hub on 127.0.0.1 that answers the calls ``huggingface_hub`` makes for a dataset: repo
info at a revision (``/api/datasets/<repo>/revision/<rev>``), the tree listing (``/api/datasets/<repo>/tree/
<rev>/<folder>``) and file downloads (``HEAD``/``GET /datasets/<repo>/resolve/<rev>/<path>`` with the
``X-Repo-Commit``, ``ETag`` and ``Content-Length`` headers the client needs). Errors carry the Hub's
``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), from which the client
raises its typed errors. Point ``HF_ENDPOINT`` at ``FakeHub.url``.

Repos are in memory: ``push(repo, files, ref="main")`` makes a commit (a sha1 of its contents) and moves
the ref to it, so a file changed under the same revision name is one more ``push``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class FakeRepo:
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                hub._answer(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def push(self, repo: str, files: dict[str, bytes], ref: str = "main") -> str:
        """A commit holding exactly ``files``; ``ref`` (a branch or tag) now points at it."""
        r = self.repos.setdefault(repo, FakeRepo())
        digest = hashlib.sha1(repr(sorted(files.items())).encode() + repo.encode())
        commit = digest.hexdigest()
        r.commits[commit] = dict(files)
        r.refs[ref] = commit
        return commit

    # -- serving ----------------------------------------------------------------------------------

    def _commit(self, repo: FakeRepo, revision: str) -> str | None:
        if revision in repo.commits:
            return revision
        return repo.refs.get(revision)

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        url = urlsplit(h.path)
        self.requests.append(f"{h.command} {url.path}")
        parts = url.path.split("/")
        # /api/datasets/<org>/<name>/(revision|tree)/<rev>[/<path>...]
        if parts[1:3] == ["api", "datasets"] and len(parts) >= 7:
            repo_id, kind, rev, rest = f"{parts[3]}/{parts[4]}", parts[5], unquote(parts[6]), parts[7:]
        # /datasets/<org>/<name>/resolve/<rev>/<path...>
        elif parts[1] == "datasets" and len(parts) >= 7 and parts[4] == "resolve":
            repo_id, kind, rev, rest = f"{parts[2]}/{parts[3]}", "resolve", unquote(parts[5]), parts[6:]
        else:
            return self._error(h, 404, "RepoNotFound", "no such route")
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", f"Repository Not Found for url: {url.path}")
        commit = self._commit(repo, rev)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
        files = repo.commits[commit]
        path = unquote("/".join(rest))
        if kind == "revision":
            return self._json(h, {"id": repo_id, "sha": commit, "private": False,
                                  "siblings": [{"rfilename": p} for p in sorted(files)]}, body)
        if kind == "tree":
            prefix = path.rstrip("/") + "/" if path else ""
            if prefix and not any(p.startswith(prefix) for p in files):
                return self._error(h, 404, "EntryNotFound", f"{path} does not exist", commit)
            entries = [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                       for p, b in sorted(files.items()) if p.startswith(prefix)]
            return self._json(h, entries, body)
        if kind == "resolve":
            if path not in files:
                return self._error(h, 404, "EntryNotFound", f"{path} does not exist", commit)
            data = files[path]
            h.send_response(200)
            h.send_header("X-Repo-Commit", commit)
            h.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
            h.send_header("Content-Length", str(len(data)))
            h.send_header("Content-Type", "application/octet-stream")
            h.end_headers()
            if body:
                h.wfile.write(data)
            return None
        return self._error(h, 404, "EntryNotFound", "no such route")

    def _json(self, h: BaseHTTPRequestHandler, value: object, body: bool) -> None:
        data = json.dumps(value).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str,
               commit: str | None = None) -> None:
        data = json.dumps({"error": message}).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
