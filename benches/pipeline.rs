//! Pipeline benchmarks against the real `harvest` daemon binary (build it first:
//! `cargo build --release -p harvest && cargo bench --bench pipeline`).
//!
//! 1. Event latency: an agent line written to the durable log → the event received by a
//!    subscribed client (median, p99). The agent is a stand-in
//!    for the CLI (`tests/support/fake_agent.py`) that stamps each line with its write time,
//!    2 ms apart.
//! 2. Replay: a new subscriber receives a stored 100 000-event session from seq 1.
//! 3. Local sandbox start: `bwrap <the session jail> -- /bin/true`, against spawning
//!    `/bin/true` directly.
//! 4. Whole-run overhead: `harvest run` against `claude -p` directly, on the same scripted
//!    session (the demo's: Read, Edit, Bash, text) through the scripted model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_client::Client;
use harvest_config::Paths;
use harvest_e2e::{Harness, claude_bin, fake_agent, harvest_bin};
use harvest_protocol::methods as m;
use harvest_protocol::{Event, EventBody, Seq};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEMO_SCRIPT: &str = include_str!("../crates/harvest/src/commands/demo/script.toml");

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "harvest pipeline benchmarks (medians; machine: {} cores)",
        cores()
    );
    // HARVEST_BENCH_ONLY=replay (or latency, sandbox, run, cancel) runs one part.
    let only = std::env::var("HARVEST_BENCH_ONLY").ok();
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if part("latency") {
        rt.block_on(latency());
    }
    if part("replay") {
        rt.block_on(replay());
    }
    if part("sandbox") {
        sandbox_start();
    }
    if part("run") {
        run_overhead();
    }
    if part("cancel") {
        rt.block_on(cancel_latency());
    }
}

/// `session/cancel` during a running Bash command (real CLI, scripted model) → the
/// interrupted `turn_result` reaching a subscriber.
async fn cancel_latency() {
    let h = Harness::new(
        "[[turn]]\n[[turn.step]]\ntool_use = { name = \"Bash\", input = { command = \"python3 -c 'import time; time.sleep(60)'\", description = \"slow\" } }\n[[turn.step]]\ntext = \"done\"\n",
    );
    let id = h.new_session("warm up");
    h.wait_events(&id, "the first Bash call", Duration::from_secs(60), |e| {
        e.iter().any(|e| e["type"] == "tool_call")
    });
    let mut client = Client::connect(&paths(&h), "bench").await.unwrap();
    subscribe_from_now(&client, &id).await;
    let mut runs = Vec::new();
    for round in 0..7 {
        if round > 0 {
            client
                .call::<m::SessionSend>(m::SendParams {
                    session: id.clone(),
                    text: format!("again {round}"),
                    env: Default::default(),
                })
                .await
                .unwrap();
        }
        // Wait until the command runs (round 0's call came before the subscription), then
        // cancel.
        if round > 0 {
            loop {
                let note = client.next_notification().await.unwrap();
                if note.params["event"]["type"] == "tool_call" {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let start = Instant::now();
        client
            .call::<m::SessionCancel>(m::SessionRef {
                session: id.clone(),
            })
            .await
            .unwrap();
        loop {
            let note = client.next_notification().await.unwrap();
            if note.params["event"]["type"] == "turn_result" {
                runs.push(start.elapsed());
                break;
            }
        }
        // Let the session settle to idle before the next round.
        loop {
            let note = client.next_notification().await.unwrap();
            if note.params["event"]["state"] == "idle" {
                break;
            }
        }
    }
    runs.sort();
    println!(
        "cancel latency, request → interrupted turn_result during a running Bash command: median {:.0} ms (runs {:?} ms; target < 300 ms)",
        ms(runs[runs.len() / 2]),
        runs.iter()
            .map(|d| ms(*d).round() as u64)
            .collect::<Vec<_>>()
    );
}

fn paths(h: &Harness) -> Paths {
    Paths {
        socket: h.socket(),
        data_dir: h.path("data/harvest"),
        state_dir: h.path("state/harvest"),
        config_dir: h.path("config/harvest"),
    }
}

/// A session running the fake agent, idle after an empty first turn.
async fn fake_session(h: &Harness) -> (Client, String) {
    let id = h.new_session("emit 0 0");
    h.wait_events(&id, "the empty turn", Duration::from_secs(30), |e| {
        e.iter().any(|e| e["type"] == "turn_result")
    });
    let client = Client::connect(&paths(h), "bench").await.unwrap();
    (client, id)
}

async fn latency() {
    let h = Harness::with_env("", &[("HARVEST_CLAUDE", &fake_agent())]);
    let (mut client, id) = fake_session(&h).await;
    subscribe_from_now(&client, &id).await;
    let n = 2000;
    client
        .call::<m::SessionSend>(m::SendParams {
            session: id.clone(),
            text: format!("emit {n} 0.002"),
            env: Default::default(),
        })
        .await
        .unwrap();
    let mut lat = Vec::with_capacity(n);
    while let Some(note) = client.next_notification().await {
        let now = now_ns();
        let Some(ev) = note.params.get("event") else {
            continue;
        };
        let ev: Event = serde_json::from_value(ev.clone()).unwrap();
        match ev.body {
            EventBody::AgentRaw {} => {
                let t = ev.raw.as_ref().and_then(|r| r["t"].as_u64()).unwrap();
                lat.push(Duration::from_nanos(now.saturating_sub(t)));
            }
            EventBody::TurnResult { .. } => break,
            _ => {}
        }
    }
    assert_eq!(lat.len(), n, "every line arrived");
    lat.sort();
    println!(
        "event latency, agent log line → subscribed client ({n} lines, 2 ms apart): median {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 < 5 ms)",
        ms(lat[n / 2]),
        ms(lat[n * 99 / 100]),
        ms(lat[n - 1])
    );
}

async fn replay() {
    let h = Harness::with_env("", &[("HARVEST_CLAUDE", &fake_agent())]);
    let (client, id) = fake_session(&h).await;
    let n = 100_000;
    let fill = Instant::now();
    client
        .call::<m::SessionSend>(m::SendParams {
            session: id.clone(),
            text: format!("emit {n} 0"),
            env: Default::default(),
        })
        .await
        .unwrap();
    let last = loop {
        let info = client
            .call::<m::SessionGet>(m::SessionRef {
                session: id.clone(),
            })
            .await
            .unwrap();
        if info.state == harvest_protocol::SessionState::Idle && info.last_seq.0 > n as u64 {
            break info.last_seq;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ingest = fill.elapsed();
    let mut runs = Vec::new();
    for _ in 0..5 {
        let mut c = Client::connect(&paths(&h), "bench").await.unwrap();
        let start = Instant::now();
        c.call::<m::SessionSubscribe>(m::SubscribeParams {
            session: id.clone(),
            from_seq: Seq(1),
            include_raw: true,
        })
        .await
        .unwrap();
        let mut got = 0u64;
        while let Some(note) = c.next_notification().await {
            got += 1;
            if note.params["event"]["seq"].as_u64() == Some(last.0) {
                break;
            }
        }
        assert_eq!(got, last.0, "the replay delivered every event once");
        runs.push(start.elapsed());
    }
    // The same replay read as bytes, each line found but not decoded: what the daemon and
    // the socket cost, apart from the client's JSON decoding.
    let mut wire = Vec::new();
    for _ in 0..5 {
        wire.push(raw_replay(&h, &id, last).await);
    }
    wire.sort();
    println!(
        "  … read off the socket without decoding each event: median {:.0} ms (runs {:?} ms)",
        ms(wire[2]),
        wire.iter()
            .map(|d| ms(*d).round() as u64)
            .collect::<Vec<_>>()
    );
    runs.sort();
    println!(
        "replay of a {}-event session to a new subscriber: median {:.0} ms (runs {:?} ms; target < 1000 ms); ingesting them took {:.0} ms ({:.0} events/s)",
        last.0,
        ms(runs[2]),
        runs.iter()
            .map(|d| ms(*d).round() as u64)
            .collect::<Vec<_>>(),
        ms(ingest),
        last.0 as f64 / ingest.as_secs_f64()
    );
}

/// Subscribe over a bare socket and read lines until the event with seq `last`.
async fn raw_replay(h: &Harness, id: &str, last: Seq) -> Duration {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::UnixStream::connect(h.socket()).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::with_capacity(1 << 20, read).lines();
    let hello = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hello\",\"params\":{{\"protocol\":{},\"client\":\"bench\",\"version\":\"0\"}}}}\n",
        harvest_protocol::PROTOCOL_VERSION
    );
    write.write_all(hello.as_bytes()).await.unwrap();
    lines.next_line().await.unwrap();
    let start = Instant::now();
    let sub = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"session/subscribe\",\"params\":{{\"session\":\"{id}\",\"from_seq\":1,\"include_raw\":true}}}}\n"
    );
    write.write_all(sub.as_bytes()).await.unwrap();
    let needle = format!("\"seq\":{},", last.0);
    let mut got = 0u64;
    while let Some(line) = lines.next_line().await.unwrap() {
        got += 1;
        if line.contains(&needle) {
            break;
        }
    }
    // The subscribe reply and every event.
    assert_eq!(got, last.0 + 1, "every event once");
    start.elapsed()
}

fn sandbox_start() {
    use harvest_sandbox::local::bwrap::{JailPolicy, bwrap_args, host_system_entries};
    let dir = tempfile::tempdir().unwrap();
    for d in ["ws", "home"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let policy = JailPolicy {
        workspace: dir.path().join("ws"),
        workspace_in_jail: dir.path().join("ws"),
        home: dir.path().join("home"),
        agent_binary: claude_bin(),
        hidden: vec![],
        network: true,
        harvest: harvest_bin(),
        model_link: None,
        home_binds: vec![],
        identity: None,
    };
    let args = bwrap_args(&policy, &host_system_entries());
    let seccomp = harvest_sandbox::seccomp::bpf_program();
    let time = |f: &dyn Fn() -> Command| {
        let mut v: Vec<Duration> = (0..30)
            .map(|_| {
                let start = Instant::now();
                let ok = f().stdout(Stdio::null()).status().unwrap().success();
                assert!(ok);
                start.elapsed()
            })
            .collect();
        v.sort();
        v[15]
    };
    let jail = time(&|| {
        let mut c = Command::new("bwrap");
        // The jail's seccomp program, handed over as the supervisor does (a fresh
        // descriptor each time: bwrap reads it to its end; 30 are left open here).
        let fds = harvest_supervisor::fds::seccomp_for(&mut c, &seccomp).unwrap();
        std::mem::forget(fds);
        c.args(&args).args(["--", "/bin/true"]);
        c
    });
    let bare = time(&|| Command::new("/bin/true"));
    println!(
        "local sandbox start (bwrap jail → /bin/true exits): median {:.1} ms vs {:.1} ms for /bin/true alone (+{:.1} ms; target < 50 ms)",
        ms(jail),
        ms(bare),
        ms(jail.saturating_sub(bare))
    );
}

fn run_overhead() {
    let h = Harness::new(DEMO_SCRIPT);
    let ws = h.workspace.clone();
    let reset = |ws: &Path| {
        std::fs::write(ws.join("calc.py"), "def add(a, b):\n    return a - b\n").unwrap();
        std::fs::write(
            ws.join("test_calc.py"),
            "import unittest\nfrom calc import add\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
        )
        .unwrap();
    };
    let prompt = "Fix the failing test in this project.";
    // Warm the daemon so that its start is not counted against each run.
    h.ok(&["daemon"]);
    let direct = |home: &PathBuf| {
        let mut c = Command::new(claude_bin());
        c.args([
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--dangerously-skip-permissions",
        ])
        .current_dir(&ws)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("ANTHROPIC_BASE_URL", h.model.base_url())
        .env("ANTHROPIC_API_KEY", harvest_e2e::TEST_KEY)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("IS_SANDBOX", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
        c
    };
    let (mut d, mut hv) = (Vec::new(), Vec::new());
    for i in 0..7 {
        reset(&ws);
        let home = h.path(&format!("direct-home-{i}"));
        std::fs::create_dir_all(&home).unwrap();
        let start = Instant::now();
        assert!(direct(&home).status().unwrap().success());
        d.push(start.elapsed());
        assert!(
            std::fs::read_to_string(ws.join("calc.py"))
                .unwrap()
                .contains("a + b")
        );

        reset(&ws);
        let start = Instant::now();
        h.ok(&["run", "--workspace", ws.to_str().unwrap(), prompt]);
        hv.push(start.elapsed());
        assert!(
            std::fs::read_to_string(ws.join("calc.py"))
                .unwrap()
                .contains("a + b")
        );
    }
    d.sort();
    hv.sort();
    let (d, hv) = (d[3], hv[3]);
    println!(
        "whole run, scripted Read+Edit+Bash session: `claude -p` {:.0} ms, `harvest run` {:.0} ms: ratio {:.3} ({:+.1}%; target < +10%)",
        ms(d),
        ms(hv),
        hv.as_secs_f64() / d.as_secs_f64(),
        (hv.as_secs_f64() / d.as_secs_f64() - 1.0) * 100.0
    );
}

/// Subscribe to a session's events from the next one on.
async fn subscribe_from_now(client: &Client, id: &str) {
    let info = client
        .call::<m::SessionGet>(m::SessionRef {
            session: id.to_owned(),
        })
        .await
        .unwrap();
    client
        .call::<m::SessionSubscribe>(m::SubscribeParams {
            session: id.to_owned(),
            from_seq: info.last_seq.next(),
            include_raw: true,
        })
        .await
        .unwrap();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
