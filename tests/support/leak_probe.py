"""Run as a tool by the agent: looks for a secret (argv[1], given in two halves so that
this file does not hold it) in every environment and command line it can read and in the
files of the sandbox it can reach, then tries the MCP relay as an attacker would: another
path of the server, and no token. Prints one line per finding."""

import os
import sys
import urllib.error
import urllib.request

secret = (sys.argv[1] + sys.argv[2]).encode()
found = []
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    for part in ("environ", "cmdline"):
        try:
            with open("/proc/%s/%s" % (pid, part), "rb") as f:
                if secret in f.read():
                    found.append("/proc/%s/%s" % (pid, part))
        except OSError:
            pass
roots = [os.path.expanduser("~"), os.getcwd(), "/tmp", "/harvest", "/run", "/etc"]
for root in roots:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                if os.path.getsize(path) > 8 * 1024 * 1024:
                    continue
                with open(path, "rb") as f:
                    if secret in f.read():
                        found.append(path)
            except OSError:
                pass
print("LEAKS " + (" ".join(found) if found else "none"))


def status(url, headers):
    req = urllib.request.Request(url, data=b"{}", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return "unreachable(%s)" % e


relay = os.environ.get("HARVEST_MCP_0")
token = os.environ.get("HARVEST_MCP_TOKEN", "")
if relay:
    print("OTHER-PATH %s" % status(relay + "/admin", {"x-harvest-relay": token}))
    print("NO-TOKEN %s" % status(relay + "/mcp", {"Content-Type": "application/json"}))
else:
    print("OTHER-PATH no-relay")
