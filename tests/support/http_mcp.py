"""A tiny streamable-HTTP MCP server on loopback for the tests: one tool, `whoami`,
answering HTTP-MCP-REACHED. Every request must carry `Authorization: Bearer TOKEN`
(argv[2]), else 401. Prints `listening on http://127.0.0.1:PORT`, and writes a JSON line
per request (method, path, whether the token matched) to the file argv[3].

    python3 http_mcp.py PORT|0 TOKEN LOG"""

import http.server
import json
import sys

TOKEN = sys.argv[2] if len(sys.argv) > 2 else ""
LOG = open(sys.argv[3], "a") if len(sys.argv) > 3 else sys.stderr


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _auth(self):
        ok = self.headers.get("Authorization") == "Bearer " + TOKEN
        LOG.write(json.dumps({"method": self.command, "path": self.path, "authorized": ok,
                              "headers": sorted(self.headers.keys())}) + "\n")
        LOG.flush()
        if not ok:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
        return ok

    def do_GET(self):
        if not self._auth():
            return
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self):
        if not self._auth():
            return
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if not self._auth():
            return
        msg = json.loads(body)
        if "id" not in msg:
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        m = msg.get("method")
        if m == "initialize":
            result = {"protocolVersion": msg.get("params", {}).get("protocolVersion", "2025-06-18"),
                      "capabilities": {"tools": {}},
                      "serverInfo": {"name": "remote", "version": "1.0.0"}}
        elif m == "tools/list":
            result = {"tools": [{"name": "whoami", "description": "Answers with a marker.",
                                 "inputSchema": {"type": "object", "properties": {}}}]}
        elif m == "tools/call":
            result = {"content": [{"type": "text", "text": "HTTP-MCP-REACHED"}]}
        else:
            result = {}
        out = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Mcp-Session-Id", "s1")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), H)
print("listening on http://127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()
