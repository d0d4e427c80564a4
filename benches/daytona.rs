//! The daytona provider through the FAKE Daytona (crates/harvest-fake-daytona), the real
//! daemon, claude CLI and scripted model:
//!
//! 1. Sandbox create → the agent's first event (`harvest new` → `agent_init` in the store),
//!    with the fake's lifecycle transitions at 0 ms (the provider's own time, plus the
//!    fake's real work: a bubblewrap jail, the upload, the CLI's start) and at 300 ms (the
//!    fake's default, closer to the service): the difference is the simulated waiting.
//! 2. The API calls one whole scripted session makes (`harvest run`, a Read, an Edit and a
//!    Bash call), by route, and how many of them fall while the logs stream is open
//!    (none should be polling).
//! 3. 50 concurrent sessions from one daemon: its peak resident memory and its CPU time.
//!
//! `bash tests/setup.sh && cargo build --release -p harvest -p harvest-fake-daytona && HARVEST_BIN=$PWD/target/release/harvest HARVEST_CLAUDE=$PWD/.tools/bin/claude cargo bench --bench daytona`
//! (`HARVEST_BENCH_CONCURRENT=N` changes the 50; `HARVEST_BENCH_ONLY=first|calls|many` runs one part.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::daytona::FakeDaytona;
use harvest_e2e::{Harness, of_type};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SCRIPT: &str = r#"
[[turn]]
[[turn.step]]
text = "Reading the greeting first."
tool_use = { name = "Read", input = { file_path = "{cwd}/greeting.txt" } }
[[turn.step]]
tool_use = { name = "Edit", input = { file_path = "{cwd}/greeting.txt", old_string = "helo", new_string = "hello" } }
[[turn.step]]
tool_use = { name = "Bash", input = { command = "cat greeting.txt", description = "Show the file" } }
[[turn.step]]
text = "Fixed the greeting."
"#;

fn main() {
    let only = std::env::var("HARVEST_BENCH_ONLY").ok();
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    println!("daytona provider benchmarks, through the FAKE Daytona on this machine");
    if part("first") {
        for transition in ["0", "300"] {
            first_event(transition);
        }
    }
    if part("calls") {
        api_calls();
    }
    if part("many") {
        let n = std::env::var("HARVEST_BENCH_CONCURRENT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        many(n);
    }
}

fn harness(fake: &FakeDaytona) -> Harness {
    let h = fake.harness(|_| SCRIPT.to_owned());
    reset(&h);
    h.ok(&["daemon"]);
    h
}

fn reset(h: &Harness) {
    std::fs::write(h.workspace.join("greeting.txt"), "helo world\n").unwrap();
}

/// Medians of 7 of `harvest new --detach` → `agent_init` in the store (polled every 5 ms).
fn first_event(transition_ms: &str) {
    let fake = FakeDaytona::start(&["--transition-ms", transition_ms]);
    let h = harness(&fake);
    let ws = h.workspace.to_str().unwrap().to_owned();
    let mut runs = Vec::new();
    for _ in 0..7 {
        reset(&h);
        let start = Instant::now();
        let id = h.ok(&["new", "--detach", "--workspace", &ws, "fix the greeting"]);
        let id = id.trim().to_owned();
        let took = loop {
            if !of_type(&h.events(&id), "agent_init").is_empty() {
                break start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(90), "no agent_init");
            std::thread::sleep(Duration::from_millis(5));
        };
        h.wait_events(&id, "the turn", Duration::from_secs(90), |e| {
            !of_type(e, "turn_result").is_empty()
        });
        h.ok(&["rm", &id]);
        runs.push(took);
    }
    runs.sort();
    println!(
        "  create → the agent's first event, fake transitions {transition_ms:>3} ms: median {:.0} ms (runs {:?} ms)",
        ms(runs[3]),
        runs.iter()
            .map(|d| ms(*d).round() as u64)
            .collect::<Vec<_>>()
    );
}

/// Every request of one `harvest run`, by route; those made while the logs stream was open.
fn api_calls() {
    let fake = FakeDaytona::start(&[]);
    let h = harness(&fake);
    let ws = h.workspace.to_str().unwrap().to_owned();
    let before = fake.requests().len();
    let out = h.ok(&["run", "--json", "--workspace", &ws, "fix the greeting"]);
    // The turn's end, as the daemon stamped it: after it, the run stops the agent (a
    // status read and a delete), which is not polling.
    let ended = harvest_e2e::parse_lines(&out)
        .iter()
        .find(|e| e["type"] == "turn_result")
        .and_then(|e| e["ts"].as_str().and_then(epoch_ms))
        .unwrap_or_else(now_ms);
    let requests: Vec<Value> = fake.requests().into_iter().skip(before).collect();
    let mut by_route: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests {
        *by_route.entry(route(r)).or_default() += 1;
    }
    println!(
        "  API calls of one scripted session (harvest run: Read, Edit, Bash): {} in all",
        requests.len()
    );
    for (route, n) in &by_route {
        println!("    {n:>3}  {route}");
    }
    let opened = requests
        .iter()
        .find(|r| route(r).ends_with("/logs (WebSocket)"))
        .and_then(|r| r["at_ms"].as_u64());
    if let Some(opened) = opened {
        let during: Vec<String> = requests
            .iter()
            .filter(|r| {
                let at = r["at_ms"].as_u64().unwrap_or(0);
                at > opened && at <= ended && r["method"] == "GET"
            })
            .map(route)
            .collect();
        println!(
            "    GET requests from the logs stream's opening to the turn's result (polling): {} {:?}",
            during.len(),
            during
        );
    }
}

/// `n` sessions at once from one daemon: its resident memory (peak, sampled every 100 ms)
/// and the CPU time it used, from the first `new` to the last turn's end.
fn many(n: usize) {
    let fake = FakeDaytona::start(&[]);
    let h = harness(&fake);
    let pid = h.daemon_pid();
    let cpu_before = cpu_secs(pid);
    let rss_idle = harvest_e2e::proc_status_kib(pid, "VmRSS:");
    let start = Instant::now();
    let ws = h.workspace.to_str().unwrap().to_owned();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (h, ws) = (&h, &ws);
                s.spawn(move || {
                    h.ok(&[
                        "new",
                        "--detach",
                        "--workspace",
                        ws,
                        &format!("session {i}"),
                    ])
                    .trim()
                    .to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut peak = 0u64;
    let mut pending: Vec<&String> = ids.iter().collect();
    while !pending.is_empty() {
        peak = peak.max(harvest_e2e::proc_status_kib(pid, "VmRSS:"));
        pending.retain(|id| of_type(&h.events(id), "turn_result").is_empty());
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "{} sessions unfinished",
            pending.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = start.elapsed();
    let cpu = cpu_secs(pid) - cpu_before;
    let hwm = harvest_e2e::proc_status_kib(pid, "VmHWM:");
    println!(
        "  {n} concurrent sessions, one daemon: all done in {:.1} s; daemon resident {:.1} MiB idle, \
         peak {:.1} MiB (high-water mark {:.1} MiB), {:.0} KiB per session; CPU {:.2} s ({:.0} ms per session, {:.1}% of one core)",
        took.as_secs_f64(),
        rss_idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        hwm as f64 / 1024.0,
        (hwm.saturating_sub(rss_idle)) as f64 / n as f64,
        cpu,
        cpu * 1000.0 / n as f64,
        cpu / took.as_secs_f64() * 100.0
    );
    for id in &ids {
        h.ok(&["rm", id]);
    }
}

/// `METHOD /path` with ids replaced by their kind, the logs WebSocket named as such.
fn route(r: &Value) -> String {
    let uri = r["uri"].as_str().unwrap_or("");
    let path = uri.split('?').next().unwrap_or("");
    let mut out = Vec::new();
    let mut after = "";
    for seg in path.split('/') {
        let shown = match after {
            "sandbox" | "toolbox" if !seg.is_empty() && !["paginated"].contains(&seg) => "{id}",
            "session" if !seg.is_empty() => "{session}",
            "command" if !seg.is_empty() => "{command}",
            "port" | "preview-url" if !seg.is_empty() => "{port}",
            _ => seg,
        };
        out.push(shown.to_owned());
        after = seg;
    }
    let upgrade = r["headers"]["upgrade"]
        .as_str()
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    format!(
        "{} {}{}",
        r["method"].as_str().unwrap_or("?"),
        out.join("/"),
        if upgrade { " (WebSocket)" } else { "" }
    )
}

/// User plus system CPU time of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf(3) with a valid name has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// `2026-12-02T19:31:40.123Z` (RFC 3339 in UTC, as the daemon stamps events) → epoch ms.
fn epoch_ms(ts: &str) -> Option<u64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let millis: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + millis).ok()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
