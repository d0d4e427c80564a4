//! `ls`, `logs`, `send`, `cancel`, `stop`, `rm`.

use super::{connect, forwarded_env, load_config};
use crate::render::{Renderer, age, tokens};
use anyhow::Result;
use harvest_config::Paths;
use harvest_protocol::methods::{self as m, SessionRef};
use harvest_protocol::{EventBody, Seq, SessionState};
use std::process::ExitCode;

fn safe(s: &str) -> String {
    harvest_termsafe::text(s, harvest_termsafe::Sgr::Drop).into_owned()
}

pub async fn ls(paths: &Paths, json: bool) -> Result<ExitCode> {
    let client = connect(paths).await?;
    let list = client.call::<m::SessionList>(m::Empty {}).await?;
    if json {
        for s in &list.sessions {
            println!("{}", crate::render::json_line(&serde_json::to_string(s)?));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if list.sessions.is_empty() {
        println!("no sessions; start one with `harvest new --workspace DIR \"prompt\"`");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<9} {:<28} {:<12} {:<8} {:>8} {:>9} {:>6} {:>7}  WORKSPACE",
        "ID", "NAME", "STATE", "SANDBOX", "COST", "TOKENS", "AGE", "ACTIVE"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    for s in &list.sessions {
        println!(
            "{:<9} {:<28} {:<12} {:<8} {:>8} {:>9} {:>6} {:>7}  {}",
            s.id,
            truncate(&safe(&s.name), 28),
            s.state.as_str(),
            s.sandbox,
            format!("${:.3}", s.cost_usd),
            tokens(s.input_tokens + s.output_tokens),
            age(s.created_at, now),
            age(s.updated_at, now),
            safe(&s.workspace),
        );
        if let Some(why) = &s.stalled {
            println!("          ! {}", safe(why));
        }
        if let Some(name) = &s.sandbox_name {
            match &s.sandbox_state {
                Some(state) => {
                    println!("          ▣ {} {} ({})", s.sandbox, safe(name), safe(state))
                }
                None => println!("          ▣ {} {}", s.sandbox, safe(name)),
            }
        }
        for p in &s.previews {
            println!("          ⇢ port {} at {}", p.port, safe(&p.url));
        }
        if let Some(branch) = &s.branch {
            match &s.pr_url {
                Some(pr) => println!("          ⎇ {} · {}", safe(branch), safe(pr)),
                None => println!("          ⎇ {}", safe(branch)),
            }
        }
        if !s.secrets_inside.is_empty() {
            println!(
                "          ⚿ secrets inside the sandbox: {}",
                safe(&s.secrets_inside.join(", "))
            );
        }
        if let Some(p) = &s.first_prompt {
            println!(
                "          › {}",
                truncate(&safe(p.lines().next().unwrap_or("")), 70)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn logs(
    paths: &Paths,
    session: &str,
    json: bool,
    follow: bool,
    from_seq: u64,
) -> Result<ExitCode> {
    let mut renderer = Renderer::new(json);
    let mut next = Seq(from_seq);
    let mut lost_since: Option<std::time::Instant> = None;
    loop {
        // Following survives the daemon: when it dies, connect again (starting it, as any
        // command does) and go on from the last event printed, so nothing is missed or
        // printed twice. Only a daemon that cannot be brought back ends it, with an error.
        let mut client = match connect(paths).await {
            Ok(c) => c,
            Err(e) if follow => {
                let since = *lost_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > RECONNECT_FOR {
                    return Err(e.context(format!(
                        "lost the daemon while following session {session} and could not bring it back for {}s",
                        RECONNECT_FOR.as_secs()
                    )));
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let sub = client
            .call::<m::SessionSubscribe>(m::SubscribeParams {
                session: session.to_owned(),
                from_seq: next,
                include_raw: true,
            })
            .await?;
        lost_since = None;
        if !follow && sub.last_seq < next {
            return Ok(ExitCode::SUCCESS);
        }
        while let Some(note) = client.next_notification().await {
            let Some(event) = renderer.notification(&note) else {
                continue;
            };
            next = event.seq.next();
            if !follow && event.seq >= sub.last_seq {
                return Ok(ExitCode::SUCCESS);
            }
            if follow
                && matches!(&event.body, EventBody::Status { state: SessionState::Exited, reason: Some(r) } if r == "removed")
            {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if !follow {
            anyhow::bail!(
                "the daemon went away while printing session {session}; run the command again"
            );
        }
        if !json {
            eprintln!("(lost the daemon; reconnecting from event {})", next.0);
        }
        lost_since.get_or_insert_with(std::time::Instant::now);
    }
}

/// How long `logs --follow` keeps trying to bring a lost daemon back.
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn send(paths: &Paths, session: &str, text: String) -> Result<ExitCode> {
    let client = connect(paths).await?;
    let env = forwarded_env(&load_config(paths)?);
    let sent = client
        .call::<m::SessionSend>(m::SendParams {
            session: session.to_owned(),
            text,
            env,
        })
        .await?;
    if let Some(id) = sent.queued {
        eprintln!(
            "queued behind the running turn (message {id}): it goes to the agent when the turn ends; `harvest withdraw {session}` takes it back until then"
        );
    }
    // `harvest` with no arguments opens the session last sent to.
    if let Ok(info) = client
        .call::<m::SessionGet>(SessionRef {
            session: session.to_owned(),
        })
        .await
    {
        paths.remember_session(info.id.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn withdraw(paths: &Paths, session: &str, message: Option<String>) -> Result<ExitCode> {
    let client = connect(paths).await?;
    let taken = client
        .call::<m::SessionWithdraw>(m::WithdrawParams {
            session: session.to_owned(),
            message,
        })
        .await?;
    if taken.texts.is_empty() {
        eprintln!("nothing was queued");
    }
    for text in &taken.texts {
        crate::render::print_agent_text(&format!("{text}\n"));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn send_now(paths: &Paths, session: &str, message: Option<String>) -> Result<ExitCode> {
    let client = connect(paths).await?;
    let sent = client
        .call::<m::SessionSendNow>(m::WithdrawParams {
            session: session.to_owned(),
            message,
        })
        .await?;
    if sent.sent.is_empty() {
        eprintln!("nothing was queued");
    } else {
        eprintln!(
            "sent into the running turn ({}): the agent reads it at its next tool call",
            sent.sent.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit codes of `harvest wait`.
const WAIT_IDLE: u8 = 0;
const WAIT_ENDED: u8 = 1;
const WAIT_NEEDS_INPUT: u8 = 3;

pub async fn wait(paths: &Paths, session: &str) -> Result<ExitCode> {
    let mut client = connect(paths).await?;
    let info = client
        .call::<m::SessionGet>(SessionRef {
            session: session.to_owned(),
        })
        .await?;
    // Subscribe first, then decide from the state as of that moment, so a change between
    // the two is not missed.
    let sub = client
        .call::<m::SessionSubscribe>(m::SubscribeParams {
            session: info.id.to_string(),
            from_seq: info.last_seq.next(),
            include_raw: false,
        })
        .await?;
    let _ = sub;
    if let Some(code) = wait_code(info.state) {
        return Ok(ExitCode::from(code));
    }
    while let Some(note) = client.next_notification().await {
        if note.params["event"]["type"] == "status"
            && let Some(state) = note.params["event"]["state"]
                .as_str()
                .and_then(SessionState::parse)
            && let Some(code) = wait_code(state)
        {
            return Ok(ExitCode::from(code));
        }
    }
    Ok(ExitCode::from(WAIT_ENDED))
}

fn wait_code(state: SessionState) -> Option<u8> {
    match state {
        SessionState::Idle => Some(WAIT_IDLE),
        SessionState::NeedsInput => Some(WAIT_NEEDS_INPUT),
        SessionState::Exited | SessionState::Failed | SessionState::Interrupted => Some(WAIT_ENDED),
        SessionState::Creating
        | SessionState::Queued
        | SessionState::Running
        | SessionState::Cancelling => None,
    }
}

pub async fn approve(
    paths: &Paths,
    session: &str,
    request: Option<&str>,
    decision: &str,
    message: Option<String>,
    command: Option<String>,
) -> Result<ExitCode> {
    let client = connect(paths).await?;
    let events = client
        .call::<m::SessionEvents>(m::EventsParams {
            session: session.to_owned(),
            from_seq: Seq(1),
            to_seq: None,
            include_raw: false,
        })
        .await?
        .events;
    // The requests still waiting, oldest first, with what each asked to run.
    let mut waiting: Vec<(String, String, serde_json::Value)> = Vec::new();
    for e in &events {
        match &e.body {
            EventBody::PermissionRequest {
                request_id,
                tool,
                input,
                ..
            } => waiting.push((request_id.clone(), tool.clone(), input.clone())),
            EventBody::PermissionResolved { request_id, .. } => {
                waiting.retain(|(id, _, _)| id != request_id)
            }
            _ => {}
        }
    }
    let request = match (request, waiting.as_slice()) {
        (Some(r), _) => r.to_owned(),
        (None, [(id, _, _)]) => id.clone(),
        (None, []) => anyhow::bail!("no permission request waits in session {session}"),
        (None, several) => anyhow::bail!(
            "{} permission requests wait in session {session}; name one: {}",
            several.len(),
            several
                .iter()
                .map(|(id, tool, _)| format!("{id} ({tool})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    // An edited command replaces the requested one; the rest of the input is kept.
    let input = command.map(|cmd| {
        let mut requested = waiting
            .iter()
            .find(|(id, _, _)| *id == request)
            .map(|(_, _, input)| input.clone())
            .unwrap_or_else(|| serde_json::json!({}));
        requested["command"] = serde_json::Value::String(cmd);
        requested
    });
    client
        .call::<m::SessionApprove>(m::ApproveParams {
            session: session.to_owned(),
            request_id: request,
            decision: decision.to_owned(),
            message,
            input,
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn fork(paths: &Paths, session: &str, name: Option<String>) -> Result<ExitCode> {
    let client = connect(paths).await?;
    let env = forwarded_env(&load_config(paths)?);
    let info = client
        .call::<m::SessionFork>(m::ForkParams {
            session: session.to_owned(),
            name,
            env,
        })
        .await?;
    // The id alone on stdout, for scripts; what it is, for a person.
    println!("{}", info.id);
    eprintln!(
        "forked {session} as {} ({}): a copy of its workspace and conversation, its history shown{}; `harvest attach {}` to go on there",
        info.id,
        safe(&info.name),
        info.branch
            .as_deref()
            .map(|b| format!(", on its own branch {}", safe(b)))
            .unwrap_or_default(),
        info.id
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn rename(paths: &Paths, session: &str, name: String) -> Result<ExitCode> {
    let client = connect(paths).await?;
    let info = client
        .call::<m::SessionRename>(m::RenameParams {
            session: session.to_owned(),
            name,
        })
        .await?;
    println!("{} {}", info.id, info.name);
    Ok(ExitCode::SUCCESS)
}

pub async fn cat(paths: &Paths, session: &str, path: String) -> Result<ExitCode> {
    let client = connect(paths).await?;
    let file = client
        .call::<m::SessionReadFile>(m::ReadFileParams {
            session: session.to_owned(),
            path,
            limit: None,
        })
        .await?;
    crate::render::print_agent_text(&file.text);
    if file.truncated {
        eprintln!(
            "harvest: the file is longer than {} bytes; only its start was printed",
            m::READ_FILE_MAX
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn resume(paths: &Paths, session: &str) -> Result<ExitCode> {
    let client = connect(paths).await?;
    let env = forwarded_env(&load_config(paths)?);
    client
        .call::<m::SessionResume>(m::ResumeParams {
            session: session.to_owned(),
            env,
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(paths: &Paths, session: &str) -> Result<ExitCode> {
    simple::<m::SessionCancel>(paths, session).await
}

pub async fn stop(paths: &Paths, session: &str) -> Result<ExitCode> {
    simple::<m::SessionStop>(paths, session).await
}

pub async fn rm(paths: &Paths, session: &str) -> Result<ExitCode> {
    simple::<m::SessionRemove>(paths, session).await
}

async fn simple<M>(paths: &Paths, session: &str) -> Result<ExitCode>
where
    M: m::Method<Params = SessionRef, Result = m::Empty>,
{
    let client = connect(paths).await?;
    client
        .call::<M>(SessionRef {
            session: session.to_owned(),
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
