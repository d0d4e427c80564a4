//! The connection task: owns the daemon client, so the UI never waits on the socket. It
//! connects (starting the daemon if needed), attaches, forwards events, runs the UI's
//! commands, and on a lost connection keeps retrying and re-subscribes from the last seq
//! it delivered, so the UI sees no gap and no duplicate.

use crate::app::{Cmd, FromDaemon, McpTrust};
use harvest_client::Client;
use harvest_config::Paths;
use harvest_protocol::methods::{self as m, CreateParams};
use harvest_protocol::{Secret, Seq};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// What to attach to first.
#[derive(Debug, Clone)]
pub enum Initial {
    Session(String),
    /// The most recently active session, or the picker when there is none.
    MostRecent,
}

pub struct Connection {
    pub paths: Paths,
    pub exe: PathBuf,
    /// Credentials forwarded with `send` and `create`, for an agent that must be started.
    pub env: BTreeMap<String, Secret>,
    /// The config's `github.api_url`, for a pull request from the review view.
    pub github_api_url: Option<String>,
}

pub fn spawn(
    conn: Connection,
    initial: Initial,
    to_ui: mpsc::Sender<FromDaemon>,
) -> mpsc::Sender<Cmd> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(run(conn, initial, to_ui, rx));
    tx
}

async fn run(
    conn: Connection,
    initial: Initial,
    ui: mpsc::Sender<FromDaemon>,
    mut cmds: mpsc::Receiver<Cmd>,
) {
    let mut attached: Option<String> = match &initial {
        Initial::Session(id) => Some(id.clone()),
        Initial::MostRecent => None,
    };
    let mut pick_recent = matches!(initial, Initial::MostRecent);
    let mut last_seq = Seq(0);
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut client =
            match harvest_client::connect_or_start(&conn.paths, &conn.exe, "harvest-tui").await {
                Ok(c) => c,
                Err(e) => {
                    if ui
                        .send(FromDaemon::Disconnected(e.to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
        backoff = Duration::from_millis(200);
        let _ = ui.send(FromDaemon::Connected).await;
        let Some(mut notes) = client.take_notifications() else {
            return;
        };
        // Shared with the task that fetches older history.
        let client = std::sync::Arc::new(client);

        if pick_recent {
            pick_recent = false;
            match client.call::<m::SessionList>(m::Empty {}).await {
                // The one the user last attached to or sent to; else the newest.
                Ok(list) => match conn
                    .paths
                    .last_session()
                    .and_then(|last| list.sessions.iter().find(|s| s.id.as_str() == last))
                    .or_else(|| list.sessions.iter().max_by_key(|s| s.created_at))
                {
                    Some(s) => attached = Some(s.id.to_string()),
                    None => {
                        let _ = ui.send(FromDaemon::Sessions(list.sessions.clone())).await;
                        let _ = ui.send(FromDaemon::NoSession).await;
                    }
                },
                Err(e) => {
                    let _ = ui.send(FromDaemon::Error(e.to_string())).await;
                }
            }
        }
        if let Some(id) = attached.clone()
            && let Err(e) = attach(&client, &ui, &id, last_seq).await
        {
            let _ = ui.send(FromDaemon::Error(e)).await;
            attached = None;
            let _ = ui.send(FromDaemon::NoSession).await;
        }

        // Serve until the connection drops or the UI asks to switch sessions.
        let mut lost = true;
        // What only the session's row says (a stall: its store refuses), asked now and then.
        let mut refresh = tokio::time::interval(Duration::from_secs(3));
        refresh.tick().await;
        loop {
            tokio::select! {
                _ = refresh.tick() => {
                    if let Some(id) = attached.as_deref()
                        && let Ok(info) = client
                            .call::<m::SessionGet>(m::SessionRef { session: id.to_owned() })
                            .await
                    {
                        let _ = ui.send(FromDaemon::Info(info)).await;
                    }
                    // The other sessions' states: one that needs input is shown.
                    if let Ok(list) = client.call::<m::SessionList>(m::Empty {}).await {
                        let _ = ui.send(FromDaemon::Sessions(list.sessions)).await;
                    }
                }
                note = notes.recv() => {
                    let Some(note) = note else { break };
                    match harvest_client::Delivery::decode(note) {
                        harvest_client::Delivery::Event { event, .. } => {
                            last_seq = last_seq.max(event.seq);
                            if ui.send(FromDaemon::Event(event)).await.is_err() {
                                return;
                            }
                        }
                        harvest_client::Delivery::Lagged { .. } => {
                            let _ = ui.send(FromDaemon::Lagged).await;
                        }
                        harvest_client::Delivery::Other(_) => {}
                    }
                }
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else { return };
                    if let Cmd::ReadOutput { tool_id, path } = cmd {
                        // Answered on the side: a slow read never holds up other commands'
                        // session-list refresh, and the UI never waits for it.
                        let text = match attached.as_deref() {
                            Some(session) => client
                                .call::<m::SessionReadFile>(m::ReadFileParams {
                                    session: session.to_owned(),
                                    path,
                                    limit: None,
                                })
                                .await
                                .map(|r| r.text)
                                .map_err(|e| e.to_string()),
                            None => Err("no session attached".to_owned()),
                        };
                        let _ = ui.send(FromDaemon::FullOutput { tool_id, text }).await;
                        continue;
                    }
                    if matches!(cmd, Cmd::Diff | Cmd::Apply(_) | Cmd::Pr) {
                        // Answered on the side, as a tool's saved output is: a push or a
                        // large diff never holds up the session's events.
                        let reply = review(&client, &conn, attached.as_deref(), cmd).await;
                        let _ = ui.send(reply).await;
                        continue;
                    }
                    if let Cmd::Withdraw(message) = cmd {
                        let taken = match attached.as_deref() {
                            Some(session) => client
                                .call::<m::SessionWithdraw>(m::WithdrawParams {
                                    session: session.to_owned(),
                                    message,
                                })
                                .await
                                .map(|r| r.texts)
                                .map_err(|e| e.to_string()),
                            None => Err("no session attached".to_owned()),
                        };
                        let _ = ui
                            .send(match taken {
                                Ok(texts) => FromDaemon::Withdrawn(texts),
                                Err(e) => FromDaemon::Error(e),
                            })
                            .await;
                        continue;
                    }
                    let sent = match &cmd {
                        Cmd::Send(text) => Some(text.clone()),
                        _ => None,
                    };
                    let created = match &cmd {
                        Cmd::Create {
                            workspace, prompt, ..
                        } => Some((workspace.clone(), prompt.clone())),
                        _ => None,
                    };
                    // A folder whose `.mcp.json` the user has not trusted: asked first.
                    if let Cmd::Create {
                        workspace,
                        prompt,
                        trust: McpTrust::Ask,
                    } = &cmd
                        && let harvest_client::mcp_trust::Trust::Unknown { name, servers } =
                            harvest_client::mcp_trust::lookup(
                                &conn.paths.data_dir,
                                &folder_of(workspace),
                            )
                    {
                        let _ = ui
                            .send(FromDaemon::AskTrust {
                                workspace: workspace.clone(),
                                prompt: prompt.clone(),
                                name,
                                servers,
                            })
                            .await;
                        continue;
                    }
                    match command(&client, &conn, attached.as_deref(), cmd).await {
                        Ok(Some(Switch(id))) => {
                            attached = Some(id);
                            last_seq = Seq(0);
                            lost = false;
                            break; // a fresh connection carries only the new subscription
                        }
                        Ok(None) => {}
                        Err(error) => {
                            let _ = ui
                                .send(match (sent, created) {
                                    (Some(text), _) => FromDaemon::SendFailed { text, error },
                                    (_, Some((workspace, prompt))) => FromDaemon::CreateFailed {
                                        workspace,
                                        prompt,
                                        error,
                                    },
                                    _ => FromDaemon::Error(error),
                                })
                                .await;
                        }
                    }
                    if let Ok(list) = client.call::<m::SessionList>(m::Empty {}).await {
                        let _ = ui.send(FromDaemon::Sessions(list.sessions)).await;
                    }
                }
            }
        }
        if lost {
            let _ = ui
                .send(FromDaemon::Disconnected("connection lost".into()))
                .await;
            tokio::time::sleep(backoff).await;
        }
    }
}

struct Switch(String);

/// Fetch events `1..end` in pages and fold them into a transcript here, off the UI loop.
async fn fetch_history(
    client: std::sync::Arc<Client>,
    ui: mpsc::Sender<FromDaemon>,
    session: String,
    end: Seq,
) {
    let mut t = crate::transcript::Transcript::default();
    let mut from = Seq(1);
    while from < end {
        let page = client
            .call::<m::SessionEvents>(m::EventsParams {
                session: session.clone(),
                from_seq: from,
                to_seq: Some(end),
                include_raw: false,
            })
            .await;
        match page {
            Ok(p) if !p.events.is_empty() => {
                from = p.events.last().map(|e| e.seq.next()).unwrap_or(end);
                for ev in p.events {
                    t.apply(ev);
                }
            }
            Ok(_) => break,
            Err(e) => {
                let _ = ui
                    .send(FromDaemon::Error(format!("older history not loaded: {e}")))
                    .await;
                return;
            }
        }
    }
    let _ = ui.send(FromDaemon::History(Box::new(t))).await;
}

/// Events subscribed to first when attaching to a long session; the older ones are
/// fetched behind them, so the first full frame does not wait for the whole history.
const TAIL: u64 = 2_000;

async fn attach(
    client: &std::sync::Arc<Client>,
    ui: &mpsc::Sender<FromDaemon>,
    id: &str,
    last: Seq,
) -> Result<(), String> {
    let info = client
        .call::<m::SessionGet>(m::SessionRef {
            session: id.to_owned(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let _ = ui.send(FromDaemon::Attached(info.clone())).await;
    let mut from = last.next();
    if last == Seq(0) && info.last_seq.0 > 2 * TAIL {
        from = Seq(info.last_seq.0 - TAIL);
        let _ = ui.send(FromDaemon::HistoryPending).await;
        tokio::spawn(fetch_history(
            client.clone(),
            ui.clone(),
            info.id.to_string(),
            from,
        ));
    }
    client
        .call::<m::SessionSubscribe>(m::SubscribeParams {
            session: info.id.to_string(),
            from_seq: from,
            // The client renders events; the agent's raw lines would only double the bytes.
            include_raw: false,
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn command(
    client: &Client,
    conn: &Connection,
    attached: Option<&str>,
    cmd: Cmd,
) -> Result<Option<Switch>, String> {
    let session = || {
        attached
            .map(str::to_owned)
            .ok_or_else(|| "no session attached".to_owned())
    };
    let r = |e: harvest_client::ClientError| e.to_string();
    match cmd {
        Cmd::Send(text) => {
            client
                .call::<m::SessionSend>(m::SendParams {
                    session: session()?,
                    text,
                    env: conn.env.clone(),
                })
                .await
                .map_err(r)?;
        }
        Cmd::Cancel => {
            client
                .call::<m::SessionCancel>(m::SessionRef {
                    session: session()?,
                })
                .await
                .map_err(r)?;
        }
        Cmd::Resume => {
            client
                .call::<m::SessionResume>(m::ResumeParams {
                    session: session()?,
                    env: conn.env.clone(),
                })
                .await
                .map_err(r)?;
        }
        Cmd::Attach(id) => return Ok(Some(Switch(id))),
        Cmd::Approve {
            request_id,
            decision,
            input,
            message,
        } => {
            client
                .call::<m::SessionApprove>(m::ApproveParams {
                    session: session()?,
                    request_id,
                    decision,
                    message,
                    input,
                })
                .await
                .map_err(r)?;
        }
        Cmd::SendNow => {
            client
                .call::<m::SessionSendNow>(m::WithdrawParams {
                    session: session()?,
                    message: None,
                })
                .await
                .map_err(r)?;
        }
        Cmd::ListSessions
        | Cmd::ReadOutput { .. }
        | Cmd::Withdraw(_)
        | Cmd::Diff
        | Cmd::Apply(_)
        | Cmd::Pr => {}
        Cmd::Remove(id) => {
            client
                .call::<m::SessionRemove>(m::SessionRef { session: id })
                .await
                .map_err(r)?;
        }
        Cmd::Create {
            workspace,
            prompt,
            trust,
        } => {
            let folder = folder_of(&workspace);
            let trusted_mcp = match trust {
                McpTrust::Ask => {
                    match harvest_client::mcp_trust::lookup(&conn.paths.data_dir, &folder) {
                        harvest_client::mcp_trust::Trust::Trusted(name) => Some(name),
                        _ => None,
                    }
                }
                McpTrust::Trust(name) => {
                    harvest_client::mcp_trust::remember(&conn.paths.data_dir, &folder, &name)
                        .map_err(|e| format!("cannot remember the trust: {e}"))?;
                    Some(name)
                }
                McpTrust::Decline => None,
            };
            let info = client
                .call::<m::SessionCreate>(CreateParams {
                    workspace: Some(workspace),
                    prompt: Some(prompt),
                    env: conn.env.clone(),
                    trusted_mcp,
                    ..Default::default()
                })
                .await
                .map_err(r)?;
            return Ok(Some(Switch(info.id.to_string())));
        }
    }
    Ok(None)
}

/// The review view's calls: the diff, an apply to the user's checkout (checked by
/// `harvest-review`, as `harvest apply` does), a pull request with this client's token.
async fn review(
    client: &Client,
    conn: &Connection,
    attached: Option<&str>,
    cmd: Cmd,
) -> FromDaemon {
    let Some(session) = attached.map(str::to_owned) else {
        return FromDaemon::ReviewDone(false, "no session attached".into());
    };
    let diff = |session: String| async move {
        client
            .call::<m::SessionDiff>(m::DiffParams {
                session,
                stat: false,
            })
            .await
            .map_err(|e| e.to_string())
    };
    match cmd {
        Cmd::Diff => FromDaemon::Diff(diff(session).await.map(Box::new)),
        Cmd::Apply(d) => {
            let applied =
                tokio::task::spawn_blocking(move || harvest_review::apply(&d, None)).await;
            use harvest_review::{Applied, ApplyError};
            match applied {
                Ok(Ok(Applied::Clean { root, files })) => FromDaemon::ReviewDone(
                    true,
                    format!(
                        "applied {files} file(s) to {}; commit when ready",
                        root.display()
                    ),
                ),
                Ok(Ok(Applied::Merged { root, files })) => FromDaemon::ReviewDone(
                    true,
                    format!(
                        "applied {files} file(s) to {} with a 3-way merge (staged)",
                        root.display()
                    ),
                ),
                Ok(Ok(Applied::InPlace)) => FromDaemon::ReviewDone(
                    true,
                    "this session works in your folder itself: its changes are there already"
                        .into(),
                ),
                Ok(Ok(Applied::Nothing)) => FromDaemon::ReviewDone(true, "nothing to apply".into()),
                Ok(Ok(Applied::AlreadyThere { root })) => FromDaemon::ReviewDone(
                    true,
                    format!(
                        "{} already holds these changes (applied before): nothing written",
                        root.display()
                    ),
                ),
                Ok(Err(ApplyError::Conflict { files, .. })) => FromDaemon::ReviewDone(
                    false,
                    format!(
                        "nothing was written: your changes conflict in {}; commit or stash them and apply again",
                        files.join(", ")
                    ),
                ),
                Ok(Err(ApplyError::NoTarget)) => FromDaemon::ReviewDone(
                    false,
                    format!(
                        "cloned from a URL: apply it from a shell with `harvest apply {session} --into DIR`"
                    ),
                ),
                Ok(Err(e)) => FromDaemon::ReviewDone(false, e.to_string()),
                Err(e) => FromDaemon::ReviewDone(false, e.to_string()),
            }
        }
        Cmd::Pr => {
            let params = match harvest_review::pr_params(
                &session,
                conn.github_api_url.clone(),
                (false, None, None),
            ) {
                Ok(p) => p,
                Err(e) => return FromDaemon::ReviewDone(false, e),
            };
            let opened = client.call::<m::SessionPr>(params).await;
            match opened {
                Ok(pr) if pr.existing => {
                    FromDaemon::ReviewDone(true, format!("open already: #{} {}", pr.number, pr.url))
                }
                Ok(pr) => FromDaemon::ReviewDone(
                    true,
                    format!("opened pull request #{}: {}", pr.number, pr.url),
                ),
                Err(e) => FromDaemon::ReviewDone(false, e.to_string()),
            }
        }
        _ => FromDaemon::ReviewDone(false, "not a review command".into()),
    }
}

/// The folder a new session's workspace names, resolved as the command line resolves it
/// (the trust is kept by that path).
fn folder_of(workspace: &str) -> PathBuf {
    let path = PathBuf::from(workspace);
    std::fs::canonicalize(&path).unwrap_or(path)
}
