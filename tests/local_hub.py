"""A stand-in Hugging Face Hub on 127.0.0.1 serving local folders as dataset repositories.

    python tests/local_hub.py --repo user/demo --tag v3.0=DIR --branch main=DIR --log requests.jsonl

Prints its port on the first line of stdout; point `HF_ENDPOINT` at `http://127.0.0.1:<port>`.
Each `--tag`/`--branch NAME=DIR` is a revision of the one repository whose commit is DIR's
content hash, so a revision can also be asked by its commit. It answers what huggingface_hub
calls to download: the refs (`list_repo_refs`, LeRobot's version lookup), repo info at a
revision, the recursive file tree, and HEAD/GET of `resolve/<revision>/<file>` with the
X-Repo-Commit, ETag and Content-Length headers; a missing file is 404 `EntryNotFound`. Every
request is appended to --log as {"method", "path"}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Revision:
    def __init__(self, folder: Path):
        self.folder = folder
        self.files = {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}
        self.blob_ids = {path: git_blob_id(file.read_bytes()) for path, file in self.files.items()}
        self.commit = hashlib.sha1(json.dumps(self.blob_ids, sort_keys=True).encode()).hexdigest()


class Handler(BaseHTTPRequestHandler):
    server_version = "local-hub/1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._answer(body=True)

    def do_HEAD(self):  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        hub = self.server.hub
        path = unquote(urlparse(self.path).path)
        with hub["lock"], open(hub["log"], "a") as log:
            log.write(json.dumps({"method": self.command, "path": path}) + "\n")
        api, resolve = f"/api/datasets/{hub['repo']}/", f"/datasets/{hub['repo']}/resolve/"
        if path == api + "refs":
            return self._json({kind: [{"name": name, "ref": f"refs/{folder}/{name}", "targetCommit": hub["revisions"][name].commit}
                                      for name in hub[kind]] for kind, folder in (("branches", "heads"), ("tags", "tags"))}
                              | {"converts": []})
        if path.startswith(api + "revision/"):
            revision = self._revision(path.removeprefix(api + "revision/"))
            if revision:
                return self._json({"id": hub["repo"], "sha": revision.commit, "private": False,
                                   "siblings": [{"rfilename": name} for name in revision.files]})
        elif path.startswith(api + "tree/"):
            name, _, prefix = path.removeprefix(api + "tree/").partition("/")
            revision = self._revision(name)
            if revision:
                return self._json([{"type": "file", "path": file, "size": revision.files[file].stat().st_size,
                                    "oid": revision.blob_ids[file]} for file in revision.files if file.startswith(prefix)])
        elif path.startswith(resolve):
            name, _, file = path.removeprefix(resolve).partition("/")
            revision = self._revision(name)
            if revision and file in revision.files:
                data = revision.files[file].read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", revision.commit)
                self.send_header("ETag", f'"{revision.blob_ids[file]}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)
                return
            if revision:
                return self._error(404, "EntryNotFound", revision.commit)
        self._error(404, "RevisionNotFound" if path.startswith((api, resolve)) else "RepoNotFound")

    def _revision(self, name: str) -> Revision | None:
        revisions = self.server.hub["revisions"]
        return revisions.get(name) or next((r for r in revisions.values() if r.commit == name), None)

    def _json(self, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)

    def _error(self, status: int, code: str, commit: str | None = None) -> None:
        data = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, help="namespace/name of the dataset repository")
    parser.add_argument("--tag", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--branch", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--max-seconds", type=float, default=600, help="exit after this long (a leaked server ends)")
    args = parser.parse_args()
    revisions = {}
    for spec in args.tag + args.branch:
        name, _, folder = spec.partition("=")
        revisions[name] = Revision(Path(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.hub = {"repo": args.repo, "revisions": revisions, "log": args.log, "lock": threading.Lock(),
                  "tags": [s.partition("=")[0] for s in args.tag], "branches": [s.partition("=")[0] for s in args.branch]}
    threading.Timer(args.max_seconds, server.shutdown).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
