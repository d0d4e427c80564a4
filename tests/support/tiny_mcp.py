"""A tiny stdio MCP server for the tests: one tool, `echo_marker`, that answers
MCP-TOOL-REACHED (and the uid it runs as, which shows it runs inside the sandbox)."""

import json
import os
import sys

for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if "id" not in msg:
        continue
    method = msg.get("method")
    if method == "initialize":
        result = {
            "protocolVersion": msg.get("params", {}).get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "tiny", "version": "1.0.0"},
        }
    elif method == "tools/list":
        result = {"tools": [{
            "name": "echo_marker",
            "description": "Answers with a marker.",
            "inputSchema": {"type": "object", "properties": {}},
        }]}
    elif method == "tools/call":
        where = "cwd=%s named-secret=%s" % (
            os.getcwd(), "given" if os.environ.get("SERVICE_TOKEN") else "absent")
        result = {"content": [{"type": "text", "text": "MCP-TOOL-REACHED " + where}]}
    else:
        result = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    sys.stdout.flush()
