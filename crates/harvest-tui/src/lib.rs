//! The Harvest terminal client: attach to a session and work in split panes — the
//! conversation, the tool viewer (Bash output, diffs), an input box and a status line.
//!
//! Structure: a connection task owns the daemon client (`connection`), a thread reads the
//! terminal (`input_thread`), and the loop here folds both into [`app::App`] and draws at
//! most ~60 frames a second, at once after a keystroke. Views (`view`) are functions of
//! the state; lines are cached per item and width, so only visible items cost anything.

pub mod app;
pub mod connection;
pub mod drafts;
pub mod editing;
pub mod format;
pub mod keymap;
pub mod theme;
pub mod transcript;
pub mod view;

mod ansi;
mod backend;
mod highlight;
mod markdown;
mod terminal;
mod wrap;

use app::{App, Exit, FromDaemon};
pub use connection::Initial;
use harvest_config::{KeysConfig, Paths};
use harvest_protocol::Secret;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("the terminal could not be set up: {0} (is this an interactive terminal?)")]
    Terminal(#[from] std::io::Error),
    #[error("invalid key binding in harvest.toml: {0}")]
    Keys(String),
}

pub struct Options {
    pub paths: Paths,
    /// The harvest executable, to start the daemon when it is not running.
    pub exe: PathBuf,
    pub initial: Initial,
    /// Credentials forwarded when a message has to restart the agent.
    pub env: BTreeMap<String, Secret>,
    pub keys: KeysConfig,
    /// The config's `github.api_url` (GITHUB_API_URL wins), for the review view's `p`.
    pub github_api_url: Option<String>,
}

/// How the client ended: detached from this session, if any.
pub struct Outcome {
    pub session: Option<String>,
}

/// Smallest interval between two frames that nothing urgent asked for.
const FRAME: Duration = Duration::from_millis(16);

pub async fn run(opts: Options) -> Result<Outcome, TuiError> {
    let in_tmux = std::env::var_os("TMUX").is_some_and(|v| !v.is_empty());
    let keymap = keymap::Keymap::for_terminal(&opts.keys, in_tmux).map_err(TuiError::Keys)?;
    let theme = theme::Theme::new(theme::ColorLevel::detect(|k| std::env::var(k).ok()));
    highlight::warm_up();
    let drafts =
        drafts::Drafts::new(opts.paths.state_dir.join("drafts")).remembering(opts.paths.clone());
    let (guard, mut term) = terminal::TerminalGuard::enter(opts.keys.mouse.unwrap_or(true))?;
    let mut app = App::new(theme, keymap);
    app.mouse = opts.keys.mouse.unwrap_or(true);

    let (ui_tx, mut from_daemon) = mpsc::channel(4096);
    let cmds = connection::spawn(
        connection::Connection {
            paths: opts.paths.clone(),
            exe: opts.exe.clone(),
            env: opts.env.clone(),
            github_api_url: opts.github_api_url.clone(),
        },
        opts.initial,
        ui_tx,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut keys = input_thread(stop.clone());
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));

    let mut dirty = true;
    let mut urgent = true;
    let mut last_draw = Instant::now();
    loop {
        if dirty && (urgent || last_draw.elapsed() >= FRAME) {
            let area = term.get_frame().area();
            view::screen::prepare(&mut app, area);
            term.draw(|f| view::screen::draw(f, &app))?;
            for n in app.notifications.drain(..) {
                terminal::notify(&n);
            }
            for cmd in app.pending_cmds.drain(..) {
                let _ = cmds.try_send(cmd);
            }
            last_draw = Instant::now();
            dirty = false;
            urgent = false;
        }
        if app.exit.is_some() {
            break;
        }
        let wait = FRAME.saturating_sub(last_draw.elapsed());
        tokio::select! {
            ev = keys.recv() => {
                let Some(ev) = ev else { break };
                use crossterm::event::Event as E;
                match ev {
                    E::Key(k) => {
                        for cmd in app.on_key(k) {
                            if matches!(cmd, app::Cmd::Send(_)) {
                                save_draft(&drafts, &app);
                            }
                            let _ = cmds.try_send(cmd);
                        }
                        if std::mem::take(&mut app.mouse_changed) {
                            terminal::set_mouse(app.mouse);
                        }
                        urgent = true;
                    }
                    E::Mouse(m) => app.on_mouse(m),
                    E::Paste(p) => app.on_paste(&p),
                    E::Resize(_, _) => urgent = true,
                    _ => {}
                }
                dirty = true;
            }
            msg = from_daemon.recv() => {
                let Some(msg) = msg else { break };
                on_daemon(&mut app, &drafts, msg);
                // Take what else is queued before drawing: a replay arrives in bulk.
                let mut n = 0;
                while n < 5000 {
                    let Ok(more) = from_daemon.try_recv() else { break };
                    on_daemon(&mut app, &drafts, more);
                    n += 1;
                }
                dirty = true;
            }
            _ = tick.tick() => {
                if app.is_running() || app.toast.is_some() {
                    app.spinner = app.spinner.wrapping_add(1);
                    dirty = true;
                }
            }
            _ = sigterm.recv() => app.exit = Some(Exit::Detach),
            _ = sighup.recv() => app.exit = Some(Exit::Detach),
            _ = tokio::time::sleep(wait), if dirty => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    save_draft(&drafts, &app);
    drop(term);
    drop(guard);
    Ok(Outcome {
        session: app.session.as_ref().map(|s| s.id.to_string()),
    })
}

fn on_daemon(app: &mut App, drafts: &drafts::Drafts, msg: FromDaemon) {
    if let FromDaemon::Attached(info) = &msg {
        drafts.remember_session(info.id.as_str());
        let switching = app.session.as_ref().map(|s| &s.id) != Some(&info.id);
        if switching {
            save_draft(drafts, app);
            let draft = drafts.load(info.id.as_str());
            app.on_daemon(msg);
            app.set_draft(&draft);
            app.loaded_draft = draft;
            app.history = editing::History::default();
            return;
        }
    }
    app.on_daemon(msg);
}

/// Save this client's draft, only if it changed since it was loaded: another client
/// attached to the same session keeps its own, and an empty detach erases nothing.
fn save_draft(drafts: &drafts::Drafts, app: &App) {
    if let Some(s) = &app.session {
        let draft = app.draft();
        if draft != app.loaded_draft {
            drafts.save(s.id.as_str(), &draft);
        }
    }
}

/// Read terminal events on a thread of their own, so a slow frame never delays input.
fn input_thread(stop: Arc<AtomicBool>) -> mpsc::Receiver<crossterm::event::Event> {
    let (tx, rx) = mpsc::channel(1024);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match crossterm::event::poll(Duration::from_millis(100)) {
                Ok(true) => match crossterm::event::read() {
                    Ok(ev) => {
                        if tx.blocking_send(ev).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    rx
}
