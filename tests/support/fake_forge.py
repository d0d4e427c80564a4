#!/usr/bin/env python3
"""A FAKE forge for the tests, on loopback: bare repositories served over git's smart HTTP
(the real `git http-backend` behind this server, with basic auth for pushes), and the part
of GitHub's REST API that `harvest pr` uses (under /api/v3, as on GitHub Enterprise):

  GET  /api/v3/repos/{owner}/{repo}                      -> {default_branch, full_name}
  POST /api/v3/repos/{owner}/{repo}/pulls                -> 201 the pull request | 401 | 422
  GET  /api/v3/repos/{owner}/{repo}/pulls?state=open&head=owner:branch

Tokens are checked as GitHub does: `Authorization: Bearer T` (or `token T`) on the API,
basic auth with the token as password on git pushes. Fetches are anonymous (a public
repository). Control and inspection, for the tests:

  GET  /_fake/pulls      every pull request opened
  GET  /_fake/requests   every request: method, path, headers
  POST /_fake/api-token  {"token": T}: the token the API accepts from now on

Usage: fake_forge.py --root DIR --token T [--api-token T2]; prints `listening on URL`.
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
PULLS = []
REQUESTS = []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--api-token")
    args = ap.parse_args()
    state = {"git_token": args.token, "api_token": args.api_token or args.token, "root": args.root}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def record(self):
            with LOCK:
                REQUESTS.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers.items())}
                )

        def body(self):
            n = int(self.headers.get("content-length") or 0)
            return self.rfile.read(n) if n else b""

        def reply(self, status, value):
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.route()

        def do_POST(self):
            self.route()

        def route(self):
            self.record()
            url = urlsplit(self.path)
            if url.path.startswith("/_fake/"):
                return self.control(url)
            if url.path.startswith("/api/v3/"):
                return self.api(url)
            return self.git(url)

        def control(self, url):
            if url.path == "/_fake/pulls":
                with LOCK:
                    return self.reply(200, PULLS)
            if url.path == "/_fake/requests":
                with LOCK:
                    return self.reply(200, REQUESTS)
            if url.path == "/_fake/api-token" and self.command == "POST":
                state["api_token"] = json.loads(self.body())["token"]
                return self.reply(200, {})
            return self.reply(404, {"message": "Not Found"})

        # ---- GitHub's REST API -------------------------------------------------------
        def api(self, url):
            auth = self.headers.get("authorization", "")
            given = auth.split(" ", 1)[1] if " " in auth else ""
            if given != state["api_token"]:
                return self.reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            parts = url.path[len("/api/v3/"):].strip("/").split("/")
            if len(parts) < 3 or parts[0] != "repos":
                return self.reply(404, {"message": "Not Found"})
            owner, name = parts[1], parts[2]
            bare = os.path.join(state["root"], owner, name + ".git")
            if not os.path.isdir(bare):
                return self.reply(404, {"message": "Not Found"})
            if len(parts) == 3 and self.command == "GET":
                return self.reply(200, {"full_name": f"{owner}/{name}", "default_branch": "main"})
            if parts[3:] == ["pulls"] and self.command == "POST":
                return self.open_pull(owner, name, bare, json.loads(self.body() or b"{}"))
            if parts[3:] == ["pulls"] and self.command == "GET":
                q = parse_qs(url.query)
                head = q.get("head", [""])[0]
                with LOCK:
                    found = [p for p in PULLS if p["repo"] == f"{owner}/{name}" and p["state"] == "open"
                             and (not head or f"{owner}:{p['head']['ref']}" == head)]
                return self.reply(200, found)
            return self.reply(404, {"message": "Not Found"})

        def open_pull(self, owner, name, bare, req):
            for field in ("title", "head", "base"):
                if not req.get(field):
                    return self.reply(422, {"message": "Validation Failed",
                                            "errors": [{"resource": "PullRequest", "field": field, "code": "missing_field"}]})
            for ref in (req["head"], req["base"]):
                ok = subprocess.run(["git", "--git-dir", bare, "rev-parse", "--verify", "-q", f"refs/heads/{ref}"],
                                    capture_output=True).returncode == 0
                if not ok:
                    return self.reply(422, {"message": "Validation Failed",
                                            "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]})
            with LOCK:
                for p in PULLS:
                    if p["repo"] == f"{owner}/{name}" and p["head"]["ref"] == req["head"] and p["state"] == "open":
                        return self.reply(422, {"message": "Validation Failed",
                                                "errors": [{"resource": "PullRequest", "code": "custom",
                                                            "message": f"A pull request already exists for {owner}:{req['head']}."}]})
                number = len(PULLS) + 1
                host = self.headers.get("host", "127.0.0.1")
                pr = {
                    "number": number,
                    "state": "open",
                    "repo": f"{owner}/{name}",
                    "html_url": f"http://{host}/{owner}/{name}/pull/{number}",
                    "title": req["title"],
                    "body": req.get("body") or "",
                    "draft": bool(req.get("draft")),
                    "head": {"ref": req["head"]},
                    "base": {"ref": req["base"]},
                }
                PULLS.append(pr)
            return self.reply(201, pr)

        # ---- git's smart HTTP, through the real git http-backend -----------------------
        def git(self, url):
            push = url.path.endswith("/git-receive-pack") or "service=git-receive-pack" in url.query
            user = None
            auth = self.headers.get("authorization", "")
            if auth.startswith("Basic "):
                try:
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if password != state["git_token"]:
                        user = None
                except Exception:
                    user = None
            if push and user is None:
                self.send_response(401)
                self.send_header("www-authenticate", 'Basic realm="fake forge"')
                self.send_header("content-length", "0")
                self.end_headers()
                return
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": state["root"],
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": url.path,
                "QUERY_STRING": url.query,
                "REQUEST_METHOD": self.command,
                "CONTENT_TYPE": self.headers.get("content-type", ""),
                "REMOTE_ADDR": "127.0.0.1",
            }
            if user is not None:
                env["REMOTE_USER"] = user
            if self.headers.get("content-encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["content-encoding"]
            if self.headers.get("git-protocol"):
                env["GIT_PROTOCOL"] = self.headers["git-protocol"]
            data = self.read_body()
            env["CONTENT_LENGTH"] = str(len(data))
            out = subprocess.run(["git", "http-backend"], input=data, env=env, capture_output=True).stdout
            head, _, rest = out.partition(b"\r\n\r\n")
            if not _:
                head, _, rest = out.partition(b"\n\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").splitlines():
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    status = int(v.strip().split()[0])
                elif k:
                    headers.append((k, v.strip()))
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("content-length", str(len(rest)))
            self.end_headers()
            self.wfile.write(rest)

        def read_body(self):
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.body()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    # Gone with the test that started it: stdin closes when it ends, however it ends.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
