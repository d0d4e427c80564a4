"""A tool using the agent's token itself, through the model proxy (the conformance suite
runs it as a Bash step): the key's other powers (Files, Batches) and spending outside
the CLI's own accounting. Prints `<what> <HTTP status>` per call."""

import json
import os
import urllib.error
import urllib.request

base = os.environ["ANTHROPIC_BASE_URL"].rstrip("/")
token = os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN", "")


def call(method, path, body=None, tries=2):
    req = urllib.request.Request(
        base + path,
        method=method,
        data=body,
        headers={
            "x-api-key": token,
            "content-type": "application/json",
            "anthropic-version": "2023-06-01",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except ConnectionError:
        # Once seen under heavy load in a container (the connection closed before any
        # answer); a client retries as the CLI itself does.
        if tries > 1:
            return call(method, path, body, tries - 1)
        raise


print("files-list", call("GET", "/v1/files"), flush=True)
print("files-delete", call("DELETE", "/v1/files/file_011"), flush=True)
print("batches", call("POST", "/v1/messages/batches", b"{}"), flush=True)
spend = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "spend through the proxy"}],
    }
).encode()
for _ in range(3):
    print("spend", call("POST", "/v1/messages?beta=true", spend), flush=True)
print("proxy-probe-done", flush=True)
