//! `session/fork`: a new session that starts as a copy of another (its workspace, its
//! agent's HOME with the conversation, and its history), and then goes its own way: its
//! own turns, its own branch, its workspace where its conversation expects it.

use super::{Making, discard, info, new_id, start, store_call};
use crate::context::Daemon;
use crate::policy;
use crate::session::SessionSpec;
use harvest_protocol::EventBody;
use harvest_protocol::methods::SessionInfo;
use harvest_protocol::rpc::{RpcError, codes};
use harvest_sandbox::WorkspaceSource;
use harvest_store::{NewEvent, NewSession};
use std::sync::Arc;

/// `session/fork`: a new session with a copy of the workspace and of the agent's HOME (its
/// transcripts), whose first agent resumes the conversation with `--fork-session`.
pub async fn fork(
    daemon: &Arc<Daemon>,
    p: harvest_protocol::methods::ForkParams,
) -> Result<SessionInfo, RpcError> {
    let (source, _) = daemon.sessions.resolve(&p.session)?;
    let src = {
        let id = source.clone();
        store_call(daemon, move |store| store.session(&id)).await?
    }
    .ok_or_else(|| RpcError::new(codes::SESSION_NOT_FOUND, format!("no session {source}")))?;
    let provider = daemon.providers.get(&src.info.sandbox)?;
    let src_spec: SessionSpec = serde_json::from_value(src.spec.clone())
        .map_err(|e| RpcError::new(codes::INTERNAL, format!("session {source}: {e}")))?;
    let Some(conversation) = src.info.agent_session_id.clone() else {
        return Err(RpcError::new(
            codes::SESSION_STATE,
            format!("session {source} has no conversation to fork yet; send it a message first"),
        ));
    };
    let secrets = policy::forwarded(daemon, p.env);
    policy::require_credentials(&secrets)?;
    let claude = if provider.brings_agent() {
        None
    } else {
        Some(policy::find_claude(daemon)?)
    };
    provider
        .check()
        .await
        .map_err(|e| RpcError::new(codes::SANDBOX_UNAVAILABLE, e.to_string()))?;

    let id = new_id(daemon);
    // Where the provider will put the copy; the row exists before the copy does.
    let workspace = daemon.paths.workspaces_dir().join(id.as_str());
    let mut spec = SessionSpec {
        workspace: workspace.clone(),
        repo: src_spec.repo.clone(),
        owns_workspace: true,
        source: Some(WorkspaceSource::Owned {
            path: workspace.clone(),
        }),
        model: src_spec.model.clone(),
        agent_session_id: uuid::Uuid::new_v4().to_string(),
        claude,
        permissions: src_spec.permissions,
        fork_from: Some(conversation),
        network: src_spec.network.clone(),
        ports: src_spec.ports.clone(),
        image: src_spec.image.clone(),
        // The copy carries the source's repository; the fork works on a branch of its own
        // (made from where the source is, in `start`), measured from the source's base.
        branch: src_spec
            .branch
            .as_ref()
            .map(|_| crate::review::branch_name(id.as_str(), src.info.first_prompt.as_deref())),
        base: None,
        pr_url: None,
        user_config: src_spec.user_config,
        trusted_mcp: src_spec.trusted_mcp.clone(),
        secrets_inside: src_spec.secrets_inside.clone(),
        // Where the source's agent saw its workspace: the conversation's paths hold there.
        workspace_at: Some(
            src_spec
                .workspace_at
                .clone()
                .unwrap_or_else(|| src_spec.workspace.clone()),
        ),
    };
    let new = NewSession {
        id: id.clone(),
        name: p
            .name
            .unwrap_or_else(|| format!("{} (fork)", src.info.name)),
        sandbox: src.info.sandbox.clone(),
        workspace: workspace.display().to_string(),
        spec: serde_json::to_value(&spec).unwrap_or_default(),
    };
    store_call(daemon, move |store| store.create_session(&new)).await?;
    // The fork shows the history it continues, then where it forked.
    let copied = {
        let (from, to) = (source.clone(), id.clone());
        store_call(daemon, move |store| store.copy_history(&from, &to)).await?
    };
    let _ = {
        let (to, message) = (
            id.clone(),
            format!(
                "forked from session {source} here (its {copied} events above are its history); what follows is this fork's own"
            ),
        );
        store_call(daemon, move |store| {
            store.append(
                &to,
                vec![NewEvent::new(EventBody::Sandbox { message })],
                None,
            )
        })
        .await
    };
    // The copy treats the source's trees as hostile (its agent may still be running and
    // swapping links): the provider copies inside a jail that sees only the two trees.
    let from = policy::sandbox_spec(daemon, source.as_str(), &src_spec);
    match provider.fork(&from, id.as_str()).await {
        Ok(made) => spec.source = Some(made),
        Err(e) => {
            discard(daemon, &provider, &id).await;
            return Err(RpcError::new(codes::SANDBOX_UNAVAILABLE, e.to_string()));
        }
    }
    if let Err(e) = start(
        daemon,
        provider.clone(),
        &id,
        &spec,
        &secrets,
        None,
        Making {
            base: src_spec.base.clone(),
            ..Making::default()
        },
    )
    .await
    {
        discard(daemon, &provider, &id).await;
        return Err(e);
    }
    let message = format!("forked from session {source}: a copy of its workspace and conversation");
    let _ = {
        let id = id.clone();
        store_call(daemon, move |store| {
            store.append(
                &id,
                vec![NewEvent::new(EventBody::Sandbox { message })],
                None,
            )
        })
        .await
    };
    info(daemon, &id).await
}
