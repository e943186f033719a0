"""A small Hugging Face Hub API server on 127.0.0.1, for push/pull tests with the real ``huggingface_hub`` client.

No installable Hub-compatible server accepts pushes (olah is pull-only; KohakuHub needs PostgreSQL, MinIO and
LakeFS; hf-local-hub's PyPI wheel is only a client for its own Go server), so this speaks just the calls the client
makes (see shared/reference/hf_conventions.md §3): create/delete repo, create branch, whoami, validate-yaml, preupload (always
"regular" uploads, so file bodies arrive base64 in the commit), commit (NDJSON), repo info (``sha``, ``siblings``)
by branch or commit sha, the model listing ``GET /api/models`` (tag filters, author, search, limit, cardData,
read from each README's front matter as the Hub indexes it), and ``resolve`` (GET/HEAD) with ``X-Repo-Commit`` / ``ETag`` headers. Errors carry the
``X-Error-Code`` headers the client maps to its exceptions: ``RepoNotFound`` (401, also for a private repo
read without a valid token, as the real Hub does), ``RevisionNotFound`` and ``EntryNotFound`` (404).

Every commit is a full snapshot kept in memory, so any earlier commit sha stays downloadable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> full snapshot {path: bytes}
    branches: dict[str, str] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)

    def commit(self, files: dict[str, bytes], parent: str | None, summary: str, branch: str = "main") -> str:
        digest = hashlib.sha1(f"{parent}\n{summary}\n{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha(files[path]).encode())
        sha = digest.hexdigest()
        self.commits[sha] = dict(files)
        self.branches[branch] = sha
        self.history.append(sha)
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class HubState:
    """Repos and users; ``tokens`` maps a token to a user name, who may write to their own namespace."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = dict(tokens)
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path), to let tests check what the client did
        self.list_queries: list[dict] = []  # query parameters of every GET /api/models
        # fault injection: a GET of a file whose path matches ``drop_pattern`` sends ``drop_after`` bytes of its body,
        # then the connection is closed (``drop_times`` times, None = every time); ``dropped`` counts the drops
        self.drop_pattern: str | None = None
        self.drop_after = 0
        self.drop_times: int | None = None
        self.dropped = 0
        # a request (HEAD or GET) of a file matching ``fail_pattern`` is answered ``fail_status`` ``fail_times`` times
        self.fail_pattern: str | None = None
        self.fail_status = 500
        self.fail_times: int | None = None
        self.failed = 0


API_REPO = re.compile(
    r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(revision|preupload|commit|tree|branch)/(.+))?$"
)
RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState  # set on the subclass made per server

    def log_message(self, format, *args) -> None:  # keep pytest output clean
        pass

    # ------------------------------------------------------------------------------------------------ helpers
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head_only: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str | None, message: str, head_only: bool = False) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers, head_only)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return self.state.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None

    def _readable_repo(self, repo_id: str, head_only: bool = False) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and self._user() != repo_id.split("/")[0]):
            self._error(401, "RepoNotFound", f"Repository not found: {repo_id}", head_only)
            return None
        return repo

    def _writable_repo(self, repo_id: str) -> Repo | None:
        user = self._user()
        if user is None:
            self._error(401, None, "Invalid credentials in Authorization header")
            return None
        repo = self._readable_repo(repo_id)
        if repo is not None and repo_id.split("/")[0] != user:
            self._error(403, None, f"You don't have the rights to write to {repo_id}")
            return None
        return repo

    # ----------------------------------------------------------------------------------------------- handlers
    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        self.state.requests.append((method, path))
        with self.state.lock:
            try:
                if method == "POST" and path == "/api/repos/create":
                    return self._create_repo()
                if method == "DELETE" and path == "/api/repos/delete":
                    return self._delete_repo()
                if method == "GET" and path == "/api/whoami-v2":
                    user = self._user()
                    if user is None:
                        return self._error(401, None, "Invalid credentials in Authorization header")
                    return self._json(200, {"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token"}})
                if method == "GET" and path == "/api/models":
                    return self._list_models(parse_qs(url.query))
                if method == "POST" and path == "/api/validate-yaml":
                    self._body()
                    return self._json(200, {"errors": [], "warnings": []})
                match = API_REPO.match(path)
                if match:
                    _, repo_id, action, revision = match.groups()
                    if method == "GET" and action in (None, "revision"):
                        return self._repo_info(repo_id, revision or "main")
                    if method == "GET" and action == "tree":
                        return self._tree(repo_id, revision)
                    if method == "POST" and action == "preupload":
                        return self._preupload(repo_id)
                    if method == "POST" and action == "commit":
                        return self._commit(repo_id, revision, parse_qs(url.query))
                    if method == "POST" and action == "branch":
                        return self._create_branch(repo_id, revision)
                match = RESOLVE.match(path)
                if match and method in ("GET", "HEAD"):
                    _, repo_id, revision, filename = match.groups()
                    return self._resolve(repo_id, revision, filename, head_only=method == "HEAD")
                self._error(404, None, f"no route for {method} {path} in the test Hub server")
            except Exception as error:  # a bug here must show up as a failing request, not a hung client
                self._error(500, None, f"test Hub server error: {error!r}")

    def _create_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        user = self._user()
        if user is None:
            return self._error(401, None, "Invalid credentials in Authorization header")
        namespace = payload.get("organization") or user
        if namespace != user:
            return self._error(403, None, f"You don't have the rights to create a repo under {namespace}")
        repo_id = f"{namespace}/{payload['name']}"
        url = f"http://{self.headers['Host']}/{repo_id}"
        if repo_id in self.state.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = Repo(repo_id, private)
        repo.commit({".gitattributes": GITATTRIBUTES}, None, "initial commit")
        self.state.repos[repo_id] = repo
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        repo_id = f"{payload.get('organization') or self._user()}/{payload['name']}"
        if self._writable_repo(repo_id) is not None:
            del self.state.repos[repo_id]
            self._json(200, {})

    def _repo_info(self, repo_id: str, revision: str) -> None:
        repo = self._readable_repo(repo_id)
        if repo is None:
            return
        sha = repo.resolve(revision)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = repo.commits[sha]
        siblings = [{"rfilename": p, "size": len(b), "blobId": git_blob_sha(b)} for p, b in sorted(files.items())]
        self._json(
            200,
            {
                "_id": repo_id,
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "lastModified": "2026-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z",
            },
        )

    def _card_data(self, repo: Repo) -> dict:
        """The YAML front matter of the README at main (what the Hub indexes for search)."""
        import yaml

        text = repo.commits[repo.branches["main"]].get("README.md", b"").decode("utf-8", "replace")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.S)
        data = yaml.safe_load(match.group(1)) if match else None
        return data if isinstance(data, dict) else {}

    def _list_models(self, query: dict) -> None:
        """``GET /api/models`` as huggingface_hub's ``list_models`` calls it: ``filter`` (repeated; every one must
        be a tag), ``author``, ``search`` (substring of the id), ``pipeline_tag``, ``sort``, ``limit``, ``cardData``
        / ``full``. Tags are the card's ``tags`` plus what the Hub derives: ``library_name``, ``pipeline_tag``,
        ``base_model:<id>``, ``dataset:<id>``. Private repos are listed for their owner only."""
        user = self._user()
        one = lambda key: (query.get(key) or [None])[0]
        wanted, author, search = query.get("filter", []), one("author"), one("search")
        rows = []
        for repo_id, repo in sorted(self.state.repos.items()):
            if repo.private and repo_id.split("/")[0] != user:
                continue
            data = self._card_data(repo)
            base = data.get("base_model") or []
            tags = list(data.get("tags") or [])
            tags += [v for v in (data.get("library_name"), data.get("pipeline_tag")) if v]
            tags += [f"base_model:{b}" for b in ([base] if isinstance(base, str) else base)]
            tags += [f"dataset:{d}" for d in data.get("datasets") or []]
            if any(t not in tags for t in wanted) or (author and repo_id.split("/")[0] != author):
                continue
            if search and search.lower() not in repo_id.lower():
                continue
            if one("pipeline_tag") and data.get("pipeline_tag") != one("pipeline_tag"):
                continue
            row = {
                "_id": repo_id,
                "id": repo_id,
                "modelId": repo_id,
                "private": repo.private,
                "tags": tags,
                "downloads": 0,
                "likes": 0,
                "library_name": data.get("library_name"),
                "pipeline_tag": data.get("pipeline_tag"),
                "createdAt": "2026-01-01T00:00:00.000Z",
                "lastModified": "2026-01-01T00:00:00.000Z",
                "sha": repo.branches["main"],
            }
            if one("cardData") in ("true", "True", "1") or one("full") in ("true", "True", "1"):
                row["cardData"] = data
            rows.append(row)
        self.state.list_queries.append(query)
        limit = one("limit")
        self._json(200, rows[: int(limit)] if limit else rows)

    def _tree(self, repo_id: str, revision_and_path: str) -> None:
        repo = self._readable_repo(repo_id)
        if repo is None:
            return
        revision, _, folder = revision_and_path.partition("/")
        sha = repo.resolve(revision)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        prefix = folder.rstrip("/") + "/" if folder else ""
        entries = [
            {"type": "file", "path": p, "size": len(b), "oid": git_blob_sha(b)}
            for p, b in sorted(repo.commits[sha].items())
            if p.startswith(prefix)
        ]
        self._json(200, entries)

    def _preupload(self, repo_id: str) -> None:
        payload = json.loads(self._body() or b"{}")
        if self._writable_repo(repo_id) is None:
            return
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in payload.get("files", [])]
        self._json(200, {"files": files, "commitOid": self.state.repos[repo_id].branches["main"]})

    def _commit(self, repo_id: str, revision: str, query: dict) -> None:
        body = self._body()
        repo = self._writable_repo(repo_id)
        if repo is None:
            return
        if query.get("create_pr", ["0"])[0] in ("1", "true", "True"):
            return self._error(501, None, "pull requests are not supported by the test Hub server")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        if revision not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision} (commits go to a branch)")
        parent = repo.branches[revision]
        if header.get("parentCommit") and header["parentCommit"] != parent:
            return self._error(412, None, f"parent commit {header['parentCommit']} is not the head of {revision}")
        files = dict(repo.commits[parent])
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif line["key"] == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: b for p, b in files.items() if not p.startswith(prefix)}
            elif line["key"] != "header":
                return self._error(400, None, f"unsupported commit operation {line['key']!r} (LFS is not served)")
        sha = repo.commit(files, parent, header.get("summary", ""), revision)
        base = f"http://{self.headers['Host']}/{repo_id}"
        self._json(
            200, {"commitUrl": f"{base}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None, "success": True}
        )

    def _create_branch(self, repo_id: str, branch: str) -> None:
        """``HfApi.create_branch``: from ``startingPoint`` (a branch or commit) or main; 409 when it exists."""
        payload = json.loads(self._body() or b"{}")
        repo = self._writable_repo(repo_id)
        if repo is None:
            return
        if branch in repo.branches:
            return self._error(409, None, f"branch {branch} already exists")
        start = repo.resolve(payload.get("startingPoint") or "main")
        if start is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {payload.get('startingPoint')}")
        repo.branches[branch] = start
        self._json(200, {})

    def _resolve(self, repo_id: str, revision: str, filename: str, head_only: bool) -> None:
        repo = self._readable_repo(repo_id, head_only)
        if repo is None:
            return
        sha = repo.resolve(revision)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head_only)
        content = repo.commits[sha].get(filename)
        if content is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist at {revision}", head_only)
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{git_blob_sha(content)}"',
            "Content-Type": "application/octet-stream",
        }
        state = self.state
        failing = state.fail_pattern is not None and re.search(state.fail_pattern, filename)
        if failing and (state.fail_times is None or state.failed < state.fail_times):
            state.failed += 1
            return self._error(state.fail_status, None, "Internal Error (test fault)", head_only)
        if not head_only and self._should_drop(filename):
            return self._send_cut(content, headers)
        self._send(200, content, headers, head_only)

    def _should_drop(self, filename: str) -> bool:
        state = self.state
        if state.drop_pattern is None or not re.search(state.drop_pattern, filename):
            return False
        if state.drop_times is not None and state.dropped >= state.drop_times:
            return False
        state.dropped += 1
        return True

    def _send_cut(self, content: bytes, headers: dict) -> None:
        """Announce the whole body, send only its start, then close the socket: a connection dropped mid-file."""
        import socket

        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content[: self.state.drop_after])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


class HubServer:
    """``with HubServer({"hf_token": "alice"}) as hub: HfApi(endpoint=hub.endpoint, token="hf_token")``."""

    def __init__(self, tokens: dict[str, str] | None = None):
        self.state = HubState(tokens or {})
        handler = type("BoundHubHandler", (HubHandler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="test-hub-server", daemon=True)

    def drop_connection(self, pattern: str, after: int, times: int | None = None) -> None:
        """Close the connection after ``after`` body bytes of every GET of a file matching ``pattern`` (regex),
        ``times`` times (None: always)."""
        self.state.drop_pattern, self.state.drop_after, self.state.drop_times = pattern, after, times
        self.state.dropped = 0

    def fail_requests(self, pattern: str, status: int = 500, times: int | None = None) -> None:
        """Answer requests of a file matching ``pattern`` with HTTP ``status``, ``times`` times (None: always)."""
        self.state.fail_pattern, self.state.fail_status, self.state.fail_times = pattern, status, times
        self.state.failed = 0

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


# ------------------------------------------------------------------------------------------------ pytest fixture
TOKEN, OTHER_TOKEN = "hf_alice_token", "hf_bob_token"


def hub_fixture(tmp_path, monkeypatch):
    """A running server with users alice and bob; the HF client's endpoint, cache and token path point at it/tmp.

    Patched the way huggingface_hub's own tests patch their constants; ``env`` holds the same settings for
    subprocesses (a fresh process reads them from the environment).
    """
    import transformers.utils.hub as transformers_hub
    from huggingface_hub import constants, hf_api

    with HubServer({TOKEN: "alice", OTHER_TOKEN: "bob"}) as server:
        home = tmp_path / "hf-home"
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HOME", str(home))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
        monkeypatch.setattr(transformers_hub, "_hf_api", None)  # transformers caches an HfApi bound to the endpoint
        monkeypatch.setattr(hf_api.api, "endpoint", server.endpoint)  # so does huggingface_hub (module-level api)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        server.home = home
        server.env = {
            "HF_ENDPOINT": server.endpoint,
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "TOKENIZERS_PARALLELISM": "false",
        }
        yield server
