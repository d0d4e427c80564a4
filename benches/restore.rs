//! Restart benchmarks against the real `harvest` daemon binary (build it first:
//! `cargo build --release -p harvest && cargo bench --bench restore`).
//!
//! 1. 100 live sessions (a stand-in agent, `tests/support/fake_agent.py`, so that 100
//!    agents fit on a small machine), the daemon killed with `kill -9`: time from starting
//!    a new daemon to its socket answering `hello`, and to every session answering a new
//!    turn (all re-adopted).
//! 2. One session with 1 000 000 stored events, the daemon killed: time to `hello`, and
//!    to `session/list` answering.
//!
//! Each figure is the median of several restarts of the same store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_client::Client;
use harvest_config::Paths;
use harvest_e2e::{Harness, fake_agent};
use harvest_protocol::methods as m;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("harvest restart benchmarks (medians)");
    if std::env::var_os("HARVEST_BENCH_SKIP_MANY").is_none() {
        rt.block_on(many_live_sessions(100));
    }
    rt.block_on(one_long_session(1_000_000));
}

fn paths(h: &Harness) -> Paths {
    Paths {
        socket: h.socket(),
        data_dir: h.path("data/harvest"),
        state_dir: h.path("state/harvest"),
        config_dir: h.path("config/harvest"),
    }
}

/// Start a daemon by hand (as a client's autostart would) and time its first `hello`.
fn start_daemon_and_time_hello(h: &Harness) -> (std::process::Child, Duration) {
    let t = Instant::now();
    let mut child = h
        .cmd(&["daemon", "--foreground"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !hello(h) {
        if t.elapsed() > Duration::from_secs(60) {
            kill(&mut child);
            panic!("the daemon never answered");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (child, t.elapsed())
}

fn hello(h: &Harness) -> bool {
    let Ok(mut s) = UnixStream::connect(h.socket()) else {
        return false;
    };
    let req = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hello\",\"params\":{{\"protocol\":{},\"client\":\"bench\",\"version\":\"0\"}}}}\n",
        harvest_protocol::PROTOCOL_VERSION
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line.contains("\"result\"")
}

fn kill(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

async fn many_live_sessions(n: usize) {
    let h = Harness::with_env("", &[("HARVEST_CLAUDE", &fake_agent())]);
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(h.new_session("emit 0 0"));
    }
    for id in &ids {
        h.wait_events(id, "the empty turn", Duration::from_secs(120), |e| {
            e.iter().any(|e| e["type"] == "turn_result")
        });
    }
    h.kill_daemon();
    let (mut hellos, mut ready) = (Vec::new(), Vec::new());
    for round in 0..5 {
        let (mut child, to_hello) = start_daemon_and_time_hello(&h);
        let t = Instant::now();
        let client = Client::connect(&paths(&h), "bench").await.unwrap();
        // Every session answers a turn of its re-adopted agent.
        let mut waiting = Vec::new();
        for id in &ids {
            client
                .call::<m::SessionSend>(m::SendParams {
                    session: id.clone(),
                    text: "emit 1 0".into(),
                    env: Default::default(),
                })
                .await
                .unwrap();
            waiting.push(id.clone());
        }
        for id in &waiting {
            loop {
                let info = client
                    .call::<m::SessionGet>(m::SessionRef {
                        session: id.clone(),
                    })
                    .await
                    .unwrap();
                if info.state == harvest_protocol::SessionState::Idle
                    && info.last_seq.0 >= 6 + 5 * (round as u64 + 1)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        hellos.push(to_hello);
        ready.push(to_hello + t.elapsed());
        drop(client);
        kill(&mut child);
    }
    let interrupted = h
        .ok(&["ls", "--json"])
        .lines()
        .filter(|l| l.contains("\"interrupted\""))
        .count();
    println!(
        "restart with {n} live sessions: socket answers hello in {:.1} ms; every session re-adopted and answering a turn in {:.0} ms ({interrupted} interrupted) (target hello < 1 s)",
        ms(median(&mut hellos)),
        ms(median(&mut ready)),
    );
}

async fn one_long_session(n: usize) {
    let h = Harness::with_env("", &[("HARVEST_CLAUDE", &fake_agent())]);
    let id = h.new_session("emit 0 0");
    h.wait_events(&id, "the empty turn", Duration::from_secs(60), |e| {
        e.iter().any(|e| e["type"] == "turn_result")
    });
    let client = Client::connect(&paths(&h), "bench").await.unwrap();
    let fill = Instant::now();
    client
        .call::<m::SessionSend>(m::SendParams {
            session: id.clone(),
            text: format!("emit {n} 0"),
            env: Default::default(),
        })
        .await
        .unwrap();
    loop {
        let info = client
            .call::<m::SessionGet>(m::SessionRef {
                session: id.clone(),
            })
            .await
            .unwrap();
        if info.last_seq.0 as usize >= n && info.state == harvest_protocol::SessionState::Idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let filled = fill.elapsed();
    drop(client);
    let store = h.path("data/harvest/harvest.db");
    let wal = h.path("data/harvest/harvest.db-wal");
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let log_dir = h.path(&format!("state/harvest/sessions/{id}/logs"));
    let (log_len, log_disk) = std::fs::read_dir(&log_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| {
            use std::os::unix::fs::MetadataExt;
            let m = e.metadata().unwrap();
            (m.len(), m.blocks() * 512)
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    h.kill_daemon();
    let (mut hellos, mut lists) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (mut child, to_hello) = start_daemon_and_time_hello(&h);
        let t = Instant::now();
        let client = Client::connect(&paths(&h), "bench").await.unwrap();
        client.call::<m::SessionList>(m::Empty {}).await.unwrap();
        let list = t.elapsed();
        let t = Instant::now();
        client.call::<m::SessionList>(m::Empty {}).await.unwrap();
        let warm = t.elapsed();
        hellos.push(to_hello);
        lists.push(list.min(warm));
        drop(client);
        kill(&mut child);
    }
    println!(
        "one session of {n} events (ingested in {:.1} s; store {:.0} MB + WAL {:.0} MB; agent log {:.0} MB long, {:.1} MB on disk after compaction): restart → hello {:.1} ms, session/list {:.1} ms (targets: hello < 1 s, list < 20 ms)",
        filled.as_secs_f64(),
        size(&store) as f64 / 1e6,
        size(&wal) as f64 / 1e6,
        log_len as f64 / 1e6,
        log_disk as f64 / 1e6,
        ms(median(&mut hellos)),
        ms(median(&mut lists)),
    );
    let (mut child, _) = start_daemon_and_time_hello(&h);
    readers_beside_a_long_session(&h, &id).await;
    kill(&mut child);
}

/// With the long session stored: `session/subscribe` to it (the reply, and the reply
/// plus its newest event), and another session's event latency while a loop of
/// `session/list` and tail subscriptions to the long one runs beside it.
async fn readers_beside_a_long_session(h: &Harness, long: &str) {
    let client = Client::connect(&paths(h), "bench").await.unwrap();
    let info = client
        .call::<m::SessionGet>(m::SessionRef {
            session: long.to_owned(),
        })
        .await
        .unwrap();
    let mut subs = Vec::new();
    for _ in 0..7 {
        let c = Client::connect(&paths(h), "bench").await.unwrap();
        let t = Instant::now();
        c.call::<m::SessionSubscribe>(m::SubscribeParams {
            session: long.to_owned(),
            from_seq: info.last_seq,
            include_raw: false,
        })
        .await
        .unwrap();
        let mut c = c;
        c.next_notification().await.unwrap();
        subs.push(t.elapsed());
    }
    // Another session, streaming, while readers hammer the long one.
    let small = h.new_session("emit 0 0");
    h.wait_events(&small, "the empty turn", Duration::from_secs(60), |e| {
        e.iter().any(|e| e["type"] == "turn_result")
    });
    let mut watcher = Client::connect(&paths(h), "bench").await.unwrap();
    let small_info = watcher
        .call::<m::SessionGet>(m::SessionRef {
            session: small.clone(),
        })
        .await
        .unwrap();
    watcher
        .call::<m::SessionSubscribe>(m::SubscribeParams {
            session: small.clone(),
            from_seq: small_info.last_seq.next(),
            include_raw: true,
        })
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (socket, long_id, stop2) = (paths(h), long.to_owned(), stop.clone());
    let readers = tokio::spawn(async move {
        let mut calls = 0u64;
        let c = Client::connect(&socket, "bench-ls").await.unwrap();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            c.call::<m::SessionList>(m::Empty {}).await.unwrap();
            c.call::<m::SessionGet>(m::SessionRef {
                session: long_id.clone(),
            })
            .await
            .unwrap();
            calls += 2;
        }
        calls
    });
    let n = 2000;
    watcher
        .call::<m::SessionSend>(m::SendParams {
            session: small.clone(),
            text: format!("emit {n} 0.002"),
            env: Default::default(),
        })
        .await
        .unwrap();
    let mut lat = Vec::with_capacity(n);
    while let Some(note) = watcher.next_notification().await {
        let now = now_ns();
        let Some(ev) = note.params.get("event") else {
            continue;
        };
        let ev: harvest_protocol::Event = serde_json::from_value(ev.clone()).unwrap();
        match ev.body {
            harvest_protocol::EventBody::AgentRaw {} => {
                let t = ev.raw.as_ref().and_then(|r| r["t"].as_u64()).unwrap();
                lat.push(Duration::from_nanos(now.saturating_sub(t)));
            }
            harvest_protocol::EventBody::TurnResult { .. } => break,
            _ => {}
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let calls = readers.await.unwrap();
    lat.sort();
    println!(
        "  session/subscribe to it, reply + newest event: {:.1} ms (target < 20 ms); another session's event latency while {calls} list/get calls ran beside it: median {:.2} ms, p99 {:.2} ms (target p99 < 5 ms)",
        ms(median(&mut subs)),
        ms(lat[lat.len() / 2]),
        ms(lat[lat.len() * 99 / 100]),
    );
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
