//! Snapshot tests of the main screens on ratatui's TestBackend, fed with the events of a
//! real session (the offline demo, run through the real claude CLI and captured with
//! `harvest logs --json`). Text goes in the snapshots; colours are asserted beside them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use harvest_protocol::methods::SessionInfo;
use harvest_protocol::{Event, Seq, SessionId, SessionState};
use harvest_tui::app::{App, FromDaemon};
use harvest_tui::keymap::Keymap;
use harvest_tui::theme::{ColorLevel, Theme};
use harvest_tui::view::screen;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

const FIXTURE: &str = include_str!("fixtures/demo-session.jsonl");

fn info(id: &str, name: &str, state: SessionState) -> SessionInfo {
    SessionInfo {
        id: SessionId::from(id),
        name: name.into(),
        state,
        sandbox: "local".into(),
        workspace: "/tmp/ws".into(),
        created_at: time::OffsetDateTime::now_utc().unix_timestamp() - 120,
        updated_at: 0,
        cost_usd: 0.0032,
        input_tokens: 400,
        output_tokens: 80,
        last_seq: Seq(0),
        agent_session_id: None,
        last_line: Some("All tests pass now.".into()),
        first_prompt: None,
        stalled: None,
        previews: Vec::new(),
        sandbox_name: None,
        sandbox_state: None,
        branch: None,
        pr_url: None,
        secrets_inside: Vec::new(),
    }
}

fn app(level: ColorLevel) -> App {
    let mut app = App::new(Theme::new(level), Keymap::default());
    app.on_daemon(FromDaemon::Connected);
    app.on_daemon(FromDaemon::Attached(info(
        "6962a605",
        "demo: fix the failing test",
        SessionState::Idle,
    )));
    for line in FIXTURE.lines() {
        let ev: Event = serde_json::from_str(line).unwrap();
        app.on_daemon(FromDaemon::Event(Box::new(ev)));
    }
    app
}

/// Attached to an empty session (no fixture history).
fn bare_app() -> App {
    let mut app = App::new(Theme::new(ColorLevel::None), Keymap::default());
    app.on_daemon(FromDaemon::Connected);
    app.on_daemon(FromDaemon::Attached(info(
        "6962a605",
        "bare",
        SessionState::Idle,
    )));
    app
}

fn render(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let area = term.get_frame().area();
    screen::prepare(app, area);
    term.draw(|f| screen::draw(f, app)).unwrap();
    term
}

fn text(term: &Terminal<TestBackend>) -> String {
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut row = String::new();
        for x in 0..buf.area.width {
            row.push_str(buf[(x, y)].symbol());
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

/// The foreground colour of the first cell of `needle` on screen.
fn fg_of(term: &Terminal<TestBackend>, needle: &str) -> Option<Color> {
    let buf = term.backend().buffer();
    for y in 0..buf.area.height {
        let row: Vec<&str> = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
        let joined = row.concat();
        if let Some(byte) = joined.find(needle) {
            let col = joined[..byte].chars().count() as u16;
            return Some(buf[(col, y)].fg);
        }
    }
    None
}

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

/// Focus the conversation, move up to the Edit line and press Enter on it.
fn open_the_edit(app: &mut App) {
    key(app, KeyCode::Tab);
    for _ in 0..20 {
        key(app, KeyCode::Char('k'));
        let on_edit = app
            .conv
            .selected
            .and_then(|i| app.transcript.items().get(i))
            .is_some_and(
                |item| matches!(item, harvest_tui::transcript::Item::Tool(t) if t.name == "Edit"),
            );
        if on_edit {
            key(app, KeyCode::Enter);
            return;
        }
    }
    panic!("no Edit line to select");
}

#[test]
fn conversation_with_tool_lines_and_bash_output() {
    let mut app = app(ColorLevel::TrueColor);
    let term = render(&mut app, 110, 30);
    insta::assert_snapshot!("main_110x30", text(&term));
    let screen = text(&term);
    assert!(
        screen.contains("▸ Bash  python3 -m unittest -v 2>&1"),
        "{screen}"
    );
    assert!(
        screen.contains("Ran 2 tests"),
        "the Bash output is in the tool pane: {screen}"
    );
    assert!(
        matches!(fg_of(&term, "exit 0"), Some(Color::Rgb(..))),
        "outcomes are coloured"
    );
}

#[test]
fn an_edit_selected_from_the_conversation_shows_its_diff() {
    let mut app = app(ColorLevel::TrueColor);
    open_the_edit(&mut app);
    let term = render(&mut app, 110, 30);
    insta::assert_snapshot!("edit_diff_110x30", text(&term));
    let screen = text(&term);
    assert!(screen.contains("2   -    return a - b"), "{screen}");
    assert!(screen.contains("  2 +    return a + b"), "{screen}");
    let added = fg_of(&term, "+    return a + b");
    assert!(
        matches!(added, Some(Color::Rgb(_, g, _)) if g > 150),
        "added lines are green: {added:?}"
    );
}

#[test]
fn session_picker() {
    let mut app = app(ColorLevel::Ansi256);
    app.on_daemon(FromDaemon::Sessions(vec![
        info("6962a605", "demo: fix the failing test", SessionState::Idle),
        info("1b2c3d4e", "api: add pagination", SessionState::Running),
    ]));
    app.on_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Char('s'));
    let term = render(&mut app, 110, 30);
    insta::assert_snapshot!("picker_110x30", text(&term));
}

#[test]
fn help_overlay_lists_the_bindings_as_configured() {
    let cfg: harvest_config::KeysConfig =
        toml::from_str("prefix = \"ctrl-a\"\n[bind]\ndetach = [\"prefix q\"]\n").unwrap();
    let mut app = app(ColorLevel::Ansi16);
    app.keymap = Keymap::from_config(&cfg).unwrap();
    app.on_key(KeyEvent::new(KeyCode::Char('a'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Char('?'));
    let term = render(&mut app, 110, 30);
    insta::assert_snapshot!("help_110x30", text(&term));
    let screen = text(&term);
    assert!(
        screen.contains("C-a q") && screen.contains("detach"),
        "{screen}"
    );
    key(&mut app, KeyCode::Esc);
    let screen = text(&render(&mut app, 110, 30));
    assert!(
        screen.contains("C-a q detach"),
        "the footer hint follows the binding: {screen}"
    );
}

#[test]
fn a_narrow_terminal_stacks_the_panes() {
    let mut app = app(ColorLevel::Ansi256);
    let term = render(&mut app, 60, 30);
    insta::assert_snapshot!("narrow_60x30", text(&term));
}

#[test]
fn no_color_uses_no_colour_at_all() {
    let mut app = app(ColorLevel::None);
    open_the_edit(&mut app);
    let term = render(&mut app, 110, 30);
    insta::assert_snapshot!("no_color_110x30", text(&term));
    let buf = term.backend().buffer();
    for cell in buf.content() {
        assert!(
            matches!(cell.fg, Color::Reset) && matches!(cell.bg, Color::Reset),
            "a coloured cell under NO_COLOR: {cell:?}"
        );
    }
}

#[test]
fn history_spliced_behind_a_live_tail_equals_the_whole_session() {
    let events: Vec<Event> = FIXTURE
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Split inside the first turn: the tail starts with a tool result whose call is older.
    let cut = events
        .iter()
        .position(|e| matches!(e.body, harvest_protocol::EventBody::ToolResult { .. }))
        .unwrap();
    let whole = app(ColorLevel::None);

    let mut spliced = App::new(Theme::new(ColorLevel::None), Keymap::default());
    spliced.on_daemon(FromDaemon::Attached(info(
        "6962a605",
        "demo: fix the failing test",
        SessionState::Idle,
    )));
    spliced.on_daemon(FromDaemon::HistoryPending);
    for ev in &events[cut..] {
        spliced.on_daemon(FromDaemon::Event(Box::new(ev.clone())));
    }
    let mut older = harvest_tui::transcript::Transcript::default();
    for ev in &events[..cut] {
        older.apply(ev.clone());
    }
    spliced.on_daemon(FromDaemon::History(Box::new(older)));
    assert_eq!(spliced.transcript.items(), whole.transcript.items());
    assert_eq!(spliced.transcript.last_seq, whole.transcript.last_seq);
}

#[test]
fn output_the_cli_saved_to_a_file_is_asked_of_the_daemon_and_shown_in_full() {
    let full: String = (1..=40).map(|i| format!("full line {i}\n")).collect();
    let mut app = App::new(Theme::new(ColorLevel::None), Keymap::default());
    app.on_daemon(FromDaemon::Attached(info(
        "6962a605",
        "big output",
        SessionState::Idle,
    )));
    let call = serde_json::json!({"seq":1,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"tool_call",
        "id":"t1","name":"Bash","input":{"command":"make big"}});
    let result = serde_json::json!({"seq":2,"ts":"2026-11-23T10:00:01Z","session":"6962a605","type":"tool_result",
        "tool_use_id":"t1","is_error":false,"content":"<persisted-output>…","output":{"kind":"bash",
        "stdout":"full line 1\n(cut here)","stderr":"","interrupted":false,"exit_code":0,
        "persisted_output_path":"/home/agent/.claude/projects/p/s/tool-results/big.txt"}});
    for v in [call, result] {
        app.on_daemon(FromDaemon::Event(Box::new(
            serde_json::from_value(v).unwrap(),
        )));
    }
    // The screen asks the daemon (which reads inside the sandbox), once, and shows the
    // inlined part meanwhile; it never opens the file itself.
    let screen = text(&render(&mut app, 110, 60));
    assert!(screen.contains("(cut here)"), "{screen}");
    let asked: Vec<_> = app.pending_cmds.drain(..).collect();
    assert_eq!(
        asked,
        [harvest_tui::app::Cmd::ReadOutput {
            tool_id: "t1".into(),
            path: "/home/agent/.claude/projects/p/s/tool-results/big.txt".into()
        }]
    );
    let _ = render(&mut app, 110, 60);
    assert!(app.pending_cmds.is_empty(), "asked twice");
    app.on_daemon(FromDaemon::FullOutput {
        tool_id: "t1".into(),
        text: Ok(full),
    });
    let screen = text(&render(&mut app, 110, 60));
    assert!(screen.contains("full line 40"), "{screen}");
    assert!(!screen.contains("(cut here)"), "{screen}");
}

#[test]
fn the_picker_creates_a_session_from_its_form() {
    let mut app = app(ColorLevel::None);
    app.cwd = "/tmp/project".into();
    app.on_daemon(FromDaemon::Sessions(vec![info(
        "6962a605",
        "demo",
        SessionState::Idle,
    )]));
    app.on_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('n'));
    for c in "add a README".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let cmds = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(
        cmds,
        vec![harvest_tui::app::Cmd::Create {
            workspace: "/tmp/project".into(),
            prompt: "add a README".into(),
            trust: harvest_tui::app::McpTrust::Ask,
        }]
    );
    // x asks before removing; only y removes.
    app.on_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('x'));
    assert!(
        app.on_key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::NONE))
            .is_empty()
    );
    key(&mut app, KeyCode::Char('x'));
    let cmds = app.on_key(KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE));
    assert!(
        cmds.contains(&harvest_tui::app::Cmd::Remove("6962a605".into())),
        "{cmds:?}"
    );
}

#[test]
fn live_turn_ends_notify_and_replayed_ones_do_not() {
    // Attached when the session was at seq 33: the fixture's events are history.
    let mut attached = info("6962a605", "demo: fix the failing test", SessionState::Idle);
    attached.last_seq = Seq(33);
    let mut live = App::new(Theme::new(ColorLevel::None), Keymap::default());
    live.on_daemon(FromDaemon::Attached(attached));
    for line in FIXTURE.lines() {
        live.on_daemon(FromDaemon::Event(Box::new(
            serde_json::from_str(line).unwrap(),
        )));
    }
    assert!(
        live.notifications.is_empty(),
        "history must not ring: {:?}",
        live.notifications
    );
    let ev: Event = serde_json::from_value(serde_json::json!({"seq":34,"ts":"2026-11-23T10:00:00Z",
        "session":"6962a605","type":"turn_result","is_error":false,"subtype":"success","cost_usd":0.0,
        "input_tokens":1,"output_tokens":1,"duration_ms":5,"num_turns":1}))
    .unwrap();
    live.on_daemon(FromDaemon::Event(Box::new(ev)));
    assert_eq!(
        live.notifications,
        ["harvest · demo: fix the failing test: turn done"]
    );
}

#[test]
fn a_permission_request_takes_the_tool_pane_and_tab_then_y_allows_it() {
    let mut app = app(ColorLevel::Ansi256);
    let ev: Event =
        serde_json::from_value(serde_json::json!({"seq":40,"ts":"2026-11-23T10:00:00Z",
        "session":"6962a605","type":"permission_request","request_id":"req-1","tool":"Bash",
        "input":{"command":"rm -rf build"},"summary":"run: rm -rf build"}))
        .unwrap();
    app.on_daemon(FromDaemon::Event(Box::new(ev)));
    let term = render(&mut app, 110, 30);
    insta::assert_snapshot!("permission_110x30", text(&term));
    let screen = text(&term);
    assert!(
        screen.contains("Bash asks permission") && screen.contains("run: rm -rf build"),
        "{screen}"
    );
    // Typing goes to the input box, never to the prompt: "abc def" answers nothing.
    for c in "abc def".chars() {
        assert!(
            app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
                .is_empty(),
            "{c:?} answered the prompt while typing"
        );
    }
    assert_eq!(app.draft(), "abc def");
    for _ in 0.."abc def".len() {
        app.on_key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
    }
    // Tab gives the prompt the focus, which its pane shows.
    key(&mut app, KeyCode::Tab);
    let screen = text(&render(&mut app, 110, 30));
    assert!(
        screen.contains("answering") && screen.contains("2 a always"),
        "{screen}"
    );
    let cmds = app.on_key(KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE));
    assert_eq!(
        cmds,
        vec![harvest_tui::app::Cmd::Approve {
            request_id: "req-1".into(),
            decision: "allow".into(),
            input: None,
            message: None,
        }]
    );
    // One a on the focused prompt allows always.
    key(&mut app, KeyCode::Tab);
    let cmds = app.on_key(KeyEvent::new(KeyCode::Char('a'), KeyModifiers::NONE));
    assert_eq!(
        cmds,
        vec![harvest_tui::app::Cmd::Approve {
            request_id: "req-1".into(),
            decision: "always".into(),
            input: None,
            message: None,
        }]
    );
    // e puts the command in the input box; Enter allows the edited one.
    key(&mut app, KeyCode::Tab);
    assert!(
        app.on_key(KeyEvent::new(KeyCode::Char('e'), KeyModifiers::NONE))
            .is_empty()
    );
    assert_eq!(app.draft(), "rm -rf build");
    for _ in 0.."build".len() {
        app.on_key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
    }
    for c in "target".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let cmds = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(
        cmds,
        vec![harvest_tui::app::Cmd::Approve {
            request_id: "req-1".into(),
            decision: "allow".into(),
            input: Some(serde_json::json!({"command": "rm -rf target"})),
            message: None,
        }]
    );
    // n asks why (optional) and Enter denies with it; Esc would back out.
    key(&mut app, KeyCode::Tab);
    assert!(
        app.on_key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::NONE))
            .is_empty()
    );
    for c in "too risky".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let cmds = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(
        cmds,
        vec![harvest_tui::app::Cmd::Approve {
            request_id: "req-1".into(),
            decision: "deny".into(),
            input: None,
            message: Some("too risky".into()),
        }]
    );
}

#[test]
fn esc_cancels_and_never_detaches_while_ctrl_c_twice_does() {
    let mut app = app(ColorLevel::None);
    for _ in 0..3 {
        app.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    }
    assert!(app.exit.is_none(), "Esc pressed three times detached");
    app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.exit.is_some(), "Ctrl-C twice should detach");
}

#[test]
fn the_picker_scrolls_with_its_selection_and_keeps_its_hint() {
    let mut app = app(ColorLevel::None);
    app.sessions = (0..30)
        .map(|i| {
            info(
                &format!("{i:08x}"),
                &format!("session number {i}"),
                SessionState::Idle,
            )
        })
        .collect();
    app.on_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Char('s'));
    for _ in 0..25 {
        key(&mut app, KeyCode::Down);
    }
    let screen = text(&render(&mut app, 110, 24));
    assert!(
        screen.contains("session number 25"),
        "the selection scrolled off: {screen}"
    );
    assert!(
        screen.contains("Enter attach"),
        "the hint disappeared: {screen}"
    );
    assert!(screen.contains("more above"), "{screen}");
}

#[test]
fn the_help_overlay_wraps_and_scrolls_instead_of_cutting_off() {
    let mut app = app(ColorLevel::None);
    app.on_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Char('?'));
    // Wide: every description whole.
    let wide = text(&render(&mut app, 200, 50));
    assert!(
        wide.contains("cancel the running turn (C-c twice: detach)"),
        "{wide}"
    );
    assert!(wide.contains("Esc closes."), "{wide}");
    // Small: it says it scrolls, and scrolling reaches the last line.
    let small = text(&render(&mut app, 60, 16));
    assert!(small.contains("j/k scroll"), "{small}");
    for _ in 0..40 {
        key(&mut app, KeyCode::Char('j'));
    }
    let end = text(&render(&mut app, 60, 16));
    assert!(end.contains("closes."), "the end is unreachable: {end}");
}

#[test]
fn an_edited_command_shows_what_ran_and_that_it_was_edited() {
    let mut app = app(ColorLevel::None);
    for v in [
        serde_json::json!({"seq":40,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"tool_call",
            "id":"toolu_9","name":"Bash","input":{"command":"rm -rf build"}}),
        serde_json::json!({"seq":41,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"permission_request",
            "request_id":"req-9","tool":"Bash","input":{"command":"rm -rf build"},"summary":"run: rm -rf build",
            "tool_use_id":"toolu_9"}),
        serde_json::json!({"seq":42,"ts":"2026-11-23T10:00:01Z","session":"6962a605","type":"permission_resolved",
            "request_id":"req-9","decision":"allow","input":{"command":"rm -rf target"}}),
    ] {
        app.on_daemon(FromDaemon::Event(Box::new(
            serde_json::from_value(v).unwrap(),
        )));
    }
    let screen = text(&render(&mut app, 110, 30));
    assert!(screen.contains("edited by you before it ran"), "{screen}");
    assert!(screen.contains("$ rm -rf target"), "{screen}");
    assert!(
        screen.contains("permission allow (edited: runs `rm -rf target`)"),
        "{screen}"
    );
    assert!(
        !screen.contains("$ rm -rf build"),
        "the requested command is shown as run: {screen}"
    );
}

#[test]
fn tokens_move_while_a_turn_runs() {
    let mut app = app(ColorLevel::None);
    let before = text(&render(&mut app, 110, 30));
    for v in [
        serde_json::json!({"seq":40,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"status","state":"running"}),
        serde_json::json!({"seq":41,"ts":"2026-11-23T10:00:01Z","session":"6962a605","type":"turn_usage",
            "input_tokens":1000,"output_tokens":234}),
    ] {
        app.on_daemon(FromDaemon::Event(Box::new(
            serde_json::from_value(v).unwrap(),
        )));
    }
    let during = text(&render(&mut app, 110, 30));
    let tok = |s: &str| {
        s.lines()
            .next()
            .and_then(|l| {
                l.split(" · ")
                    .find(|p| p.ends_with(" tok"))
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    assert_ne!(
        tok(&before),
        tok(&during),
        "tokens did not move: {} / {}",
        tok(&before),
        tok(&during)
    );
}

#[test]
fn search_and_jumps_move_the_selection_and_scrolling_carries_it_along() {
    use harvest_tui::transcript::Item;
    let mut app = app(ColorLevel::None);
    let _ = render(&mut app, 110, 30);
    key(&mut app, KeyCode::Tab); // the conversation
    key(&mut app, KeyCode::Char('g'));
    key(&mut app, KeyCode::Char(']'));
    let sel = app.conv.selected.unwrap();
    assert!(
        matches!(app.transcript.items()[sel], Item::Tool(_)),
        "] goes to the next tool call"
    );
    key(&mut app, KeyCode::Char('/'));
    for c in "SUBTRACTS".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    let sel = app.conv.selected.unwrap();
    let text = match &app.transcript.items()[sel] {
        Item::Thinking(t) | Item::User(t) => t.clone(),
        Item::Assistant { text, .. } => text.clone(),
        other => format!("{other:?}"),
    };
    assert!(
        text.to_lowercase().contains("subtracts"),
        "search found {text:?}"
    );
    // Scrolled away, the next j starts from what is on screen.
    key(&mut app, KeyCode::Char('g'));
    let _ = render(&mut app, 110, 12);
    for _ in 0..3 {
        key(&mut app, KeyCode::PageDown);
        let _ = render(&mut app, 110, 12);
    }
    key(&mut app, KeyCode::Char('j'));
    assert!(
        app.conv.selected.unwrap() >= app.conv.top.item,
        "the selection jumped back above the view: {:?} vs top {:?}",
        app.conv.selected,
        app.conv.top
    );
}

#[test]
fn a_stalled_session_says_so_in_the_status_line() {
    let mut app = app(ColorLevel::None);
    let mut stalled = info(
        "6962a605",
        "demo: fix the failing test",
        SessionState::Running,
    );
    stalled.stalled = Some("stalled since 10:00:00 UTC: cannot store events (disk full)".into());
    app.on_daemon(FromDaemon::Info(stalled));
    let screen = text(&render(&mut app, 200, 30));
    assert!(
        screen
            .lines()
            .next()
            .unwrap()
            .contains("⚠ stalled since 10:00:00 UTC"),
        "{screen}"
    );
}

#[test]
fn the_picker_filters_as_the_user_types_and_enter_attaches_to_what_is_shown() {
    let mut app = app(ColorLevel::None);
    app.sessions = (0..30)
        .map(|i| {
            let name = if i == 17 {
                "fix the flaky parser test".to_owned()
            } else {
                format!("session number {i}")
            };
            info(&format!("{i:08x}"), &name, SessionState::Idle)
        })
        .collect();
    app.on_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('/'));
    for c in "FLAKY".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let screen = text(&render(&mut app, 110, 24));
    assert!(screen.contains("fix the flaky parser t"), "{screen}");
    assert!(!screen.contains("session number 3"), "{screen}");
    assert!(screen.contains("1 of 30"), "{screen}");
    // Typed letters went to the filter, not to the picker's keys (n is "new").
    assert!(!screen.contains("New session"), "{screen}");
    let cmds = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(cmds, vec![harvest_tui::app::Cmd::Attach("00000011".into())]);
}

#[test]
fn a_queued_follow_up_shows_above_the_input_and_up_takes_it_back() {
    let mut app = app(ColorLevel::None);
    for v in [
        serde_json::json!({"seq":40,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"status","state":"running"}),
        serde_json::json!({"seq":41,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"message_queued",
            "id":"m1","text":"then run the linter"}),
    ] {
        app.on_daemon(FromDaemon::Event(Box::new(
            serde_json::from_value(v).unwrap(),
        )));
    }
    let screen = text(&render(&mut app, 100, 30));
    assert!(screen.contains("queued › then run the linter"), "{screen}");
    assert!(screen.contains("C-s sends now"), "{screen}");
    // C-s sends what is queued into the running turn.
    let cmds = app.on_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL));
    assert_eq!(cmds, vec![harvest_tui::app::Cmd::SendNow]);
    let cmds = app.on_key(KeyEvent::new(KeyCode::Up, KeyModifiers::NONE));
    assert_eq!(
        cmds,
        vec![harvest_tui::app::Cmd::Withdraw(Some("m1".into()))]
    );
    app.on_daemon(FromDaemon::Event(Box::new(
        serde_json::from_value(
            serde_json::json!({"seq":42,"ts":"2026-11-23T10:00:01Z","session":"6962a605",
            "type":"message_dequeued","id":"m1","withdrawn":true}),
        )
        .unwrap(),
    )));
    app.on_daemon(FromDaemon::Withdrawn(vec!["then run the linter".into()]));
    assert_eq!(app.draft(), "then run the linter");
    let screen = text(&render(&mut app, 100, 30));
    assert!(!screen.contains("queued ›"), "{screen}");
}

#[test]
fn a_refused_message_comes_back_to_the_input_with_the_whole_reason_on_screen() {
    let mut app = app(ColorLevel::None);
    let reason = "no credentials for the agent: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN, CLAUDE_CODE_OAUTH_TOKEN) in the environment of the client that sends, then send again";
    app.on_daemon(FromDaemon::SendFailed {
        text: "please fix the build".into(),
        error: reason.into(),
    });
    assert_eq!(app.draft(), "please fix the build");
    let screen = text(&render(&mut app, 80, 30));
    // Wrapped in the conversation, not cut off at the edge of a one-line toast.
    let joined: String = screen
        .lines()
        .map(|l| l.trim_matches(|c: char| c == '│' || c.is_whitespace()))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(joined.contains("then send again"), "{screen}");
}

#[test]
fn a_text_only_answer_takes_the_whole_width() {
    let mut app = bare_app();
    let long = "word ".repeat(40);
    for v in [
        serde_json::json!({"seq":1,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"user_message","text":"explain"}),
        serde_json::json!({"seq":2,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"assistant_text","text": long}),
    ] {
        app.on_daemon(FromDaemon::Event(Box::new(
            serde_json::from_value(v).unwrap(),
        )));
    }
    let screen = text(&render(&mut app, 120, 30));
    assert!(
        !screen.contains("Tools"),
        "an empty tool pane is shown: {screen}"
    );
    let widest = screen
        .lines()
        .filter(|l| l.contains("word"))
        .map(|l| l.trim_end().chars().count())
        .max()
        .unwrap_or(0);
    assert!(
        widest > 100,
        "the answer is squeezed ({widest} columns): {screen}"
    );
}

#[test]
fn stderr_is_told_apart_from_stdout_in_the_tool_pane() {
    let mut app = bare_app();
    for v in [
        serde_json::json!({"seq":1,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"tool_call",
            "id":"t1","name":"Bash","input":{"command":"make"}}),
        serde_json::json!({"seq":2,"ts":"2026-11-23T10:00:01Z","session":"6962a605","type":"tool_result",
            "tool_use_id":"t1","is_error":true,"content":"built\nwarning: unused",
            "output":{"kind":"bash","stdout":"built","stderr":"warning: unused","interrupted":false}}),
    ] {
        app.on_daemon(FromDaemon::Event(Box::new(
            serde_json::from_value(v).unwrap(),
        )));
    }
    let screen = text(&render(&mut app, 120, 30));
    let at = |needle: &str| screen.lines().position(|l| l.contains(needle));
    let (out, rule, err) = (at("built"), at("── stderr"), at("warning: unused"));
    assert!(out.is_some() && rule.is_some() && err.is_some(), "{screen}");
    assert!(out < rule && rule < err, "{screen}");
}

#[test]
fn a_refused_new_session_keeps_its_form_filled_with_the_whole_reason() {
    let mut app = bare_app();
    app.on_daemon(FromDaemon::CreateFailed {
        workspace: "/home/me/app".into(),
        prompt: "add a health endpoint".into(),
        error: "no credentials for the agent: set ANTHROPIC_API_KEY in the environment of the client, then try again".into(),
    });
    let screen = text(&render(&mut app, 100, 30));
    assert!(screen.contains("add a health endpoint"), "{screen}");
    assert!(screen.contains("/home/me/app"), "{screen}");
    assert!(screen.contains("then try again"), "{screen}");
}

/// Secrets the user let into the sandbox for their MCP servers are named in the status
/// line, by name only.
#[test]
fn the_status_line_names_the_secrets_inside_the_sandbox() {
    let mut app = App::new(Theme::new(ColorLevel::None), Keymap::default());
    app.on_daemon(FromDaemon::Connected);
    let mut with = info("6962a605", "db work", SessionState::Idle);
    with.secrets_inside = vec!["db: DB_TOKEN".into()];
    app.on_daemon(FromDaemon::Attached(with));
    let screen = text(&render(&mut app, 120, 20));
    let top = screen.lines().next().unwrap_or_default();
    assert!(top.contains("⚿ db: DB_TOKEN"), "{top}");
}

/// Focus reads without colour: under NO_COLOR the focused pane's border is heavier, so
/// the input, the conversation and the tool pane focused draw three different screens.
#[test]
fn focus_shows_without_colour() {
    let mut app = app(ColorLevel::None);
    let input = text(&render(&mut app, 100, 30));
    key(&mut app, KeyCode::Tab);
    let conversation = text(&render(&mut app, 100, 30));
    key(&mut app, KeyCode::Tab);
    let tool = text(&render(&mut app, 100, 30));
    assert_ne!(input, conversation);
    assert_ne!(conversation, tool);
    assert_ne!(input, tool);
    let heavy = |s: &str, title: &str| s.lines().any(|l| l.contains('┏') && l.contains(title));
    assert!(heavy(&input, "›"), "{input}");
    assert!(heavy(&conversation, "Conversation"), "{conversation}");
}

/// A session picked from the picker takes keys in its input, whatever pane had focus in
/// the session before: typed text is a message, not a search.
#[test]
fn a_picked_session_has_the_keys_in_its_input() {
    let mut app = app(ColorLevel::None);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, harvest_tui::app::Focus::Conversation);
    app.on_daemon(FromDaemon::Attached(info(
        "1b2c3d4e",
        "api: add pagination",
        SessionState::Idle,
    )));
    assert_eq!(app.focus, harvest_tui::app::Focus::Input);
    for c in "/lint".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let cmds = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(cmds, vec![harvest_tui::app::Cmd::Send("/lint".into())]);
}

/// The prefix closes an overlay and acts: `prefix d` in the help detaches, and Esc closes
/// the help; nothing typed after is sent.
#[test]
fn the_prefix_reaches_through_an_overlay() {
    let mut app = app(ColorLevel::None);
    app.on_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Char('?'));
    assert!(text(&render(&mut app, 100, 30)).contains("detach"));
    app.on_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Char('d'));
    assert_eq!(app.exit, Some(harvest_tui::app::Exit::Detach));

    let mut app = app_for_help();
    key(&mut app, KeyCode::Esc);
    for c in "ls -la".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    assert!(
        text(&render(&mut app, 100, 30)).contains("ls -la"),
        "typed text goes to the input once the help is closed"
    );
}

fn app_for_help() -> App {
    let mut app = app(ColorLevel::None);
    app.on_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
    key(&mut app, KeyCode::Char('?'));
    app
}

/// A paste keeps its line breaks whichever the terminal sent; a long one shows collapsed
/// and is sent whole; the box stays inside its frame.
#[test]
fn a_paste_keeps_its_lines_and_a_long_one_shows_collapsed() {
    let mut app = bare_app();
    app.on_paste("first\r\nsecond");
    assert_eq!(app.draft(), "first\nsecond");
    let screen = text(&render(&mut app, 80, 24));
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("┃ second") || l.starts_with("┃second")),
        "{screen}"
    );
    app.set_draft("");
    app.on_paste("one\rtwo\rthree\r");
    assert_eq!(app.draft(), "[pasted 3 lines #1]");
    let screen = text(&render(&mut app, 80, 24));
    for line in screen.lines() {
        assert!(!line.contains('\r'), "a CR reached the screen: {line:?}");
    }
    assert!(screen.contains("[pasted 3 lines #1]"), "{screen}");
    let cmds = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(
        cmds,
        vec![harvest_tui::app::Cmd::Send("one\ntwo\nthree\n".into())]
    );
}

fn permission_event(seq: u64, id: &str, tool: &str, input: serde_json::Value) -> Event {
    serde_json::from_value(serde_json::json!({"seq":seq,"ts":"2026-11-23T10:00:00Z",
        "session":"6962a605","type":"permission_request","request_id":id,"tool":tool,
        "input":input,"summary":format!("{tool} something")}))
    .unwrap()
}

/// With the input box empty one key answers, without Tab: 1 allows once, 2 always, 3
/// denies; letters that start words (`a`, `e`) stay text; with a draft every key is text.
#[test]
fn one_key_answers_a_request_from_the_empty_input() {
    let mut app = app(ColorLevel::None);
    let ask = |app: &mut App, seq, id: &str| {
        app.on_daemon(FromDaemon::Event(Box::new(permission_event(
            seq,
            id,
            "Bash",
            serde_json::json!({"command": "make"}),
        ))))
    };
    ask(&mut app, 40, "req-1");
    let screen = text(&render(&mut app, 110, 30));
    assert!(screen.contains("1 y allow once"), "{screen}");
    let approve = |id: &str, d: &str| harvest_tui::app::Cmd::Approve {
        request_id: id.into(),
        decision: d.into(),
        input: None,
        message: None,
    };
    assert_eq!(
        app.on_key(KeyEvent::new(KeyCode::Char('1'), KeyModifiers::NONE)),
        vec![approve("req-1", "allow")]
    );
    assert_eq!(
        app.on_key(KeyEvent::new(KeyCode::Char('2'), KeyModifiers::NONE)),
        vec![approve("req-1", "always")]
    );
    assert!(
        app.on_key(KeyEvent::new(KeyCode::Char('a'), KeyModifiers::NONE))
            .is_empty()
    );
    assert_eq!(app.draft(), "a", "a typed into the empty box is text");
    assert!(
        app.on_key(KeyEvent::new(KeyCode::Char('1'), KeyModifiers::NONE))
            .is_empty()
    );
    assert_eq!(app.draft(), "a1", "with a draft, digits are text");
}

/// An Edit request shows the change as removed and added lines, not the call's JSON.
#[test]
fn an_edit_request_shows_its_diff() {
    let mut app = app(ColorLevel::None);
    app.on_daemon(FromDaemon::Event(Box::new(permission_event(
        41,
        "req-2",
        "Edit",
        serde_json::json!({"file_path": "/w/calc.py",
            "old_string": "def sub(a, b):\n    return a - b\n",
            "new_string": "def sub(a, b):\n    return a + b\n"}),
    ))));
    let screen = text(&render(&mut app, 110, 30));
    assert!(screen.contains("/w/calc.py"), "{screen}");
    assert!(screen.contains("-     return a - b"), "{screen}");
    assert!(screen.contains("+     return a + b"), "{screen}");
    assert!(!screen.contains("old_string"), "{screen}");
}

/// A running command shows how long it has run, how much it printed and its last lines,
/// in its line and in the tool pane, until its result replaces them.
#[test]
fn a_running_command_shows_its_live_output() {
    let mut app = bare_app();
    let ev = |v: serde_json::Value| FromDaemon::Event(Box::new(serde_json::from_value(v).unwrap()));
    app.on_daemon(ev(
        serde_json::json!({"seq":1,"ts":"2026-11-23T10:00:00Z","session":"6962a605",
        "type":"tool_call","id":"t1","name":"Bash","input":{"command":"make"}}),
    ));
    app.on_daemon(ev(
        serde_json::json!({"seq":2,"ts":"2026-11-23T10:00:08Z","session":"6962a605",
        "type":"tool_progress","tool_use_id":"t1","elapsed_secs":8,"lines":17,"bytes":400,
        "tail":["compiling a.c","compiling b.c"]}),
    ));
    let screen = text(&render(&mut app, 110, 30));
    assert!(screen.contains("running… (8 s · 17 lines)"), "{screen}");
    assert!(screen.contains("compiling b.c"), "{screen}");
    app.on_daemon(ev(serde_json::json!({"seq":3,"ts":"2026-11-23T10:00:09Z","session":"6962a605",
        "type":"tool_result","tool_use_id":"t1","is_error":false,"content":"all built",
        "output":{"kind":"bash","stdout":"all built","stderr":"","exit_code":0,"interrupted":false}})));
    let screen = text(&render(&mut app, 110, 30));
    assert!(
        !screen.contains("17 lines") && screen.contains("all built"),
        "{screen}"
    );
}

fn search(app: &mut App, text: &str) {
    key(app, KeyCode::Char('/'));
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
    key(app, KeyCode::Enter);
}

/// Search wraps around at the end, says when nothing matches at all, and in the focused
/// tool pane finds a line of a command's output and scrolls to it.
#[test]
fn search_wraps_says_no_match_and_searches_the_tool_pane() {
    let mut app = bare_app();
    let ev = |v: serde_json::Value| FromDaemon::Event(Box::new(serde_json::from_value(v).unwrap()));
    let out: String = (1..=400).map(|i| format!("row {i}\n")).collect();
    for v in [
        serde_json::json!({"seq":1,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"user_message","text":"find the needle"}),
        serde_json::json!({"seq":2,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"assistant_text","text":"Looking."}),
        serde_json::json!({"seq":3,"ts":"2026-11-23T10:00:00Z","session":"6962a605","type":"tool_call","id":"t1","name":"Bash","input":{"command":"seq"}}),
        serde_json::json!({"seq":4,"ts":"2026-11-23T10:00:01Z","session":"6962a605","type":"tool_result","tool_use_id":"t1","is_error":false,
            "content":"(output cut)","output":{"kind":"bash","stdout":out,"stderr":"","exit_code":0,"interrupted":false}}),
        serde_json::json!({"seq":5,"ts":"2026-11-23T10:00:01Z","session":"6962a605","type":"assistant_text","text":"Done."}),
    ] {
        app.on_daemon(ev(v));
    }
    let _ = render(&mut app, 110, 30);
    key(&mut app, KeyCode::Tab); // the conversation
    search(&mut app, "needle");
    assert_eq!(app.conv.selected, Some(0));
    key(&mut app, KeyCode::Char('n'));
    assert_eq!(app.conv.selected, Some(0), "one match: n wraps to it");
    assert!(
        app.toast
            .as_ref()
            .is_some_and(|(t, _)| t.contains("wrapped"))
    );
    search(&mut app, "nowhere-at-all");
    assert!(
        app.toast
            .as_ref()
            .is_some_and(|(t, _)| t.contains("no match for")),
        "{:?}",
        app.toast
    );
    // A command's own output (not what the model was shown) is found too.
    search(&mut app, "row 350");
    assert!(matches!(
        app.transcript.items()[app.conv.selected.unwrap()],
        harvest_tui::transcript::Item::Tool(_)
    ));
    // In the focused tool pane the search scrolls it to the line.
    key(&mut app, KeyCode::Tab); // the tool pane
    let _ = render(&mut app, 110, 30);
    search(&mut app, "row 350");
    let screen = text(&render(&mut app, 110, 30));
    assert!(screen.contains("row 350"), "{screen}");
    assert!(!screen.contains("row 10\n"), "{screen}");
}

/// A call whose turn was interrupted before its result stops saying "running".
#[test]
fn an_interrupted_calls_row_ends() {
    let mut app = bare_app();
    let ev = |v: serde_json::Value| FromDaemon::Event(Box::new(serde_json::from_value(v).unwrap()));
    app.on_daemon(ev(
        serde_json::json!({"seq":1,"ts":"2026-11-23T10:00:00Z","session":"6962a605",
        "type":"tool_call","id":"t1","name":"Bash","input":{"command":"sleep 100"}}),
    ));
    assert!(text(&render(&mut app, 110, 30)).contains("running…"));
    app.on_daemon(ev(
        serde_json::json!({"seq":2,"ts":"2026-11-23T10:00:05Z","session":"6962a605",
        "type":"status","state":"interrupted","reason":"the daemon stopped"}),
    ));
    let screen = text(&render(&mut app, 110, 30));
    assert!(!screen.contains("running…"), "{screen}");
    assert!(screen.contains("ended without a result"), "{screen}");
}

/// The help says with which key a second press detaches, as cancel is bound.
#[test]
fn the_help_names_the_cancel_key_as_rebound() {
    let cfg: harvest_config::KeysConfig =
        toml::from_str("[bind]\ncancel = [\"esc\", \"ctrl-x\"]\n").unwrap();
    let mut app = app(ColorLevel::None);
    app.keymap = Keymap::from_config(&cfg).unwrap();
    key(&mut app, KeyCode::Char('?'));
    let screen = text(&render(&mut app, 110, 40));
    assert!(screen.contains("C-x twice: detach"), "{screen}");
    assert!(!screen.contains("C-c twice"), "{screen}");
}

/// Another session that waits for an answer is named in the status line, with the way
/// there.
#[test]
fn another_session_needing_input_is_named_with_the_way_there() {
    let mut app = bare_app();
    app.on_daemon(FromDaemon::Sessions(vec![
        info("6962a605", "bare", SessionState::Idle),
        info("1b2c3d4e", "api work", SessionState::NeedsInput),
    ]));
    let screen = text(&render(&mut app, 160, 20));
    let top = screen.lines().next().unwrap_or_default();
    assert!(top.contains("⚑ api work needs input (C-b s)"), "{top}");
}

/// `prefix z` zooms the focused pane to the whole width and back; `prefix >` moves the
/// split.
#[test]
fn the_focused_pane_zooms_and_the_split_moves() {
    let mut app = app(ColorLevel::None);
    let prefix = |app: &mut App, c: char| {
        app.on_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
        key(app, KeyCode::Char(c));
    };
    let both = text(&render(&mut app, 110, 30));
    assert!(
        both.contains("Conversation") && both.contains("Bash"),
        "{both}"
    );
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab); // the tool pane
    prefix(&mut app, 'z');
    let zoomed = text(&render(&mut app, 110, 30));
    assert!(!zoomed.contains("Conversation"), "{zoomed}");
    prefix(&mut app, 'z');
    assert!(text(&render(&mut app, 110, 30)).contains("Conversation"));
    let title_at = |screen: &str| {
        screen
            .lines()
            .nth(1)
            .and_then(|l| l.find("┏").or_else(|| l.rfind('┌')))
            .unwrap_or(0)
    };
    let before = title_at(&text(&render(&mut app, 110, 30)));
    prefix(&mut app, '>');
    let after = title_at(&text(&render(&mut app, 110, 30)));
    assert!(
        after > before,
        "the split did not move right: {before} → {after}"
    );
}

/// A call the CLI reports as cancelled says so, not the CLI's note to the model.
#[test]
fn a_cancelled_call_says_cancelled() {
    let mut app = bare_app();
    let ev = |v: serde_json::Value| FromDaemon::Event(Box::new(serde_json::from_value(v).unwrap()));
    app.on_daemon(ev(
        serde_json::json!({"seq":1,"ts":"2026-11-23T10:00:00Z","session":"6962a605",
        "type":"tool_call","id":"t1","name":"Bash","input":{"command":"sleep 100"}}),
    ));
    app.on_daemon(ev(serde_json::json!({"seq":2,"ts":"2026-11-23T10:00:03Z","session":"6962a605",
        "type":"tool_result","tool_use_id":"t1","is_error":true,
        "content":"The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it was a file edit, the new_string was NOT written to the file). STOP what you are doing and wait for the user to tell you how to proceed."})));
    let screen = text(&render(&mut app, 110, 30));
    assert!(screen.contains("cancelled"), "{screen}");
    assert!(!screen.contains("doesn't want to proceed"), "{screen}");
}

/// At 80 columns the footer keeps the help's key whole (the least needed hints give way).
#[test]
fn the_footer_keeps_the_help_key_at_80_columns() {
    let mut app = bare_app();
    app.keymap.prefix_moved_for_tmux = true;
    let screen = text(&render(&mut app, 80, 24));
    let footer = screen.lines().last().unwrap_or_default();
    assert!(footer.contains("? help"), "{footer}");
    assert!(footer.contains("detach"), "{footer}");
}
