//! Schema and migrations, versioned by `PRAGMA user_version`.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    state            TEXT NOT NULL,
    sandbox          TEXT NOT NULL,
    workspace        TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    cost_usd         REAL NOT NULL DEFAULT 0,
    input_tokens     INTEGER NOT NULL DEFAULT 0,
    output_tokens    INTEGER NOT NULL DEFAULT 0,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    -- byte offset of the agent log ingested so far, committed with the events
    log_offset       INTEGER NOT NULL DEFAULT 0,
    agent_session_id TEXT,
    -- creation parameters that are not secret (model, repo, ...), as JSON
    spec             TEXT NOT NULL DEFAULT '{}',
    -- provider-specific facts needed to re-adopt the sandbox (pids, paths), as JSON
    sandbox_state    TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE events (
    session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    type    TEXT NOT NULL,
    -- the event as sent to clients (seq, ts, session, type, fields), without `raw`
    json    TEXT NOT NULL,
    -- the agent line it came from, spliced in as `raw` for clients that want it
    raw     TEXT,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
"#,
    // The ingestion checkpoint, committed with the events it covers: the agent log id and
    // offset, the parser's state and the turn's. Replaces log_offset (one byte space for
    // every process of a session, which a provider with a log per command cannot honour).
    r#"
ALTER TABLE sessions ADD COLUMN ingest TEXT NOT NULL DEFAULT '{}';
"#,
    // Previews kept as events are appended, so listing sessions never scans events.
    r#"
ALTER TABLE sessions ADD COLUMN last_line TEXT;
ALTER TABLE sessions ADD COLUMN first_prompt TEXT;
UPDATE sessions SET
    last_line = (SELECT substr(COALESCE(json_extract(e.json, '$.text'), json_extract(e.json, '$.message')), 1, 200)
                 FROM events e WHERE e.session = sessions.id
                 AND e.type IN ('assistant_text', 'user_message', 'error') ORDER BY e.seq DESC LIMIT 1),
    first_prompt = (SELECT substr(json_extract(e.json, '$.text'), 1, 200)
                 FROM events e WHERE e.session = sessions.id
                 AND e.type = 'user_message' ORDER BY e.seq LIMIT 1);
"#,
    // Preview URLs (`preview` events), newest per port, as a JSON array.
    r#"
ALTER TABLE sessions ADD COLUMN previews TEXT NOT NULL DEFAULT '[]';
"#,
];

pub(crate) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    Ok(())
}
