"""A FAKE of Claude's OAuth token endpoint (POST /v1/oauth/token, refresh_token grant), for
the subscription-login tests. Like the real one it rotates: each refresh token works
once, and the answer carries a new access token and a new refresh token. It counts the
refreshes it served (GET /_refreshes) and prints `listening on URL` first.

    fake_oauth.py --first-refresh sk-ant-ort01-R0
"""

import argparse
import http.server
import json
import threading

lock = threading.Lock()
state = {"valid": None, "n": 0, "seen": []}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_refreshes":
            with lock:
                return self.reply(200, {"count": state["n"], "seen": state["seen"]})
        self.reply(404, {"error": "not_found"})

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return self.reply(400, {"error": "invalid_request"})
        if self.path != "/v1/oauth/token" or body.get("grant_type") != "refresh_token":
            return self.reply(400, {"error": "unsupported_grant_type"})
        with lock:
            state["seen"].append(body.get("refresh_token"))
            if body.get("refresh_token") != state["valid"] or not body.get("client_id"):
                return self.reply(400, {"error": "invalid_grant", "error_description": "Refresh token not found or invalid"})
            state["n"] += 1
            k = state["n"]
            state["valid"] = "sk-ant-ort01-R%d" % k
            return self.reply(200, {
                "token_type": "Bearer",
                "access_token": "sk-ant-oat01-A%d" % k,
                "refresh_token": state["valid"],
                "expires_in": 28800,
                "scope": body.get("scope", ""),
            })


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--first-refresh", required=True)
    a = p.parse_args()
    state["valid"] = a.first_refresh
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
