//! Terminal-client speed on a 100 000-event session (`cargo bench -p harvest-tui --bench
//! render`): attach (decode every event, fold it in, first full frame), a frame while
//! following a growing session, a frame while scrolling back through it, keystroke to
//! screen while 1 000 events a second arrive, and the memory the session takes. Frames are
//! drawn to ratatui's TestBackend at 200×50: layout, line building, wrapping and the
//! buffer diff are measured; writing the bytes to a real terminal is not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use harvest_protocol::event::{PatchHunk, ToolOutput};
use harvest_protocol::methods::SessionInfo;
use harvest_protocol::{Event, EventBody, Seq, SessionId, SessionState};
use harvest_tui::app::{App, FromDaemon};
use harvest_tui::keymap::Keymap;
use harvest_tui::theme::{ColorLevel, Theme};
use harvest_tui::view::screen;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;
use std::time::{Duration, Instant};

const EVENTS: usize = 100_000;

fn main() {
    // HARVEST_RENDER_ONLY=typing: only the keystroke comparison (for profiling it).
    if std::env::var("HARVEST_RENDER_ONLY").is_ok_and(|v| v == "typing") {
        for n in [10, 2_000, 20_000, 200_000] {
            report(&format!("keystroke, {n}-line output"), typing(n), "");
        }
        return;
    }
    let lines: Vec<String> = (1..=EVENTS as u64)
        .map(|s| serde_json::to_string(&event(s)).unwrap())
        .collect();
    let rss_before = rss_kib();

    // What attaching waits for: the last 2 000 events (the client subscribes to the tail
    // first) decoded, folded in and drawn. The older history is fetched and folded behind
    // it, off the UI loop, and spliced in front; both are timed.
    let tail = 2_000;
    let mut attach = Vec::new();
    let mut history = Vec::new();
    let mut splice = Vec::new();
    let mut app = None;
    for _ in 0..5 {
        let start = Instant::now();
        let mut a = new_app();
        a.on_daemon(FromDaemon::HistoryPending);
        for l in &lines[EVENTS - tail..] {
            let ev: Event = serde_json::from_str(l).unwrap();
            a.on_daemon(FromDaemon::Event(Box::new(ev)));
        }
        let mut term = Terminal::new(TestBackend::new(200, 50)).unwrap();
        frame(&mut a, &mut term);
        attach.push(start.elapsed());

        let start = Instant::now();
        let mut older = harvest_tui::transcript::Transcript::default();
        for l in &lines[..EVENTS - tail] {
            older.apply(serde_json::from_str(l).unwrap());
        }
        history.push(start.elapsed());
        let start = Instant::now();
        a.on_daemon(FromDaemon::History(Box::new(older)));
        frame(&mut a, &mut term);
        splice.push(start.elapsed());
        assert_eq!(a.transcript.last_seq, Seq(EVENTS as u64));
        app = Some((a, term));
    }
    let (mut app, mut term) = app.unwrap();
    let rss_after = rss_kib();

    let mut seq = EVENTS as u64;
    let follow: Vec<Duration> = (0..300)
        .map(|_| {
            seq += 1;
            app.on_daemon(FromDaemon::Event(Box::new(event(seq))));
            let t = Instant::now();
            frame(&mut app, &mut term);
            t.elapsed()
        })
        .collect();

    // Scrolling back: every frame shows lines never built before.
    app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    let scroll: Vec<Duration> = (0..300)
        .map(|_| {
            app.on_key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::NONE));
            let t = Instant::now();
            frame(&mut app, &mut term);
            t.elapsed()
        })
        .collect();
    app.on_key(KeyEvent::new(KeyCode::Char('G'), KeyModifiers::NONE));
    app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));

    // 1 000 events a second at 60 frames a second: ~17 events land before each key.
    let keys: Vec<Duration> = (0..300)
        .map(|i| {
            let t = Instant::now();
            for _ in 0..17 {
                seq += 1;
                app.on_daemon(FromDaemon::Event(Box::new(event(seq))));
            }
            let c = if i % 2 == 0 { 'a' } else { 'b' };
            app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
            frame(&mut app, &mut term);
            t.elapsed()
        })
        .collect();

    // Typing beside a Bash call that printed 200 000 coloured lines, against a tiny
    // session: the keystroke-to-screen ratio is the tool pane's cost.
    let big = typing(200_000);
    let tiny = typing(10);
    let ratio = median(&big).as_secs_f64() / median(&tiny).as_secs_f64().max(1e-9);

    println!("harvest-tui render benchmarks ({EVENTS}-event session, 200×50)");
    report(
        "keystroke to screen, a 200 000-line Bash output in the tool pane",
        big.clone(),
        "within 1.5× of a tiny session",
    );
    report("keystroke to screen, a 10-line Bash output", tiny, "");
    println!("  ratio of the medians: {ratio:.2} (target ≤ 1.5)");
    report(
        "attach: first full frame (tail of 2 000 events decoded, folded, drawn)",
        attach,
        "< 150 ms",
    );
    report(
        "  then, off the UI loop: the older 98 000 events decoded and folded",
        history,
        "background",
    );
    report(
        "  then splicing them in front and drawing",
        splice,
        "one frame's pause",
    );
    report(
        "frame while following the tail (one new event each)",
        follow,
        "< 8 ms",
    );
    report(
        "frame while scrolling back (PgUp each, uncached lines)",
        scroll,
        "< 8 ms",
    );
    report(
        "keystroke to screen with 17 events arriving per frame",
        keys,
        "< 16 ms",
    );
    println!(
        "memory of the loaded session: {:.0} MiB resident growth ({:.0} MiB total; target < 300 MB)",
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
}

/// Keystrokes (type a character, draw) with one Bash call of `lines` coloured lines in
/// the tool pane; the first frames, which build the pane once, are left out.
fn typing(lines: usize) -> Vec<Duration> {
    let mut app = new_app();
    let output: String = (0..lines)
        .map(|i| format!("\x1b[32mok\x1b[0m line {i} of the build output\n"))
        .collect();
    for (seq, v) in [
        serde_json::json!({"seq":1,"ts":"2026-11-23T10:00:00Z","session":"bench","type":"tool_call",
            "id":"big","name":"Bash","input":{"command":"make"}}),
        serde_json::json!({"seq":2,"ts":"2026-11-23T10:00:01Z","session":"bench","type":"tool_result",
            "tool_use_id":"big","is_error":false,"content":"",
            "output":{"kind":"bash","stdout":output,"stderr":"","interrupted":false}}),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = seq;
        app.on_daemon(FromDaemon::Event(Box::new(serde_json::from_value(v).unwrap())));
    }
    let mut term = Terminal::new(TestBackend::new(200, 50)).unwrap();
    frame(&mut app, &mut term);
    (0..300)
        .map(|i| {
            let t = Instant::now();
            let c = if i % 2 == 0 { 'a' } else { 'b' };
            app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
            frame(&mut app, &mut term);
            t.elapsed()
        })
        .collect()
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn new_app() -> App {
    let mut app = App::new(Theme::new(ColorLevel::TrueColor), Keymap::default());
    app.on_daemon(FromDaemon::Attached(SessionInfo {
        id: SessionId::from("bench"),
        name: "bench".into(),
        state: SessionState::Running,
        sandbox: "local".into(),
        workspace: "/w".into(),
        created_at: 0,
        updated_at: 0,
        cost_usd: 0.0,
        input_tokens: 0,
        output_tokens: 0,
        last_seq: Seq(0),
        agent_session_id: None,
        last_line: None,
        first_prompt: None,
        stalled: None,
        previews: Vec::new(),
        sandbox_name: None,
        sandbox_state: None,
        branch: None,
        pr_url: None,
        secrets_inside: Vec::new(),
    }));
    app
}

fn frame(app: &mut App, term: &mut Terminal<TestBackend>) {
    let area = term.get_frame().area();
    screen::prepare(app, area);
    term.draw(|f| screen::draw(f, app)).unwrap();
}

/// A realistic mix: prompts, streamed markdown with code, Bash calls with output, edits.
fn event(seq: u64) -> Event {
    let n = seq / 10;
    let body = match seq % 10 {
        0 => EventBody::UserMessage {
            text: format!("Please fix issue {n} in the parser"),
        },
        1 => EventBody::AssistantDelta {
            text: "Looking at ".into(),
        },
        2 => EventBody::AssistantText {
            text: format!(
                "Looking at **issue {n}**: the `parse` function\n\n```rust\nfn parse(x: &str) -> u32 {{\n    x.len() as u32 + {n}\n}}\n```\n\n- first point\n- second point"
            ),
        },
        3 => EventBody::ToolCall {
            id: format!("b{n}"),
            name: "Bash".into(),
            input: json!({"command": "cargo test 2>&1", "description": "Run tests"}),
        },
        4 => EventBody::ToolResult {
            tool_use_id: format!("b{n}"),
            is_error: false,
            content: "ok".into(),
            output: Some(ToolOutput::Bash {
                stdout: (0..20)
                    .map(|i| format!("\x1b[32mtest case_{i} ... ok\x1b[0m\n"))
                    .collect(),
                stderr: String::new(),
                interrupted: false,
                exit_code: Some(0),
                persisted_output_path: None,
            }),
        },
        5 => EventBody::ToolCall {
            id: format!("e{n}"),
            name: "Edit".into(),
            input: json!({"file_path": "/w/src/parse.rs"}),
        },
        6 => EventBody::ToolResult {
            tool_use_id: format!("e{n}"),
            is_error: false,
            content: "ok".into(),
            output: Some(ToolOutput::Patch {
                file_path: "/w/src/parse.rs".into(),
                operation: "edit".into(),
                hunks: vec![PatchHunk {
                    old_start: 1,
                    old_lines: 3,
                    new_start: 1,
                    new_lines: 3,
                    lines: vec![
                        " fn parse(x: &str) -> u32 {".into(),
                        format!("-    x.len() as u32 + {n}"),
                        format!("+    x.len() as u32 + {}", n + 1),
                        " }".into(),
                    ],
                }],
                content: None,
            }),
        },
        7 => EventBody::Thinking {
            text: "The off-by-one is in the length.".into(),
        },
        8 => EventBody::TurnResult {
            is_error: false,
            subtype: "success".into(),
            terminal_reason: None,
            interrupted: false,
            result: None,
            cost_usd: 0.001,
            input_tokens: 100,
            output_tokens: 20,
            duration_ms: 900,
            num_turns: 3,
        },
        _ => EventBody::Status {
            state: SessionState::Running,
            reason: None,
        },
    };
    Event {
        seq: Seq(seq),
        ts: "2026-11-23T10:00:00Z".into(),
        session: SessionId::from("bench"),
        body,
        raw: None,
    }
}

fn report(what: &str, mut v: Vec<Duration>, target: &str) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = v[(v.len() * 99 / 100).min(v.len() - 1)];
    println!(
        "{what}: median {:.2} ms, p99 {:.2} ms (n={}; target {target})",
        ms(v[v.len() / 2]),
        ms(p99),
        v.len()
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
