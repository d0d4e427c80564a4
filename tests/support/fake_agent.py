#!/usr/bin/python3
# A stand-in for the claude CLI, for tests and benchmarks of Harvest's own pipeline only
# (everything else runs the real CLI). It speaks just enough stream-json:
#   "emit N GAP"  print N lines stamped with their write time (ns), GAP seconds apart,
#                 then a turn result
#   "mix N"       N events as the CLI writes a working session: markdown text, Bash
#                 calls with 20 lines of output each, then a turn result; the last
#                 text says "MIX-END"
#   "freeze"      say so, then stop itself with SIGSTOP (as a tool in the jail can do
#                 to the CLI), so that it never reads its input again
#   "stubborn"    start a tool-like child in its own session (as the CLI's Bash tool
#                 does), then ignore interrupt requests and SIGTERM, so that only
#                 killing the whole sandbox ends the turn
import json, os, signal, subprocess, sys, time


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")


def result():
    emit({"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
          "duration_ms": 1, "total_cost_usd": 0, "usage": {"input_tokens": 0, "output_tokens": 0}})
    sys.stdout.flush()


for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("type") != "user":
        continue  # interrupts and other control requests are ignored on purpose
    words = msg["message"]["content"].split()
    if words[0] == "emit":
        n, gap = int(words[1]), float(words[2])
        for i in range(n):
            emit({"type": "system", "subtype": "bench_tick", "i": i, "t": time.time_ns()})
            if gap > 0:
                sys.stdout.flush()
                time.sleep(gap)
        result()
    elif words[0] == "mix":
        n = int(words[1])
        for i in range(0, n, 3):
            emit({"type": "assistant", "message": {"content": [{"type": "text", "text":
                  f"Step {i}: looking at **the parser** and `tokenize` next.\n\n- one\n- two"}]}})
            emit({"type": "assistant", "message": {"content": [{"type": "tool_use", "id": f"t{i}",
                  "name": "Bash", "input": {"command": f"cargo test step_{i}", "description": "tests"}}]}})
            out = "\n".join(f"test case_{i}_{k} ... ok" for k in range(20))
            emit({"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": f"t{i}",
                  "content": out}]}, "tool_use_result": {"stdout": out, "stderr": "", "interrupted": False}})
        emit({"type": "assistant", "message": {"content": [{"type": "text", "text": "All done: MIX-END"}]}})
        result()
    elif words[0] == "freeze":
        emit({"type": "system", "subtype": "frozen"})
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSTOP)
    elif words[0] == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # The marker carries the workspace, so a test finds only its own child.
        child = subprocess.Popen(["python3", "-c", "import time; time.sleep(300)  # escaped-tool " + os.getcwd()],
                                 start_new_session=True)
        emit({"type": "system", "subtype": "stubborn_started", "child": child.pid})
        sys.stdout.flush()
        while True:
            time.sleep(1)
