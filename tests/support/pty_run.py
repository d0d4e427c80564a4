#!/usr/bin/env python3
"""Run a command on a pseudo-terminal that never answers a query (as a bare or slow
terminal), for a few seconds, then end it. Prints, as JSON: the seconds until the output
first held the marker text, and everything the command wrote."""
import json, os, pty, select, signal, sys, time

marker, seconds, cmd = sys.argv[1].encode(), float(sys.argv[2]), sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
import fcntl, struct, termios
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
start, out, first = time.time(), b"", None
while time.time() - start < seconds:
    r, _, _ = select.select([fd], [], [], 0.05)
    if r:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if first is None and marker in out:
            first = time.time() - start
os.kill(pid, signal.SIGTERM)
try:
    while True:
        r, _, _ = select.select([fd], [], [], 0.5)
        if not r or not os.read(fd, 65536):
            break
except OSError:
    pass
os.waitpid(pid, 0)
print(json.dumps({"first": first, "output": out.decode("utf-8", "replace")}))
