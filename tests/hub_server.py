"""A small Hugging Face Hub on 127.0.0.1, speaking the protocol huggingface_hub 2.x uses.

Model and dataset repos (the latter kept under the key ``datasets/ORG/NAME`` and served under
``/datasets/...`` and ``/api/datasets/...``).
Downloads: HEAD/GET ``/{repo}/resolve/{rev}/{path}`` with X-Repo-Commit, ETag (the git blob id,
or for LFS files the SHA-256, also as X-Linked-Etag with X-Linked-Size) and the hub's X-Error-Code
on 404s; ``/api/models/{repo}[/revision/{rev}]`` and ``/api/models/{repo}/tree/{rev}[/{path}]``.
Uploads: ``/api/repos/create``, ``/api/validate-yaml``, ``/api/models/{repo}/preupload/{rev}``, the
LFS batch API with a basic-transfer PUT, and the ndjson ``/api/models/{repo}/commit/{rev}``.
Every request is logged, and a file can be served tampered (same length, other bytes) while its
headers and tree entry still report the original digest. The server runs in a daemon thread and
shuts itself down after ``limit_s`` seconds whatever the tests do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".pkl", ".ckpt")  # as a new repo's .gitattributes
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


@dataclass
class Repo:
    id: str
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}
    refs: dict[str, str] = field(default_factory=dict)  # branch -> sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


@dataclass
class Hub:
    """The server's state; tests read ``requests`` and set ``tampered`` and ``listed_sizes``."""

    token: str
    repos: dict[str, Repo] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, unquoted path)
    tampered: set[tuple[str, str]] = field(default_factory=set)  # (repo, path) served with altered bytes
    #: (repo, path) -> the size the tree listing reports instead of the true one (a file too large to hold in a test)
    listed_sizes: dict[tuple[str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, repo_id: str, private: bool = False) -> Repo:
        repo = self.repos[repo_id] = Repo(repo_id, private)
        self._commit(repo, {".gitattributes": GITATTRIBUTES}, "initial commit")
        return repo

    def commit(self, repo_id: str, files: dict[str, bytes], message: str = "seed") -> str:
        """Commit ``files`` on main (creating the repo if need be), as a test's setup."""
        with self.lock:
            repo = self.repos.get(repo_id) or self.create(repo_id)
            return self._commit(repo, {**repo.commits[repo.refs["main"]], **files}, message)

    def _commit(self, repo: Repo, snapshot: dict[str, bytes], message: str) -> str:
        parent = repo.refs.get("main", "")
        digest = hashlib.sha1(f"{repo.id}\n{parent}\n{message}\n{len(repo.commits)}".encode())
        for path in sorted(snapshot):
            digest.update(path.encode() + b"\0" + hashlib.sha256(snapshot[path]).digest())
        sha = digest.hexdigest()
        repo.commits[sha] = dict(snapshot)
        repo.refs["main"] = sha
        for path, content in snapshot.items():
            if is_lfs(path):
                self.lfs[hashlib.sha256(content).hexdigest()] = content
        return sha


class HubError(Exception):
    def __init__(self, status: int, code: str | None = None, message: str = "", commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class Handler(BaseHTTPRequestHandler):
    hub: Hub  # set on the subclass made per server
    base_url: str
    timeout = 10  # a stuck client cannot hold a thread for long

    def log_message(self, format: str, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        segments = [unquote(s) for s in url.path.strip("/").split("/")]
        self.query = parse_qs(url.query)
        with self.hub.lock:
            self.hub.requests.append((self.command, unquote(url.path)))
        try:
            body = self._body()
            with self.hub.lock:
                self._route(segments, body)
        except HubError as exc:
            headers = {"X-Error-Message": exc.message}
            if exc.code:
                headers["X-Error-Code"] = exc.code
            if exc.commit:
                headers["X-Repo-Commit"] = exc.commit
            self._send(exc.status, json.dumps({"error": exc.message}).encode(), headers)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self, s: list[str], body: bytes) -> None:
        method = self.command
        if s[:2] == ["api", "repos"] and s[2:] == ["create"] and method == "POST":
            return self._create(json.loads(body))
        if s[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml(json.loads(body)["content"])
        if s[:2] in (["api", "models"], ["api", "datasets"]) and len(s) >= 4:
            repo_id, rest = ("datasets/" if s[1] == "datasets" else "") + f"{s[2]}/{s[3]}", s[4:]
            if not rest and method == "GET":
                return self._info(repo_id, "main")
            if rest[:1] == ["revision"] and len(rest) == 2 and method == "GET":
                return self._info(repo_id, rest[1])
            if rest[:1] == ["tree"] and len(rest) in (2, 3) and method == "GET":
                return self._tree(repo_id, rest[1], rest[2] if len(rest) == 3 else "")
            if rest[:1] == ["preupload"] and len(rest) == 2 and method == "POST":
                return self._preupload(repo_id, rest[1], json.loads(body))
            if rest[:1] == ["commit"] and len(rest) == 2 and method == "POST":
                return self._commit(repo_id, rest[1], body)
        if len(s) == 6 and s[1].endswith(".git") and s[2:] == ["info", "lfs", "objects", "batch"] and method == "POST":
            return self._lfs_batch(f"{s[0]}/{s[1][:-4]}", json.loads(body))
        if len(s) == 2 and s[0] == "lfs-upload" and method == "PUT":
            return self._lfs_put(s[1], body)
        if len(s) >= 6 and s[0] == "datasets" and s[3] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(f"datasets/{s[1]}/{s[2]}", s[4], "/".join(s[5:]))
        if len(s) >= 5 and s[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(f"{s[0]}/{s[1]}", s[3], "/".join(s[4:]))
        raise HubError(404, None, f"no route for {method} {self.path}")

    # --- reads ---------------------------------------------------------------------------------

    def _repo(self, repo_id: str) -> Repo:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            raise HubError(404, "RepoNotFound", "Repository not found")
        return repo

    def _snapshot(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]]:
        repo = self._repo(repo_id)
        sha = repo.resolve(revision)
        if sha is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha, repo.commits[sha]

    def _info(self, repo_id: str, revision: str) -> None:
        sha, files = self._snapshot(repo_id, revision)
        info = {
            "id": repo_id.removeprefix("datasets/"), "modelId": repo_id, "sha": sha, "private": self.hub.repos[repo_id].private,
            "siblings": [{"rfilename": path} for path in sorted(files)],
        }
        self._json(info)

    def _tree(self, repo_id: str, revision: str, folder: str) -> None:
        _, files = self._snapshot(repo_id, revision)
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{folder}/" if folder else ""
        entries, folders = [], set()
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            entries.append(self._entry(path, files[path], self.hub.listed_sizes.get((repo_id, path))))
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": path} for path in sorted(folders)]
        if folder and not entries:
            raise HubError(404, "EntryNotFound", f"{folder} does not exist")
        self._json(entries)

    @staticmethod
    def _entry(path: str, content: bytes, listed_size: int | None = None) -> dict:
        size = len(content) if listed_size is None else listed_size
        if not is_lfs(path):
            return {"type": "file", "oid": git_blob_id(content), "size": size, "path": path}
        sha256 = hashlib.sha256(content).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        return {
            "type": "file", "oid": git_blob_id(pointer), "size": size, "path": path,
            "lfs": {"oid": sha256, "size": size, "pointerSize": len(pointer)},
        }

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        sha, files = self._snapshot(repo_id, revision)
        if path not in files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {sha}", commit=sha)
        content = files[path]
        headers = {"X-Repo-Commit": sha, "Content-Type": "application/octet-stream"}
        if is_lfs(path):
            sha256 = hashlib.sha256(content).hexdigest()
            headers.update({"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(content))})
        else:
            headers["ETag"] = f'"{git_blob_id(content)}"'
        if (repo_id, path) in self.hub.tampered:  # same length, other bytes, same claimed digest
            content = content[:-4] + bytes(b ^ 1 for b in content[-4:])
        self._send(200, content, headers)

    # --- writes --------------------------------------------------------------------------------

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _require_auth(self) -> None:
        if not self._authorized():
            raise HubError(401, None, "Invalid credentials in Authorization header")

    def _create(self, payload: dict) -> None:
        self._require_auth()
        repo_id = ("datasets/" if payload.get("type") == "dataset" else "") + f"{payload['organization']}/{payload['name']}"
        if repo_id in self.hub.repos:  # the hub's 409 carries the url too; create_repo(exist_ok=True) reads it
            return self._json({"error": "You already created this model repo", "url": f"{self.base_url}/{repo_id}"}, status=409)
        self.hub.create(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        self._json({"url": f"{self.base_url}/{repo_id}"})

    def _validate_yaml(self, content: str) -> None:
        """The checks the hub makes on a model card's ``model-index`` front matter."""
        errors = []
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        meta = yaml.safe_load(match.group(1)) if match else {}
        for model in meta.get("model-index", []):
            if not isinstance(model.get("name"), str) or not isinstance(model.get("results"), list):
                errors.append("model-index entries need a name and results")
                continue
            for result in model["results"]:
                if not isinstance(result.get("task", {}).get("type"), str):
                    errors.append("results[].task.type is required")
                if not all(isinstance(result.get("dataset", {}).get(key), str) for key in ("name", "type")):
                    errors.append("results[].dataset.name and .type are required")
                for metric in result.get("metrics", []):
                    if not isinstance(metric.get("type"), str) or not isinstance(metric.get("value"), (int, float)):
                        errors.append("metrics need a type and a numeric value")
        if errors:
            return self._json({"errors": [{"message": e} for e in errors]}, status=400)
        self._json({"errors": [], "warnings": []})

    def _preupload(self, repo_id: str, revision: str, payload: dict) -> None:
        self._require_auth()
        _, files = self._snapshot(repo_id, revision)
        answer = []
        for item in payload["files"]:
            path, existing = item["path"], files.get(item["path"])
            oid = None if existing is None else hashlib.sha256(existing).hexdigest() if is_lfs(path) else git_blob_id(existing)
            answer.append({"path": path, "uploadMode": "lfs" if is_lfs(path) else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": answer})

    def _lfs_batch(self, repo_id: str, payload: dict) -> None:
        self._require_auth()
        self._repo(repo_id)
        objects = []
        for item in payload["objects"]:
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.hub.lfs:
                entry["actions"] = {"upload": {"href": f"{self.base_url}/lfs-upload/{item['oid']}"}}
            objects.append(entry)
        self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_put(self, oid: str, body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, None, "uploaded content does not match its oid")
        self.hub.lfs[oid] = body
        self._send(200, b"")

    def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
        self._require_auth()
        repo = self._repo(repo_id)
        head, files = self._snapshot(repo_id, revision)
        snapshot, message = dict(files), "commit"
        for line in body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
                if value.get("parentCommit") not in (None, head):
                    raise HubError(412, None, "parent commit is not the head of the branch")
            elif key == "file":
                snapshot[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.hub.lfs:
                    raise HubError(422, None, f"LFS object {value['oid']} was never uploaded")
                snapshot[value["path"]] = self.hub.lfs[value["oid"]]
            elif key == "deletedFile":
                snapshot.pop(value["path"], None)
            else:
                raise HubError(400, None, f"unsupported commit operation {key}")
        sha = self.hub._commit(repo, snapshot, message)
        self._json({"commitUrl": f"{self.base_url}/{repo_id}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})

    # --- responses -----------------------------------------------------------------------------

    def _json(self, value: object, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class HubServer:
    """``with HubServer(token) as server:`` serves ``server.hub`` at ``server.url`` until the block ends."""

    def __init__(self, token: str, limit_s: float = 600):
        self.hub = Hub(token=token)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._httpd.RequestHandlerClass = type("BoundHandler", (Handler,), {"hub": self.hub, "base_url": self.url})
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._watchdog = threading.Timer(limit_s, self._httpd.shutdown)
        self._watchdog.daemon = True

    def __enter__(self) -> "HubServer":
        self._thread.start()
        self._watchdog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._watchdog.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def requested(self, path_suffix: str) -> bool:
        with self.hub.lock:
            return any(path.endswith(path_suffix) for _, path in self.hub.requests)
