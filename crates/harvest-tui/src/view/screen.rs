//! The screen: layout, `prepare` (settles the viewport and builds the visible lines; the
//! only place where lines are built) and `draw` (reads state and puts it on the buffer).

use super::layout::centered;
use crate::app::{App, Conn, Focus, Overlay};
use crate::format::{age, tokens};
use crate::keymap::Action;
use crate::transcript::Item;
use crate::wrap::{truncate_line, width_of, wrap_lines};
use harvest_protocol::SessionState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

const SPINNER: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

pub struct Areas {
    pub header: Rect,
    pub conversation: Rect,
    pub tool: Rect,
    /// Follow-ups queued behind the running turn, just above the input (empty when none).
    pub queued: Rect,
    pub input: Rect,
    pub footer: Rect,
}

/// How many queued follow-ups are listed above the input; more are counted.
const QUEUED_SHOWN: usize = 3;

pub fn layout(area: Rect, app: &App) -> Areas {
    let input_h = (app.input.lines().len() as u16 + 2).clamp(3, 8);
    let queued = app.transcript.queued.len();
    let queued_h = (queued.min(QUEUED_SHOWN) + usize::from(queued > QUEUED_SHOWN)) as u16;
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(queued_h),
            Constraint::Length(input_h),
            Constraint::Length(1),
        ])
        .split(area);
    // A conversation without tool calls (or a prompt) takes the whole width: a text-only
    // answer is not squeezed beside an empty pane.
    let tools = app.transcript.last_tool().is_some() || !app.transcript.permissions.is_empty();
    if !tools {
        return Areas {
            header: rows[0],
            conversation: rows[1],
            tool: Rect::new(rows[1].x, rows[1].y, 0, 0),
            queued: rows[2],
            input: rows[3],
            footer: rows[4],
        };
    }
    // Zoomed: the focused pane alone (the tool pane when it has the focus, else the
    // conversation).
    if app.zoomed {
        let tool_alone = matches!(app.focus, Focus::Tool | Focus::Prompt);
        let none = Rect::new(rows[1].x, rows[1].y, 0, 0);
        return Areas {
            header: rows[0],
            conversation: if tool_alone { none } else { rows[1] },
            tool: if tool_alone { rows[1] } else { none },
            queued: rows[2],
            input: rows[3],
            footer: rows[4],
        };
    }
    // Side by side when there is room (where the user moved the split); stacked on a
    // narrow terminal.
    let share = app.split.clamp(20, 80);
    let body = if area.width >= 100 {
        Layout::default()
            .direction(Direction::Horizontal)
            .constraints([
                Constraint::Percentage(share),
                Constraint::Percentage(100 - share),
            ])
            .split(rows[1])
    } else {
        Layout::default()
            .direction(Direction::Vertical)
            .constraints([Constraint::Percentage(60), Constraint::Percentage(40)])
            .split(rows[1])
    };
    Areas {
        header: rows[0],
        conversation: body[0],
        tool: body[1],
        queued: rows[2],
        input: rows[3],
        footer: rows[4],
    }
}

/// Inner size of a bordered pane.
fn inner(r: Rect) -> (usize, usize) {
    (
        r.width.saturating_sub(2) as usize,
        r.height.saturating_sub(2) as usize,
    )
}

pub fn prepare(app: &mut App, area: Rect) {
    let a = layout(area, app);
    let theme = app.theme;
    let (cw, ch) = inner(a.conversation);
    app.conv.prepare(&app.transcript, cw, ch, &theme);
    app.frame.conversation = app.conv.visible(&app.transcript, &theme);

    let (tw, th) = inner(a.tool);
    app.frame.tool_rows = th;
    // A waiting permission request takes the tool pane: it is what needs the user.
    if let Some(p) = app.transcript.permissions.first() {
        use super::permission::Keys;
        let keys = match app.focus {
            crate::app::Focus::Prompt => Keys::Focused,
            crate::app::Focus::Input if app.draft().is_empty() => Keys::FromInput,
            _ => Keys::Draft,
        };
        let lines = super::permission::lines(p, keys, app.transcript.permissions.len(), &theme);
        app.frame.tool = wrap_lines(lines, tw, "  ").into_iter().take(th).collect();
        app.frame.tool_len = 0;
        app.frame.tool_title = if app.focus == crate::app::Focus::Prompt {
            " Permission · answering ".into()
        } else {
            " Permission ".into()
        };
        return;
    }
    let shown = app
        .tool_index()
        .filter(|i| matches!(app.transcript.items().get(*i), Some(Item::Tool(_))));
    match shown {
        Some(i) => {
            let key = crate::app::ToolPaneKey {
                item: i,
                rev: app.transcript.rev(i),
                width: tw,
                show_all: app.tool_show_all,
                full_output: app.full_output.as_ref().map(|(_, text)| text.len()),
            };
            let fresh = app
                .frame
                .tool_cache
                .as_ref()
                .is_some_and(|(k, _)| *k == key);
            let (name, lines) = if fresh {
                let name = match app.transcript.items().get(i) {
                    Some(Item::Tool(t)) => t.name.clone(),
                    _ => String::new(),
                };
                let lines = app.frame.tool_cache.as_ref().map(|(_, l)| l.clone());
                (name, lines.unwrap_or_default())
            } else {
                let Some(Item::Tool(t)) = app.transcript.items().get(i).cloned() else {
                    return;
                };
                load_full_output(app, &t);
                let full = app
                    .full_output
                    .as_ref()
                    .filter(|(id, _)| *id == t.id)
                    .map(|(_, text)| text.as_str());
                let lines = crate::view::tool::pane_lines(&t, tw, app.tool_show_all, full, &theme);
                let lines = std::sync::Arc::new(wrap_lines(lines, tw, "  "));
                app.frame.tool_cache = Some((key, lines.clone()));
                (t.name.clone(), lines)
            };
            let t_name = name;
            let total = lines.len();
            app.frame.tool_len = total.saturating_sub(th);
            app.tool_scroll = app.tool_scroll.min(app.frame.tool_len);
            app.frame.tool = lines
                .iter()
                .skip(app.tool_scroll)
                .take(th)
                .cloned()
                .collect();
            // Where the view is in a call longer than the pane.
            app.frame.tool_title = if total > th {
                format!(
                    " {} · {}-{} of {} ",
                    t_name,
                    app.tool_scroll + 1,
                    (app.tool_scroll + th).min(total),
                    total
                )
            } else {
                format!(" {t_name} ")
            };
        }
        None => {
            app.frame.tool = vec![Line::styled("no tool calls yet", theme.dim())];
            app.frame.tool_len = 0;
            app.frame.tool_title = " Tools ".into();
        }
    }
}

/// Ask, once per tool call, for the full output the CLI saved to a file. The daemon reads
/// it inside the sandbox (a link or FIFO the agent planted goes nowhere) and the answer
/// arrives as a message; until then the inlined part shows.
fn load_full_output(app: &mut App, tool: &crate::transcript::ToolItem) {
    let have = |id: &Option<String>| id.as_deref() == Some(tool.id.as_str());
    if app
        .full_output
        .as_ref()
        .is_some_and(|(id, _)| *id == tool.id)
        || have(&app.full_output_requested)
    {
        return;
    }
    let Some(path) = tool.result.as_ref().and_then(|r| match &r.output {
        Some(harvest_protocol::event::ToolOutput::Bash {
            persisted_output_path: Some(p),
            ..
        }) => Some(p.clone()),
        _ => None,
    }) else {
        return;
    };
    app.full_output_requested = Some(tool.id.clone());
    app.pending_cmds.push(crate::app::Cmd::ReadOutput {
        tool_id: tool.id.clone(),
        path,
    });
}

pub fn draw(f: &mut Frame<'_>, app: &App) {
    let a = layout(f.area(), app);
    let theme = &app.theme;
    f.render_widget(
        Paragraph::new(header(app, a.header.width as usize)).style(theme.header()),
        a.header,
    );

    // Focus shows in the border's weight as well as its colour, so that it reads under
    // NO_COLOR and on a monochrome terminal too.
    let pane = |title: String, focused: bool| {
        Block::default()
            .borders(Borders::ALL)
            .border_type(if focused {
                ratatui::widgets::BorderType::Thick
            } else {
                ratatui::widgets::BorderType::Plain
            })
            .title(title)
            .border_style(if focused {
                theme.border_focused()
            } else {
                theme.border()
            })
    };
    let conv_title = if app.conv.follow {
        " Conversation "
    } else {
        " Conversation (scrolled; G follows) "
    };
    f.render_widget(
        Paragraph::new(app.frame.conversation.clone())
            .block(pane(conv_title.into(), app.focus == Focus::Conversation)),
        a.conversation,
    );
    if a.tool.area() > 0 {
        f.render_widget(
            Paragraph::new(app.frame.tool.clone()).block(pane(
                app.frame.tool_title.clone(),
                matches!(app.focus, Focus::Tool | Focus::Prompt),
            )),
            a.tool,
        );
    }

    if a.queued.height > 0 {
        f.render_widget(
            Paragraph::new(queued(app, a.queued.width as usize)),
            a.queued,
        );
    }
    let mut input = app.input.clone();
    input.set_block(pane(" › ".into(), app.focus == Focus::Input));
    f.render_widget(&input, a.input);

    f.render_widget(
        Paragraph::new(footer(app, a.footer.width as usize)),
        a.footer,
    );

    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => help(f, app),
        Overlay::Search { query } => {
            // The search line sits over the footer, as a pager's does.
            let line = Line::from(vec![
                Span::styled(" /", theme.key()),
                Span::raw(query.clone()),
                Span::styled("▏", theme.dim()),
                Span::styled("  Enter find · n/N next/previous · Esc cancel", theme.dim()),
            ]);
            f.render_widget(Clear, a.footer);
            f.render_widget(Paragraph::new(line), a.footer);
        }
        Overlay::Picker { selected, filter } => picker(f, app, *selected, filter.as_deref()),
        Overlay::Review(r) => super::review::draw(f, app, r),
        Overlay::ConfirmRemove { id, name } => {
            let r = centered(f.area(), 50, 5);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(vec![
                    Line::from(format!("Remove session {id} ({name})?")),
                    Line::styled("Its sandbox, history and cloned workspace go.", theme.dim()),
                    Line::from(vec![
                        Span::styled("y", theme.key()),
                        Span::raw(" remove · any other key keeps it"),
                    ]),
                ])
                .block(
                    Block::bordered()
                        .title(" Remove ")
                        .border_style(theme.error()),
                ),
                r,
            );
        }
        Overlay::TrustMcp {
            workspace, servers, ..
        } => {
            let height = (servers.len().min(8) + 6) as u16;
            let r = centered(f.area(), 70, height);
            f.render_widget(Clear, r);
            let mut lines = vec![Line::from(format!(
                "{}/.mcp.json asks to start these MCP servers in the session's sandbox:",
                harvest_termsafe::text(workspace, harvest_termsafe::Sgr::Drop)
            ))];
            lines.extend(
                servers
                    .iter()
                    .take(8)
                    .map(|l| Line::styled(format!("  {l}"), theme.dim())),
            );
            if servers.len() > 8 {
                lines.push(Line::styled(
                    format!("  … and {} more", servers.len() - 8),
                    theme.dim(),
                ));
            }
            lines.push(Line::from(vec![
                Span::styled("y", theme.key()),
                Span::raw(" trust this file and start them · "),
                Span::styled("n", theme.key()),
                Span::raw(" start without them · "),
                Span::styled("Esc", theme.key()),
                Span::raw(" back"),
            ]));
            f.render_widget(
                Paragraph::new(lines)
                    .wrap(ratatui::widgets::Wrap { trim: false })
                    .block(
                        Block::bordered()
                            .title(" Trust this project's MCP servers? ")
                            .border_style(theme.warn()),
                    ),
                r,
            );
        }
        Overlay::NewSession {
            workspace,
            prompt,
            on_prompt,
            error,
        } => {
            // Why the last try was refused, wrapped in full inside the form.
            let error_lines = error
                .as_deref()
                .map(|e| {
                    wrap_lines(
                        vec![Line::styled(format!("not created: {e}"), theme.error())],
                        66,
                        "  ",
                    )
                })
                .unwrap_or_default();
            let r = centered(f.area(), 70, 10 + error_lines.len() as u16);
            f.render_widget(Clear, r);
            let rows = Layout::default()
                .direction(Direction::Vertical)
                .constraints([
                    Constraint::Length(3),
                    Constraint::Min(3),
                    Constraint::Length(error_lines.len() as u16),
                    Constraint::Length(1),
                ])
                .split(Rect {
                    x: r.x + 1,
                    y: r.y + 1,
                    width: r.width.saturating_sub(2),
                    height: r.height.saturating_sub(2),
                });
            f.render_widget(
                Block::bordered()
                    .title(" New session ")
                    .border_style(theme.border_focused()),
                r,
            );
            let mut ws = (**workspace).clone();
            ws.set_block(pane(" workspace ".into(), !*on_prompt));
            f.render_widget(&ws, rows[0]);
            let mut p = (**prompt).clone();
            p.set_block(pane(" prompt ".into(), *on_prompt));
            f.render_widget(&p, rows[1]);
            f.render_widget(Paragraph::new(error_lines), rows[2]);
            f.render_widget(
                Paragraph::new("Enter create · Tab switch field · Esc back").style(theme.dim()),
                rows[3],
            );
        }
    }
}

/// The follow-ups waiting for the running turn to end, newest last, each on one line,
/// with how to take one back.
fn queued(app: &App, width: usize) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let all = &app.transcript.queued;
    // As Claude Code says it: what waits can be edited, or sent into the turn now.
    let hint = format!(
        "  ↑ edits · {} sends now",
        app.keymap.hint(crate::keymap::Action::SendNow)
    );
    let hint = hint.as_str();
    let mut lines: Vec<Line<'static>> = Vec::new();
    let hidden = all.len().saturating_sub(QUEUED_SHOWN);
    if hidden > 0 {
        lines.push(Line::styled(
            format!(" queued · {hidden} more"),
            theme.dim(),
        ));
    }
    let shown = &all[hidden..];
    for (i, (_, text)) in shown.iter().enumerate() {
        let last = i + 1 == shown.len();
        let label = " queued › ";
        let room = width
            .saturating_sub(label.chars().count())
            .saturating_sub(if last { hint.chars().count() } else { 0 });
        let first = text.lines().next().unwrap_or("");
        let more = text.lines().nth(1).is_some();
        let mut body = cut(first, room);
        if more && body.chars().count() < room {
            body.push('…');
        }
        let mut spans = vec![
            Span::styled(label, theme.key()),
            Span::styled(body, theme.dim()),
        ];
        if last {
            spans.push(Span::styled(hint.to_owned(), theme.dim()));
        }
        lines.push(Line::from(spans));
    }
    lines
}

fn header(app: &App, width: usize) -> Line<'static> {
    let theme = &app.theme;
    let mut spans = vec![Span::styled(" harvest", theme.bold())];
    match &app.session {
        None => spans.push(Span::raw(" · no session")),
        Some(s) => {
            let t = &app.transcript;
            let state = t.state.unwrap_or(s.state);
            let (mark, label) = match state {
                SessionState::Running => (
                    SPINNER[app.spinner % SPINNER.len()].to_string(),
                    "running".to_owned(),
                ),
                SessionState::NeedsInput => ("◆".into(), "needs input".into()),
                SessionState::Cancelling => ("■".into(), "cancelling".into()),
                SessionState::Idle => ("●".into(), "idle".into()),
                other => ("○".into(), other.as_str().to_owned()),
            };
            let elapsed = t
                .turn_started
                .filter(|_| state == SessionState::Running)
                .map(|start| {
                    let secs = (time::OffsetDateTime::now_utc() - start)
                        .whole_seconds()
                        .max(0);
                    format!(" {:02}:{:02}", secs / 60, secs % 60)
                })
                .unwrap_or_default();
            spans.push(Span::raw(format!(" · {} · {} · ", s.name, s.sandbox)));
            let state_style = match state {
                SessionState::Failed => theme.error(),
                SessionState::Running | SessionState::Cancelling => theme.warn(),
                _ => theme.base(),
            };
            spans.push(Span::styled(
                format!("{mark} {label}{elapsed}"),
                state_style,
            ));
            if let Some(r) = &t.retry {
                spans.push(Span::styled(
                    format!(
                        " · API retry {}/{}: {} {}",
                        r.attempt,
                        r.limit,
                        r.status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "no response".into()),
                        r.error.clone().unwrap_or_default()
                    ),
                    theme.warn(),
                ));
            }
            if let Some(why) = &s.stalled {
                spans.push(Span::styled(format!(" · ⚠ {why}"), theme.error()));
            }
            let cost = s.cost_usd.max(t.cost_usd);
            // While a turn runs its tokens so far count too; the exact cost comes at its end.
            let tok = (s.input_tokens + s.output_tokens).max(t.tokens) + t.turn_tokens;
            spans.push(Span::raw(format!(" · ${cost:.3} · {} tok", tokens(tok))));
            // Where the agent's dev server is reached (the newest URL of each port).
            let urls: Vec<&str> = if t.previews.is_empty() {
                // Announced before the part of the history this client folded.
                s.previews.iter().map(|p| p.url.as_str()).collect()
            } else {
                t.previews.iter().map(|(_, u)| u.as_str()).collect()
            };
            for url in urls {
                spans.push(Span::styled(format!(" · ⇢ {url}"), theme.key()));
            }
            // The session's own branch, and its pull request once there is one.
            if let Some(branch) = &s.branch {
                spans.push(Span::styled(format!(" · ⎇ {branch}"), theme.dim()));
            }
            if let Some(pr) = &s.pr_url {
                spans.push(Span::styled(format!(" · {pr}"), theme.key()));
            }
            // Secrets the user let into the sandbox, for their MCP servers: by name.
            if !s.secrets_inside.is_empty() {
                spans.push(Span::styled(
                    format!(" · ⚿ {}", s.secrets_inside.join(", ")),
                    theme.warn(),
                ));
            }
        }
    }
    // Another session waiting for an answer: named, with the way there.
    let attached = app.session.as_ref().map(|s| &s.id);
    let waiting: Vec<&str> = app
        .sessions
        .iter()
        .filter(|s| Some(&s.id) != attached && s.state == SessionState::NeedsInput)
        .map(|s| s.name.as_str())
        .collect();
    if let Some(first) = waiting.first() {
        let more = if waiting.len() > 1 {
            format!(" and {} more", waiting.len() - 1)
        } else {
            String::new()
        };
        spans.push(Span::styled(
            format!(
                " · ⚑ {first}{more} needs input ({})",
                app.keymap.hint(crate::keymap::Action::Sessions)
            ),
            theme.warn(),
        ));
    }
    let conn = match &app.conn {
        Conn::Connected => Span::raw(""),
        Conn::Connecting => Span::styled(" · connecting…", theme.warn()),
        Conn::Disconnected(_) => Span::styled(" · disconnected, retrying", theme.error()),
    };
    spans.push(conn);
    truncate_line(Line::from(spans), width)
}

fn footer(app: &App, width: usize) -> Line<'static> {
    let theme = &app.theme;
    if let Some((toast, at)) = &app.toast
        && at.elapsed() < std::time::Duration::from_secs(3)
    {
        return truncate_line(Line::styled(format!(" {toast}"), theme.warn()), width);
    }
    let k = &app.keymap;
    // In the order shown, with what gives way first on a narrow terminal (higher first):
    // the help's key always stays.
    let mut hints: Vec<(String, String, u8)> = [
        (Action::Send, "send", 2),
        (Action::Newline, "newline", 6),
        (Action::Cancel, "cancel", 3),
        (Action::Detach, "detach", 1),
        (Action::Sessions, "sessions", 4),
        (Action::FocusNext, "focus", 5),
        (Action::Help, "help", 0),
    ]
    .into_iter()
    .map(|(action, label, drop)| {
        let label = if action == Action::Detach && k.prefix_moved_for_tmux {
            format!(" {label} (C-g: C-b is tmux's)")
        } else {
            format!(" {label}")
        };
        (k.hint(action), label, drop)
    })
    .collect();
    let len = |h: &[(String, String, u8)]| {
        1 + h
            .iter()
            .map(|(key, label, _)| width_of(key) + width_of(label))
            .sum::<usize>()
            + 3 * h.len().saturating_sub(1)
    };
    while len(&hints) > width {
        // The tmux note goes first, then the least needed hint.
        if let Some(h) = hints.iter_mut().find(|h| h.1.contains("(C-g")) {
            h.1 = " detach".into();
            continue;
        }
        let Some(at) = hints
            .iter()
            .enumerate()
            .filter(|(_, h)| h.2 > 0)
            .max_by_key(|(_, h)| h.2)
            .map(|(i, _)| i)
        else {
            break;
        };
        hints.remove(at);
    }
    let mut spans = vec![Span::raw(" ")];
    for (i, (key, label, _)) in hints.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" · ", theme.dim()));
        }
        spans.push(Span::styled(key, theme.key()));
        spans.push(Span::raw(label));
    }
    truncate_line(Line::from(spans), width)
}

fn help(f: &mut Frame<'_>, app: &App) {
    let theme = &app.theme;
    let k = &app.keymap;
    let rows: Vec<(String, String)> = Action::ALL
        .iter()
        .map(|action| {
            let keys: Vec<String> = k
                .bindings
                .get(action)
                .map(|b| b.iter().map(|b| k.show(b)).collect())
                .unwrap_or_default();
            // Cancel's "twice: detach" is said with the keys it is bound to (any but Esc).
            let what = match action {
                crate::keymap::Action::Cancel => {
                    let twice: Vec<&String> = keys.iter().filter(|k| *k != "Esc").collect();
                    match twice.first() {
                        Some(k) => format!("cancel the running turn ({k} twice: detach)"),
                        None => "cancel the running turn".to_owned(),
                    }
                }
                other => other.describe().to_owned(),
            };
            let keys = if keys.is_empty() {
                "unbound".to_owned()
            } else {
                keys.join(", ")
            };
            (keys, what)
        })
        .collect();
    let key_col = rows.iter().map(|(k, _)| width_of(k)).max().unwrap_or(0) + 2;
    let mut lines: Vec<Line<'static>> = rows
        .into_iter()
        .map(|(keys, what)| {
            let pad = key_col - width_of(&keys);
            Line::from(vec![
                Span::styled(keys, theme.key()),
                Span::raw(" ".repeat(pad)),
                Span::raw(what),
            ])
        })
        .collect();
    lines.push(Line::default());
    if k.prefix_moved_for_tmux {
        lines.push(Line::styled(
            "Inside tmux the prefix is C-g (C-b is tmux's own); set keys.prefix to choose.",
            theme.dim(),
        ));
    }
    lines.push(Line::styled(
        "Rebind any of these in harvest.toml under [keys]. Esc closes.",
        theme.dim(),
    ));
    // As wide as its widest line (within the screen), wrapped to fit, and scrolled (j/k,
    // arrows, PgUp/PgDn) when taller than the screen: nothing is ever cut off.
    let area = f.area();
    let widest = lines
        .iter()
        .map(|l| width_of(&l.to_string()))
        .max()
        .unwrap_or(0);
    let width = (widest + 2)
        .min(area.width.saturating_sub(2) as usize)
        .max(20);
    let lines = crate::wrap::wrap_lines(lines, width.saturating_sub(2), &" ".repeat(key_col));
    let height = (lines.len() + 2).min(area.height as usize);
    let visible = height.saturating_sub(2);
    let top = app.help_scroll.min(lines.len().saturating_sub(visible));
    let more = lines.len() > visible;
    let title = if more {
        format!(
            " Keys · {}-{} of {} · j/k scroll ",
            top + 1,
            (top + visible).min(lines.len()),
            lines.len()
        )
    } else {
        " Keys ".to_owned()
    };
    let r = centered(area, width as u16, height as u16);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(
            lines
                .into_iter()
                .skip(top)
                .take(visible)
                .collect::<Vec<_>>(),
        )
        .block(
            Block::bordered()
                .title(title)
                .border_style(theme.border_focused()),
        ),
        r,
    );
}

fn picker(f: &mut Frame<'_>, app: &App, selected: usize, filter: Option<&str>) {
    let sessions = app.picker_sessions();
    let theme = &app.theme;
    let r = centered(
        f.area(),
        f.area().width.saturating_sub(4).min(110),
        f.area().height.saturating_sub(4).min(20),
    );
    let w = r.width.saturating_sub(2) as usize;
    // The rows that fit between the borders, above the blank line and the hint, which are
    // always shown; the window scrolls so the selection is always on screen.
    let rows = (r.height as usize).saturating_sub(4).max(1);
    let start = selected
        .saturating_sub(rows - 1)
        .min(sessions.len().saturating_sub(rows));
    let mut lines = Vec::new();
    if sessions.is_empty() {
        lines.push(Line::styled(
            if filter.is_some() {
                "no session matches"
            } else {
                "no sessions yet"
            },
            theme.dim(),
        ));
    }
    // The name takes most of what the fixed columns leave (the last line gets the rest).
    let name_w = (w.saturating_sub(46) * 3 / 5).clamp(20, 48);
    for (i, s) in sessions.iter().enumerate().skip(start).take(rows) {
        let last = s.last_line.clone().unwrap_or_default();
        let row = format!(
            "{:<9}{:<nw$} {:<12} {:<7} {:>7} {:>5}  {}",
            s.id.as_str(),
            cut(&s.name, name_w - 1),
            s.state.as_str(),
            s.sandbox,
            format!("${:.3}", s.cost_usd),
            age(
                s.created_at,
                time::OffsetDateTime::now_utc().unix_timestamp()
            ),
            last.lines().next().unwrap_or(""),
            nw = name_w,
        );
        let style = if i == selected {
            theme.selected()
        } else {
            Style::new()
        };
        lines.push(truncate_line(Line::styled(row, style), w));
    }
    let below = sessions.len().saturating_sub(start + rows);
    lines.push(if let Some(f) = filter {
        Line::from(vec![
            Span::styled("/", theme.key()),
            Span::raw(f.to_owned()),
            Span::styled("▏", theme.dim()),
            Span::styled(
                format!(
                    "  {} of {} · Esc clears",
                    sessions.len(),
                    app.sessions.len()
                ),
                theme.dim(),
            ),
        ])
    } else if start > 0 || below > 0 {
        Line::styled(
            format!("{start} more above · {below} more below"),
            theme.dim(),
        )
    } else {
        Line::default()
    });
    lines.push(Line::from(vec![
        Span::styled("Enter", theme.key()),
        Span::raw(" attach · "),
        Span::styled("n", theme.key()),
        Span::raw(" new · "),
        Span::styled("x", theme.key()),
        Span::raw(" remove · "),
        Span::styled("/", theme.key()),
        Span::raw(" filter · "),
        Span::styled("Esc", theme.key()),
        Span::raw(" close"),
    ]));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" Sessions ")
                .border_style(theme.border_focused()),
        ),
        r,
    );
}

fn cut(s: &str, n: usize) -> String {
    truncate_line(Line::from(s.to_owned()), n).to_string()
}
