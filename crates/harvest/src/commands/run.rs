//! `harvest run` and `harvest new`.

use super::{connect, forwarded_env, load_config};
use crate::cli::NewArgs;
use crate::render::Renderer;
use anyhow::{Context, Result};
use harvest_client::Client;
use harvest_config::Paths;
use harvest_protocol::methods::{self as m, CreateParams, SessionInfo};
use harvest_protocol::{Event, EventBody, Secret, Seq, SessionState};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

pub async fn new(paths: &Paths, args: NewArgs) -> Result<ExitCode> {
    let mut client = connect(paths).await?;
    let env = forwarded_env(&load_config(paths)?);
    let info = create(&mut client, args, env).await?;
    paths.remember_session(info.id.as_str());
    println!("{}", info.id);
    Ok(ExitCode::SUCCESS)
}

/// Create a session and return its id (for `new` that then attaches).
pub async fn create_quiet(paths: &Paths, args: NewArgs) -> Result<String> {
    let mut client = connect(paths).await?;
    let env = forwarded_env(&load_config(paths)?);
    Ok(create(&mut client, args, env).await?.id.to_string())
}

pub async fn run(paths: &Paths, args: NewArgs, json: bool, pr: bool) -> Result<ExitCode> {
    let env = forwarded_env(&load_config(paths)?);
    // Before anything is made: a --pr run without a token would do the work for nothing.
    if pr {
        super::review::forge_token()?;
    }
    let mut client = connect(paths).await?;
    let info = create(&mut client, args, env).await?;
    let code = run_session(&mut client, &info, json).await?;
    if !pr || code != ExitCode::SUCCESS {
        return Ok(code);
    }
    let options = super::review::PrOptions {
        draft: false,
        base: None,
        title: None,
    };
    let opened = super::review::pull_request(paths, &client, info.id.as_str(), options).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"type": "pr", "url": opened.url, "number": opened.number, "branch": opened.branch})
        );
    } else {
        super::review::print_pr(&opened);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn create(
    client: &mut Client,
    args: NewArgs,
    env: BTreeMap<String, Secret>,
) -> Result<SessionInfo> {
    // While the sandbox is made, its long steps (a large upload, a clone) are told here.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shower = client.take_notifications().map(|mut notes| {
        tokio::spawn(async move {
            let mut stopped = stopped;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    n = notes.recv() => match n {
                        Some(n) if n.method == m::NOTIFY_PROGRESS => {
                            if let Ok(p) = serde_json::from_value::<m::ProgressNotification>(n.params) {
                                eprintln!("· {}", harvest_review::shown(&p.message));
                            }
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
            notes
        })
    });
    let made = create_call(client, args, env).await;
    let _ = stop.send(());
    if let Some(task) = shower
        && let Ok(notes) = task.await
    {
        client.restore_notifications(notes);
    }
    made
}

async fn create_call(
    client: &Client,
    args: NewArgs,
    env: BTreeMap<String, Secret>,
) -> Result<SessionInfo> {
    let (workspace, repo) = match (args.in_place, &args.repo) {
        (true, Some(r)) if std::path::Path::new(r).is_dir() => (Some(PathBuf::from(r)), None),
        (true, Some(r)) => anyhow::bail!(
            "--in-place works in a folder of this machine; {r} is not one (drop --in-place to \
             clone it)"
        ),
        // Neither: the current folder, as `claude` works where it is started (the daemon
        // still refuses HOME, `/` and Harvest's own folders).
        (_, None) if args.workspace.is_none() => (
            Some(std::env::current_dir().context("the current folder")?),
            None,
        ),
        _ => (args.workspace.clone(), args.repo.clone()),
    };
    let workspace = match &workspace {
        Some(w) => Some(
            std::fs::canonicalize(w)
                .with_context(|| format!("workspace {}", w.display()))?
                .display()
                .to_string(),
        ),
        None => None,
    };
    let repo = match &repo {
        // A local path is cloned by the daemon, which may not share our cwd.
        Some(r) if std::path::Path::new(r).exists() => Some(
            std::fs::canonicalize(r)
                .with_context(|| format!("repository {r}"))?
                .display()
                .to_string(),
        ),
        other => other.clone(),
    };
    // The project's `.mcp.json`, if it has one, is trusted here (asked once) or not.
    let folder = workspace
        .as_deref()
        .or(repo.as_deref().filter(|r| std::path::Path::new(r).is_dir()));
    let trusted_mcp = super::mcp_trust::decide(
        &harvest_config::Paths::from_env()?,
        folder.map(std::path::Path::new),
        args.trust_project_mcp,
    )?;
    Ok(client
        .call::<m::SessionCreate>(CreateParams {
            workspace,
            repo,
            prompt: Some(args.prompt),
            name: args.name,
            sandbox: args.sandbox,
            network: args.network,
            permissions: args.permissions,
            model: args.model,
            ports: args.ports,
            image: args.image,
            user_config: args.no_user_config.then_some(false),
            trusted_mcp,
            setup: args.no_setup.then_some(false),
            env,
        })
        .await?)
}

/// Stream a session's first turn until it ends, then stop its agent (the session and its
/// history stay). Ctrl-C cancels the turn; a second Ctrl-C leaves at once.
pub async fn run_session(client: &mut Client, info: &SessionInfo, json: bool) -> Result<ExitCode> {
    client
        .call::<m::SessionSubscribe>(m::SubscribeParams {
            session: info.id.to_string(),
            from_seq: Seq(1),
            include_raw: true,
        })
        .await?;
    let mut renderer = Renderer::new(json);
    let mut interrupts = 0u32;
    let outcome = loop {
        let note = tokio::select! {
            n = client.next_notification() => n,
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if interrupts > 1 {
                    break false;
                }
                eprintln!("\ncancelling the turn (Ctrl-C again to leave now)…");
                let _ = client.call::<m::SessionCancel>(m::SessionRef { session: info.id.to_string() }).await;
                continue;
            }
        };
        let Some(note) = note else {
            eprintln!("harvest: the daemon went away");
            break false;
        };
        let Some(event) = renderer.notification(&note) else {
            continue;
        };
        match ending(&event) {
            Some(ok) => break ok,
            None => continue,
        }
    };
    let _ = client
        .call::<m::SessionStop>(m::SessionRef {
            session: info.id.to_string(),
        })
        .await;
    Ok(if outcome {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Whether an event ends a `run`, and how: `Some(true)` success.
fn ending(event: &Event) -> Option<bool> {
    match &event.body {
        EventBody::TurnResult { is_error, .. } => Some(!is_error),
        EventBody::Status {
            state: SessionState::Failed | SessionState::Exited,
            ..
        } => Some(false),
        _ => None,
    }
}
