//! The sessions table: one row per session, its totals kept in step with its events.

use crate::{Result, Store, StoreError};
use harvest_protocol::methods::SessionInfo;
use harvest_protocol::{EventBody, Seq, SessionId, SessionState};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::sync::PoisonError;

/// A session as created; its state starts as `creating`.
pub struct NewSession {
    pub id: SessionId,
    pub name: String,
    pub sandbox: String,
    pub workspace: String,
    pub spec: serde_json::Value,
}

/// A stored session with the facts the daemon needs beyond [`SessionInfo`].
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub info: SessionInfo,
    /// The ingestion checkpoint last committed with events (`{}` before the first).
    pub ingest: serde_json::Value,
    pub spec: serde_json::Value,
    pub sandbox_state: serde_json::Value,
}

const COLUMNS: &str = "id, name, state, sandbox, workspace, created_at, updated_at, cost_usd,
    input_tokens, output_tokens, last_seq, agent_session_id, ingest, spec, sandbox_state,
    last_line, first_prompt, previews";

/// Previews (`last_line`, `first_prompt`) keep at most this many characters, so a huge
/// prompt never makes `session/list` huge.
pub const PREVIEW_CHARS: usize = 200;

fn preview(text: &str) -> String {
    text.chars().take(PREVIEW_CHARS).collect()
}

impl Store {
    pub fn create_session(&self, s: &NewSession) -> Result<SessionRow> {
        {
            let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            conn.execute(
                "INSERT INTO sessions (id, name, state, sandbox, workspace, created_at, updated_at, spec)
                 VALUES (?1, ?2, 'creating', ?3, ?4, unixepoch(), unixepoch(), ?5)",
                params![s.id.as_str(), s.name, s.sandbox, s.workspace, s.spec.to_string()],
            )?;
        }
        self.session(&s.id)?
            .ok_or_else(|| StoreError::NoSession(s.id.clone()))
    }

    pub fn session(&self, id: &SessionId) -> Result<Option<SessionRow>> {
        let conn = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"),
                [id.as_str()],
                row,
            )
            .optional()?)
    }

    /// All sessions, newest first.
    pub fn sessions(&self) -> Result<Vec<SessionRow>> {
        let conn = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM sessions ORDER BY created_at DESC, rowid DESC"
        ))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Every session's workspace folder (cheap: no per-session lookups).
    pub fn workspaces(&self) -> Result<Vec<String>> {
        let conn = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stmt = conn.prepare_cached("SELECT workspace FROM sessions")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    pub fn set_spec(&self, id: &SessionId, spec: &serde_json::Value) -> Result<()> {
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute(
            "UPDATE sessions SET spec = ?2 WHERE id = ?1",
            params![id.as_str(), spec.to_string()],
        )?;
        Ok(())
    }

    /// Where the session's workspace is, as its sandbox reported it once made.
    pub fn set_workspace(&self, id: &SessionId, workspace: &str) -> Result<()> {
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute(
            "UPDATE sessions SET workspace = ?2 WHERE id = ?1",
            params![id.as_str(), workspace],
        )?;
        Ok(())
    }

    pub fn set_sandbox_state(&self, id: &SessionId, state: &serde_json::Value) -> Result<()> {
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute(
            "UPDATE sessions SET sandbox_state = ?2 WHERE id = ?1",
            params![id.as_str(), state.to_string()],
        )?;
        Ok(())
    }

    pub fn rename(&self, id: &SessionId, name: &str) -> Result<()> {
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let n = conn.execute(
            "UPDATE sessions SET name = ?2, updated_at = unixepoch() WHERE id = ?1",
            params![id.as_str(), name],
        )?;
        if n == 0 {
            return Err(StoreError::NoSession(id.clone()));
        }
        Ok(())
    }

    /// Delete a session and all its events.
    pub fn delete_session(&self, id: &SessionId) -> Result<()> {
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute("DELETE FROM sessions WHERE id = ?1", [id.as_str()])?;
        Ok(())
    }
}

/// Keep the row's totals in step with an event, inside the append transaction.
pub(crate) fn apply_event(conn: &Connection, id: &SessionId, body: &EventBody) -> Result<()> {
    match body {
        EventBody::Status { state, .. } => {
            conn.execute(
                "UPDATE sessions SET state = ?2 WHERE id = ?1",
                params![id.as_str(), state.as_str()],
            )?;
        }
        EventBody::TurnResult {
            cost_usd,
            input_tokens,
            output_tokens,
            ..
        } => {
            conn.execute(
                "UPDATE sessions SET cost_usd = cost_usd + ?2, input_tokens = input_tokens + ?3,
                        output_tokens = output_tokens + ?4 WHERE id = ?1",
                params![id.as_str(), cost_usd, input_tokens, output_tokens],
            )?;
        }
        EventBody::UserMessage { text } => {
            let p = preview(text);
            conn.execute(
                "UPDATE sessions SET last_line = ?2, first_prompt = COALESCE(first_prompt, ?2)
                 WHERE id = ?1",
                params![id.as_str(), p],
            )?;
        }
        EventBody::AssistantText { text } | EventBody::Error { message: text } => {
            conn.execute(
                "UPDATE sessions SET last_line = ?2 WHERE id = ?1",
                params![id.as_str(), preview(text)],
            )?;
        }
        EventBody::Preview { port, url } => {
            // One entry per port, the newest URL (a restarted container may get another).
            conn.execute(
                "UPDATE sessions SET previews = (
                    SELECT json_group_array(json(v)) FROM (
                        SELECT value AS v FROM json_each(sessions.previews)
                        WHERE json_extract(value, '$.port') != ?2
                        UNION ALL SELECT json_object('port', ?2, 'url', ?3)))
                 WHERE id = ?1",
                params![id.as_str(), port, url],
            )?;
        }
        EventBody::AgentInit {
            agent_session_id, ..
        } => {
            conn.execute(
                "UPDATE sessions SET agent_session_id = ?2 WHERE id = ?1",
                params![id.as_str(), agent_session_id],
            )?;
        }
        _ => {}
    }
    Ok(())
}

fn row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let state: String = r.get(2)?;
    let spec: String = r.get(13)?;
    let sandbox_state: String = r.get(14)?;
    let spec_json = serde_json::from_str::<serde_json::Value>(&spec).unwrap_or_default();
    let spec_text = |k: &str| spec_json[k].as_str().map(str::to_owned);
    Ok(SessionRow {
        info: SessionInfo {
            id: SessionId(r.get(0)?),
            name: r.get(1)?,
            state: SessionState::parse(&state).unwrap_or(SessionState::Failed),
            sandbox: r.get(3)?,
            workspace: r.get(4)?,
            created_at: r.get(5)?,
            updated_at: r.get(6)?,
            cost_usd: r.get(7)?,
            input_tokens: r.get(8)?,
            output_tokens: r.get(9)?,
            last_seq: Seq(r.get(10)?),
            agent_session_id: r.get(11)?,
            last_line: r.get(15)?,
            first_prompt: r.get(16)?,
            stalled: None,
            previews: {
                let json: String = r.get(17)?;
                serde_json::from_str(&json).unwrap_or_default()
            },
            sandbox_name: serde_json::from_str::<serde_json::Value>(&sandbox_state)
                .ok()
                .and_then(|v| {
                    // A container's name, or a remote sandbox's id.
                    v["container"]
                        .as_str()
                        .or(v["sandbox"].as_str())
                        .map(str::to_owned)
                }),
            sandbox_state: None,
            branch: spec_text("branch"),
            pr_url: spec_text("pr_url"),
            secrets_inside: spec_json["secrets_inside"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        },
        ingest: serde_json::from_str(&r.get::<_, String>(12)?).unwrap_or_default(),
        spec: spec_json,
        sandbox_state: serde_json::from_str(&sandbox_state).unwrap_or_default(),
    })
}
