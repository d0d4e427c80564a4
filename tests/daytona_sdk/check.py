#!/usr/bin/env python3
"""Drive harvest-fake-daytona with the official Daytona Python SDK (daytona==0.190.0).

Run through run.sh, which starts the fake and sets:
  DAYTONA_API_URL=http://127.0.0.1:PORT/api  DAYTONA_API_KEY=...  DAYTONA_TARGET=us

Every check prints one line: `ok: <what>` or `FAIL: <what>: <exception>`.
The script keeps going after a failure where later checks do not depend on the failed
one, and exits 1 if anything failed. Set CHECK_FAIL_FAST=1 to stop at the first failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

from daytona import (
    CreateSandboxFromSnapshotParams,
    Daytona,
    DaytonaAuthenticationError,
    DaytonaConfig,
    DaytonaError,
    DaytonaNotFoundError,
    DaytonaValidationError,
    FileUpload,
    ListSandboxesQuery,
    Sandbox,
    SessionExecuteRequest,
)

API_URL = os.environ["DAYTONA_API_URL"]
API_KEY = os.environ["DAYTONA_API_KEY"]
TARGET = os.environ.get("DAYTONA_TARGET", "us")
FAIL_FAST = os.environ.get("CHECK_FAIL_FAST") == "1"
HOME = "/home/daytona"

failures: list[str] = []


class CheckFailed(Exception):
    pass


class Abort(Exception):
    """Raised when a failure makes the remaining checks meaningless."""


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def describe(e: BaseException) -> str:
    if isinstance(e, DaytonaError):
        return (
            f"{type(e).__name__}: {e} "
            f"(status_code={getattr(e, 'status_code', None)}, error_code={getattr(e, 'error_code', None)})"
        )
    return f"{type(e).__name__}: {e}"


def check(name: str, fn, *, critical: bool = False):
    """Run one check. Returns fn's result, or None when it failed."""
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - we report every failure
        failures.append(name)
        print(f"FAIL: {name}: {describe(e)}", flush=True)
        if os.environ.get("CHECK_TRACEBACK") == "1" or not isinstance(e, (CheckFailed, DaytonaError)):
            traceback.print_exc()
        if critical or FAIL_FAST:
            raise Abort(name) from e
        return None
    print(f"ok: {name}", flush=True)
    return result


def expect_raises(exc_types, fn, what: str, status: int | None = None):
    """Call fn and require it to raise one of exc_types (and, if given, that status_code)."""
    try:
        fn()
    except exc_types as e:
        if status is not None and getattr(e, "status_code", None) != status:
            raise CheckFailed(f"{what}: got {describe(e)}, expected status_code {status}") from e
        return e
    except Exception as e:  # noqa: BLE001
        names = exc_types.__name__ if isinstance(exc_types, type) else "/".join(t.__name__ for t in exc_types)
        raise CheckFailed(f"{what}: expected {names}, got {describe(e)}") from e
    raise CheckFailed(f"{what}: expected an error, call succeeded")


def poll(fn, pred, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if pred(last):
            return last
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- git fixture


class GitServer:
    """A bare repository served with `git daemon` on a loopback port."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="harvest-sdk-git-")
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.readme = b"harvest git check\n"

    def start(self) -> str:
        work = os.path.join(self.dir, "work")
        env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=self.dir)
        git = ["git", "-c", "user.name=Harvest", "-c", "user.email=harvest@example.invalid",
               "-c", "init.defaultBranch=main"]
        subprocess.run(git + ["init", "-q", work], check=True, env=env)
        with open(os.path.join(work, "README.md"), "wb") as f:
            f.write(self.readme)
        subprocess.run(git + ["-C", work, "add", "README.md"], check=True, env=env)
        subprocess.run(git + ["-C", work, "commit", "-q", "-m", "init"], check=True, env=env)
        subprocess.run(git + ["clone", "-q", "--bare", work, os.path.join(self.dir, "repo.git")],
                       check=True, env=env)
        daemon = "/usr/lib/git-core/git-daemon"
        cmd = [daemon] if os.access(daemon, os.X_OK) else ["git", "daemon"]
        self.port = free_port()
        self.proc = subprocess.Popen(
            cmd + ["--export-all", f"--base-path={self.dir}", "--listen=127.0.0.1",
                   f"--port={self.port}", "--reuseaddr", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        # wait until it accepts connections
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise CheckFailed("git daemon did not start")
                time.sleep(0.05)
        return f"git://127.0.0.1:{self.port}/repo.git"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- checks


def main() -> int:
    daytona = Daytona()  # reads DAYTONA_API_URL / DAYTONA_API_KEY / DAYTONA_TARGET
    labels = {"harvest.session": "s1", "harvest.instance": "i1"}
    state: dict = {}
    git = GitServer()

    try:
        run_all(daytona, labels, state, git)
    except Abort as a:
        print(f"aborting: remaining checks depend on '{a}'", flush=True)
    finally:
        git.stop()
        sb = state.get("sandbox")
        if sb is not None and not state.get("deleted"):
            try:
                sb.delete()
            except Exception:  # noqa: BLE001
                pass

    if failures:
        print(f"\n{len(failures)} check(s) failed:", flush=True)
        for f in failures:
            print(f"  - {f}", flush=True)
        return 1
    print("\nall checks passed", flush=True)
    return 0


def run_all(daytona: Daytona, labels: dict, state: dict, git: GitServer) -> None:
    # ---- error cases that need no sandbox ------------------------------------------------
    bad = Daytona(DaytonaConfig(api_key="definitely-not-the-key", api_url=API_URL, target=TARGET))

    check("bad API key: list raises DaytonaAuthenticationError (401)",
          lambda: expect_raises(DaytonaAuthenticationError, lambda: list(bad.list()), "list", 401))
    check("bad API key: create raises DaytonaAuthenticationError (401)",
          lambda: expect_raises(DaytonaAuthenticationError,
                                lambda: bad.create(CreateSandboxFromSnapshotParams(snapshot="harvest-sandbox"),
                                                   timeout=30),
                                "create", 401))
    check("get unknown id raises DaytonaNotFoundError (404)",
          lambda: expect_raises(DaytonaNotFoundError, lambda: daytona.get(str(uuid.uuid4())), "get", 404))

    # ---- create / get / list -------------------------------------------------------------
    def create():
        t0 = time.monotonic()
        sb = daytona.create(
            CreateSandboxFromSnapshotParams(snapshot="harvest-sandbox", labels=dict(labels), auto_stop_interval=15),
            timeout=60,
        )
        state["sandbox"] = sb
        expect(sb.state == "started", f"state after create = {sb.state!r}, want 'started'")
        for k, v in labels.items():
            expect(sb.labels.get(k) == v, f"labels = {sb.labels!r}, missing {k}={v}")
        expect(sb.labels.get("code-toolbox-language") == "python",
               f"SDK adds label code-toolbox-language=python; labels = {sb.labels!r}")
        expect(sb.auto_stop_interval == 15, f"auto_stop_interval = {sb.auto_stop_interval!r}")
        expect(sb.snapshot == "harvest-sandbox", f"snapshot = {sb.snapshot!r}")
        expect(sb.target == TARGET, f"target = {sb.target!r}, want {TARGET!r}")
        expect(sb.name == sb.id, f"name {sb.name!r} should default to id {sb.id!r}")
        expect(sb.toolbox_proxy_url.rstrip("/").endswith("/toolbox"),
               f"toolbox_proxy_url = {sb.toolbox_proxy_url!r}")
        return time.monotonic() - t0

    elapsed = check("create from snapshot harvest-sandbox (labels, auto_stop 15) and wait for started",
                    create, critical=True)
    sb: Sandbox = state["sandbox"]
    print(f"     sandbox {sb.id} started in {elapsed:.2f}s; toolbox {sb.toolbox_proxy_url}", flush=True)

    def get_by_id():
        got = daytona.get(sb.id)
        expect(got.id == sb.id, f"id {got.id!r}")
        expect(got.state == "started", f"state {got.state!r}")
        expect(got.labels.get("harvest.session") == "s1", f"labels {got.labels!r}")
        expect(got.env == {}, f"env {got.env!r}, want {{}}")

    check("get by id", get_by_id)
    check("get by name", lambda: expect(daytona.get(sb.name).id == sb.id, "get by name returned another sandbox"))

    def list_labels():
        found = [s.id for s in daytona.list(ListSandboxesQuery(labels={"harvest.session": "s1"}))]
        expect(sb.id in found, f"list(labels harvest.session=s1) = {found!r}, want it to contain {sb.id}")
        both = [s.id for s in daytona.list(ListSandboxesQuery(labels=dict(labels)))]
        expect(sb.id in both, f"list(both labels) = {both!r}")
        none = [s.id for s in daytona.list(ListSandboxesQuery(labels={"harvest.session": "other"}))]
        expect(none == [], f"list(labels harvest.session=other) = {none!r}, want []")
        mixed = [s.id for s in daytona.list(ListSandboxesQuery(labels={"harvest.session": "s1",
                                                                        "harvest.instance": "nope"}))]
        expect(mixed == [], f"list(one label matching, one not) = {mixed!r}, want []")

    check("list by labels (match, no match, partial match)", list_labels)

    # ---- process.exec ---------------------------------------------------------------------
    def exec_basic():
        r = sb.process.exec("echo hi && echo err 1>&2")
        expect(r.exit_code == 0, f"exit_code {r.exit_code!r}")
        expect("hi" in r.result, f"result {r.result!r} lacks 'hi'")
        expect("err" in r.result, f"result {r.result!r} lacks 'err' (stderr is merged into result)")

    check("process.exec echo hi && echo err 1>&2 -> exit 0, result has hi and err", exec_basic)

    def exec_more():
        r = sb.process.exec("exit 3")
        expect(r.exit_code == 3, f"'exit 3' exit_code {r.exit_code!r}")
        r = sb.process.exec("pwd", cwd="/tmp")
        expect(r.result.strip() == "/tmp", f"pwd with cwd=/tmp gave {r.result!r}")
        r = sb.process.exec("echo $FOO", env={"FOO": "bar"})
        expect(r.result.strip() == "bar", f"env FOO=bar gave {r.result!r}")
        r = sb.process.exec("id -u; echo $HOME")
        expect(r.result.split() == ["1000", HOME], f"'id -u; echo $HOME' gave {r.result!r}")

    check("process.exec exit code 3, cwd, env, uid 1000 / HOME", exec_more)

    # ---- sessions ------------------------------------------------------------------------
    sid = "sdk-check-session"
    check("create_session", lambda: sb.process.create_session(sid))
    check("create_session duplicate raises an error (409)",
          lambda: expect_raises(DaytonaError, lambda: sb.process.create_session(sid), "duplicate", 409))

    def sync_exec():
        r = sb.process.execute_session_command(
            sid, SessionExecuteRequest(command="echo sync-out; echo sync-err 1>&2"))
        expect(r.exit_code == 0, f"exit_code {r.exit_code!r}")
        expect(r.stdout == "sync-out\n", f"stdout {r.stdout!r}")
        expect(r.stderr == "sync-err\n", f"stderr {r.stderr!r}")
        expect(r.cmd_id, f"cmd_id {r.cmd_id!r}")

    check("execute_session_command sync: split stdout/stderr, exit 0", sync_exec)

    def session_shell_state():
        sb.process.execute_session_command(sid, SessionExecuteRequest(command="cd /tmp && export HV=carried"))
        r = sb.process.execute_session_command(sid, SessionExecuteRequest(command="pwd; echo $HV"))
        expect(r.stdout == "/tmp\ncarried\n",
               f"a session is one shell, so cd/export must carry over to the next command; stdout {r.stdout!r}")

    check("session keeps shell state (cd, export) between commands", session_shell_state)

    script = "for i in 1 2 3 4; do echo out$i; echo err$i 1>&2; sleep 0.4; done"

    def async_exec():
        r = sb.process.execute_session_command(sid, SessionExecuteRequest(command=script, run_async=True))
        expect(bool(r.cmd_id), f"cmd_id {r.cmd_id!r}")
        expect(r.exit_code is None, f"async exec returned exit_code {r.exit_code!r}, want None")
        state["cmd_started"] = time.monotonic()
        return r.cmd_id

    cmd_id = check("execute_session_command run_async=True -> cmd_id, no exit code", async_exec)

    if cmd_id:
        def running():
            c = sb.process.get_session_command(sid, cmd_id)
            expect(c.id == cmd_id, f"id {c.id!r}")
            expect(c.command == script, f"command {c.command!r}")
            expect(c.exit_code is None, f"exit_code {c.exit_code!r} while running, want None (absent)")

        check("get_session_command while running: exit_code absent", running)

        def follow():
            out: list[tuple[float, str]] = []
            err: list[tuple[float, str]] = []
            asyncio.run(sb.process.get_session_command_logs_async(
                sid, cmd_id,
                lambda s: out.append((time.monotonic(), s)),
                lambda s: err.append((time.monotonic(), s)),
            ))
            stdout = "".join(s for _, s in out)
            stderr = "".join(s for _, s in err)
            expect(stdout == "out1\nout2\nout3\nout4\n", f"followed stdout {stdout!r}")
            expect(stderr == "err1\nerr2\nerr3\nerr4\n", f"followed stderr {stderr!r}")
            # live: the first chunk must arrive well before the last one (command runs ~1.6 s)
            first = min(t for t, _ in out + err)
            last = max(t for t, _ in out + err)
            expect(last - first > 0.8,
                   f"chunks were not streamed live (first..last chunk {last - first:.2f}s apart)")

        check("get_session_command_logs_async (WebSocket follow): stdout/stderr apart, streamed live", follow)

        def finished():
            c = poll(lambda: sb.process.get_session_command(sid, cmd_id), lambda c: c.exit_code is not None,
                     10, what="exit_code to appear")
            expect(c.exit_code == 0, f"exit_code {c.exit_code!r}")

        check("get_session_command after finish: exit_code 0", finished)

        def logs():
            l = sb.process.get_session_command_logs(sid, cmd_id)
            expect(l.stdout == "out1\nout2\nout3\nout4\n", f"stdout {l.stdout!r}")
            expect(l.stderr == "err1\nerr2\nerr3\nerr4\n", f"stderr {l.stderr!r}")
            expect(l.output is not None and "out1" in l.output and "err4" in l.output, f"output {l.output!r}")

        check("get_session_command_logs: stdout and stderr apart", logs)

    def follow_finished_large():
        py = ("import sys\n"
              "for i in range(3000):\n"
              "    print('o%d \\u00e9\\u2603' % i)\n"
              "    print('e%d' % i, file=sys.stderr)\n")
        sb.fs.upload_file(py.encode(), f"{HOME}/gen.py")
        r = sb.process.execute_session_command(sid, SessionExecuteRequest(command=f"python3 {HOME}/gen.py"))
        expect(r.exit_code == 0, f"exit_code {r.exit_code!r}, stderr {r.stderr[:200]!r}")
        want_out = "".join(f"o{i} \u00e9\u2603\n" for i in range(3000))
        want_err = "".join(f"e{i}\n" for i in range(3000))
        expect(r.stdout == want_out, f"sync stdout differs ({len(r.stdout)} chars, want {len(want_out)})")
        out: list[str] = []
        err: list[str] = []
        asyncio.run(sb.process.get_session_command_logs_async(sid, r.cmd_id, out.append, err.append))
        got_out, got_err = "".join(out), "".join(err)
        # SDK 0.190.0 demux bug: when a frame ends with a complete 3-byte marker, the marker leaks into
        # the text. The daemon's 1024-byte chunking hits this too, so it is not the fake's fault: strip
        # stray marker bytes before comparing, and say so.
        leaked = sum(t.count("\x01") + t.count("\x02") for t in (got_out, got_err))
        if leaked:
            print(f"     note: SDK demux leaked {leaked} marker byte(s) (frame ended on a whole marker)", flush=True)
            got_out = got_out.replace("\x01", "").replace("\x02", "")
            got_err = got_err.replace("\x01", "").replace("\x02", "")
        expect(got_out == want_out, f"followed stdout differs ({len(got_out)} chars, want {len(want_out)})")
        expect(got_err == want_err, f"followed stderr differs ({len(got_err)} chars, want {len(want_err)})")

    check("WebSocket follow of a finished command replays a large log (UTF-8, both streams)",
          follow_finished_large)

    def no_trailing_newline():
        r = sb.process.execute_session_command(sid, SessionExecuteRequest(command="printf abc"))
        expect(r.stdout == "abc\n", f"stdout {r.stdout!r}, want 'abc\\n' (a final line gets a newline in the log)")

    check("session output without a trailing newline is logged as 'abc\\n'", no_trailing_newline)

    def exit_code_7():
        r = sb.process.execute_session_command(sid, SessionExecuteRequest(command="sh -c 'exit 7'", run_async=True))
        c = poll(lambda: sb.process.get_session_command(sid, r.cmd_id), lambda c: c.exit_code is not None, 10,
                 what="exit_code")
        expect(c.exit_code == 7, f"exit_code {c.exit_code!r}, want 7")

    check("async session command exit code 7", exit_code_7)

    def send_input():
        r = sb.process.execute_session_command(sid, SessionExecuteRequest(command="read l; echo got:$l",
                                                                          run_async=True))
        time.sleep(0.2)
        c = sb.process.get_session_command(sid, r.cmd_id)
        expect(c.exit_code is None, f"'read' command finished before input (exit_code {c.exit_code!r})")
        sb.process.send_session_command_input(sid, r.cmd_id, "hello")
        c = poll(lambda: sb.process.get_session_command(sid, r.cmd_id), lambda c: c.exit_code is not None, 10,
                 what="exit_code after input")
        expect(c.exit_code == 0, f"exit_code {c.exit_code!r}")
        l = sb.process.get_session_command_logs(sid, r.cmd_id)
        expect("got:hello\n" in l.stdout, f"stdout {l.stdout!r} lacks 'got:hello'")
        expect(l.stdout == "hello\ngot:hello\n",
               f"stdout {l.stdout!r}, want 'hello\\ngot:hello\\n' (input is echoed to the log as stdout)")
        state["finished_cmd"] = r.cmd_id

    check("send_session_command_input to 'read l; echo got:$l'", send_input)

    if state.get("finished_cmd"):
        check("send_session_command_input to a finished command raises (410)",
              lambda: expect_raises(DaytonaError,
                                    lambda: sb.process.send_session_command_input(sid, state["finished_cmd"], "x"),
                                    "input after exit", 410))

    def get_session():
        s = sb.process.get_session(sid)
        expect(s.session_id == sid, f"session_id {s.session_id!r}")
        expect(len(s.commands) >= 4, f"commands {s.commands!r}")
        expect(any(c.command == script for c in s.commands), "async command not listed in session")
        expect(any(s2.session_id == sid for s2 in sb.process.list_sessions()), "list_sessions lacks the session")

    check("get_session / list_sessions", get_session)

    def delete_session():
        sb.process.delete_session(sid)
        expect_raises(DaytonaNotFoundError, lambda: sb.process.get_session(sid), "get_session after delete", 404)

    check("delete_session, then get_session raises DaytonaNotFoundError (404)", delete_session)

    def cancel_by_delete():
        s2 = "sdk-check-cancel"
        sb.process.create_session(s2)
        r = sb.process.execute_session_command(s2, SessionExecuteRequest(command="sleep 30", run_async=True))
        t0 = time.monotonic()
        sb.process.delete_session(s2)
        expect(time.monotonic() - t0 < 8, "delete_session of a running command took too long")
        expect_raises(DaytonaNotFoundError, lambda: sb.process.get_session_command(s2, r.cmd_id),
                      "get_session_command after session delete", 404)

    check("delete_session kills a running command; its command then 404s", cancel_by_delete)

    # ---- files ---------------------------------------------------------------------------
    content = b"hello file\n"
    up = f"{HOME}/up/hello.txt"

    def upload_download():
        sb.fs.upload_file(content, up)
        got = sb.fs.download_file(up)
        expect(got == content, f"downloaded {got!r}, want {content!r}")
        r = sb.process.exec(f"cat {up}")
        expect(r.result == content.decode(), f"cat in the sandbox gave {r.result!r}")

    check("fs.upload_file (parent dir created) and fs.download_file round-trip", upload_download)

    def upload_many():
        blob = bytes(range(256)) * 64 + b"\r\n--not-a-boundary\r\n"
        sb.fs.upload_files([
            FileUpload(source=b"one\n", destination=f"{HOME}/multi/one.txt"),
            FileUpload(source=blob, destination=f"{HOME}/multi/blob.bin"),
        ])
        expect(sb.fs.download_file(f"{HOME}/multi/one.txt") == b"one\n", "one.txt content")
        got = sb.fs.download_file(f"{HOME}/multi/blob.bin")
        expect(got == blob, f"blob.bin: {len(got)} bytes back, want {len(blob)} identical bytes")

    check("fs.upload_files two files in one request (binary content) and download each", upload_many)

    def list_files():
        entries = sb.fs.list_files(f"{HOME}/up")
        names = {e.name: e for e in entries}
        expect("hello.txt" in names, f"list_files names {sorted(names)!r}")
        e = names["hello.txt"]
        expect(e.size == len(content), f"size {e.size!r}")
        expect(e.is_dir is False, f"is_dir {e.is_dir!r}")

    check("fs.list_files", list_files)

    def folder_and_info():
        sb.fs.create_folder(f"{HOME}/newdir/sub", "755")
        info = sb.fs.get_file_info(f"{HOME}/newdir/sub")
        expect(info.is_dir is True, f"is_dir {info.is_dir!r}")
        expect(info.name == "sub", f"name {info.name!r}")
        expect(info.permissions == "0755", f"permissions {info.permissions!r}, want '0755'")
        finfo = sb.fs.get_file_info(up)
        expect(finfo.is_dir is False and finfo.size == len(content), f"file info {finfo!r}")
        expect(finfo.name == "hello.txt", f"name {finfo.name!r}")
        expect(finfo.owner == "1000" or finfo.owner == "daytona", f"owner {finfo.owner!r}")

    check("fs.create_folder (mkdir -p, mode 755) and fs.get_file_info", folder_and_info)

    check("fs.get_file_info of a missing path raises DaytonaNotFoundError (404)",
          lambda: expect_raises(DaytonaNotFoundError, lambda: sb.fs.get_file_info(f"{HOME}/nope.txt"),
                                "info missing", 404))
    def download_missing():
        e = expect_raises(DaytonaError, lambda: sb.fs.download_file(f"{HOME}/nope.txt"), "download missing")
        print(f"     (download of a missing file raised {describe(e)})", flush=True)

    check("fs.download_file of a missing path raises DaytonaError (bulk-download error part)", download_missing)

    def delete_file():
        sb.fs.delete_file(f"{HOME}/multi/one.txt")
        expect_raises(DaytonaNotFoundError, lambda: sb.fs.get_file_info(f"{HOME}/multi/one.txt"),
                      "info after delete", 404)

    check("fs.delete_file", delete_file)

    # ---- git -----------------------------------------------------------------------------
    def git_clone():
        url = git.start()
        sb.git.clone(url, f"{HOME}/repo")
        got = sb.fs.download_file(f"{HOME}/repo/README.md")
        expect(got == git.readme, f"README.md {got!r}")

    check("git.clone of a git:// repo, then fs.download_file of a file in it", git_clone)

    # ---- preview -------------------------------------------------------------------------
    def preview():
        p = sb.get_preview_link(3000)
        expect(bool(p.url) and "3000" in p.url, f"url {p.url!r}")
        expect(bool(p.token), f"token {p.token!r}")
        expect(p.sandbox_id == sb.id, f"sandbox_id {p.sandbox_id!r}")
        state["token"] = p.token

    check("get_preview_link(3000) has url and token", preview)

    # ---- lifecycle -----------------------------------------------------------------------
    def stop():
        sb.stop()
        expect(sb.state == "stopped", f"state after stop {sb.state!r}")
        expect(daytona.get(sb.id).state == "stopped", "get after stop is not 'stopped'")

    check("stop -> stopped", stop)
    stopped = "stop -> stopped" not in failures

    if stopped:
        check("stop of an already stopped sandbox raises DaytonaValidationError (400)",
              lambda: expect_raises(DaytonaValidationError, lambda: sb.stop(), "second stop", 400))
        check("toolbox call on a stopped sandbox raises DaytonaValidationError (400)",
              lambda: expect_raises(DaytonaValidationError, lambda: sb.process.exec("true"), "exec stopped", 400))

    def start():
        sb.start()
        expect(sb.state == "started", f"state after start {sb.state!r}")
        r = sb.process.exec("cat " + up)
        expect(r.result == content.decode(), f"file after restart: {r.result!r}")

    check("start -> started again (files kept)", start)

    if state.get("token"):
        def token_rotated():
            p = sb.get_preview_link(3000)
            expect(p.token and p.token != state["token"], "preview token did not change after stop/start")

        check("preview token rotates on start from stopped", token_rotated)

    def bad_key_toolbox():
        # A Sandbox bound to the bad-key client (SDK internals: same objects Daytona.get builds).
        dto = daytona._sandbox_api.get_sandbox(sb.id)
        bsb = Sandbox(dto, bad._toolbox_api_client, bad._sandbox_api, "python", http_client=bad._http_client)
        expect_raises(DaytonaAuthenticationError, lambda: bsb.process.exec("true"), "toolbox with bad key", 401)

    check("toolbox call with a bad API key raises DaytonaAuthenticationError (401)", bad_key_toolbox)

    def delete():
        sb.delete()
        state["deleted"] = True
        poll(lambda: _get_state(daytona, sb.id), lambda s: s == "404", 10, what="GET to return 404 after delete")
        expect_raises(DaytonaNotFoundError, lambda: daytona.get(sb.id), "get after delete", 404)
        found = [s.id for s in daytona.list(ListSandboxesQuery(labels={"harvest.session": "s1"}))]
        expect(sb.id not in found, f"deleted sandbox still listed: {found!r}")

    check("delete, then get raises DaytonaNotFoundError (404) and list omits it", delete)


def _get_state(daytona: Daytona, sid: str) -> str:
    try:
        return str(daytona.get(sid).state)
    except DaytonaNotFoundError:
        return "404"


if __name__ == "__main__":
    sys.exit(main())
