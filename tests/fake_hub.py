"""A local stand-in for the Hugging Face Hub's model and dataset API, enough for huggingface_hub's
`repo_info`, `snapshot_download` and `hf_hub_download` (repo info, recursive tree, file HEAD/GET, the
error codes the client maps to its exceptions). Point HF_ENDPOINT at `url`; `requests` lists the paths
asked for."""

from __future__ import annotations

import hashlib
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class FakeRepo:
    sha: str
    files: dict[str, bytes]
    gated: bool = False
    branches: tuple[str, ...] = ("main",)


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo]
    datasets: dict[str, FakeRepo] = field(default_factory=dict)
    api_status: int | None = None  # answer every API call with this status (e.g. 503), when set
    url: str = ""
    requests: list[str] = field(default_factory=list)

    @staticmethod
    def repo_from_folder(folder: Path, sha: str, extra: dict[str, bytes] | None = None) -> FakeRepo:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return FakeRepo(sha=sha, files={**files, **(extra or {})})


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, head: bool = False):
        body = json.dumps({"error": code}).encode()
        self._send(status, body, {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json"},
                   head)

    def _resolve(self, repo_id: str, revision: str | None, head: bool = False, kind: str = "models",
                 download: bool = False):
        repo = (self.hub.repos if kind == "models" else self.hub.datasets).get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", head)
            return None
        if repo.gated and download:  # as on the Hub: a gated repo's info and file list are public
            self._error(403, "GatedRepo", head)
            return None
        if revision not in (None, repo.sha, *repo.branches):
            self._error(404, "RevisionNotFound", head)
            return None
        return repo

    def _route(self, head: bool):
        path = unquote(urlparse(self.path).path)
        self.hub.requests.append(f"{self.command} {path}")
        parts = path.strip("/").split("/")
        kind = "datasets" if parts[:1] == ["datasets"] or parts[:2] == ["api", "datasets"] else "models"
        if parts[:1] == ["datasets"]:
            parts = parts[1:]
        if parts[:2] == ["api", kind] and self.hub.api_status:
            self._error(self.hub.api_status, "Unavailable", head)
            return
        if parts[:2] == ["api", kind] and len(parts) >= 4:
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            if not rest or rest[0] == "revision":
                repo = self._resolve(repo_id, rest[1] if len(rest) > 1 else None, head, kind)
                if repo:
                    info = {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False,
                            "siblings": [{"rfilename": name} for name in repo.files]}
                    self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
                return
            if rest[0] == "tree":
                repo = self._resolve(repo_id, rest[1] if len(rest) > 1 else None, head, kind)
                if repo:
                    recursive = "recursive=true" in urlparse(self.path).query.lower()
                    tree = _tree(repo, "/".join(rest[2:]), recursive)
                    self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, head)
                return
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._resolve("/".join(parts[:2]), parts[3], head, kind, download=True)
            if repo:
                name = "/".join(parts[4:])
                if name not in repo.files:
                    self._error(404, "EntryNotFound", head)
                    return
                data = repo.files[name]
                self._send(200, data, {"X-Repo-Commit": repo.sha, "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                                       "Content-Type": "application/octet-stream"}, head)
            return
        self._error(404, "NotFound", head)

    def do_GET(self):
        self._route(head=False)

    def do_HEAD(self):
        self._route(head=True)


def _tree(repo: FakeRepo, under: str, recursive: bool) -> list[dict]:
    """The Hub's tree listing under a folder: its files (all below it when recursive) and subfolders."""
    prefix = f"{under.strip('/')}/" if under.strip("/") else ""
    entries: dict[str, dict] = {}
    for name, data in repo.files.items():
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix):].split("/")
        for depth in range(1, len(parts)):
            folder = prefix + "/".join(parts[:depth])
            if recursive or depth == 1:
                entries[folder] = {"type": "directory", "path": folder, "oid": "0" * 40, "size": 0}
        if recursive or len(parts) == 1:
            entries[name] = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
    return list(entries.values())


@contextmanager
def serving(hub: FakeHub):
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
