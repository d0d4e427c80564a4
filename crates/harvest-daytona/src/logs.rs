//! The agent's output: the session command's log, followed over the toolbox's WebSocket.
//!
//! The stream replays the log from byte 0 on every connection, so the reader counts the
//! stdout bytes it already has (its offset) and skips them: a dropped connection or a
//! restarted daemon goes on exactly where it stopped. The end is known only from the
//! stream: any close is taken as the end (as the SDKs do) once the command has an exit
//! code, and then the whole log is fetched once more, so a close that came early loses
//! nothing; a close while the command still runs is a dropped connection.

use crate::demux::{Demuxer, split_all};
use crate::error::DaytonaError;
use crate::toolbox::Toolbox;
use futures_util::StreamExt;
use harvest_sandbox::{AgentLog, LogRead, Result, SandboxError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Most bytes handed to the daemon per read.
const CHUNK: usize = 64 * 1024;
/// What is kept of stderr, to explain an unexpected exit.
const STDERR_TAIL: usize = 8 * 1024;

/// The command a log belongs to.
#[derive(Clone)]
pub struct CommandRef {
    pub toolbox: Toolbox,
    pub session: String,
    pub cmd: String,
    /// Whether a turn is open (see `keepalive`).
    pub turn: crate::keepalive::Shared,
}

pub struct WsLog {
    pub command: CommandRef,
    ws: Option<Ws>,
    demux: Demuxer,
    /// Stdout bytes of this connection's replay still to skip.
    skip: u64,
    offset: u64,
    pending: Vec<u8>,
    ended: bool,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl WsLog {
    pub fn new(command: CommandRef, offset: u64, stderr: Arc<Mutex<Vec<u8>>>) -> WsLog {
        WsLog {
            command,
            ws: None,
            demux: Demuxer::default(),
            skip: 0,
            offset,
            pending: Vec::new(),
            ended: false,
            stderr,
        }
    }

    async fn connect(&mut self) -> Result<()> {
        // No backoff here: a failed read ends this log, and the daemon opens a new one
        // on its own backoff (one place decides how long an outage is waited out).
        let c = &self.command;
        let mut url = c
            .toolbox
            .ws_url(&["process", "session", &c.session, "command", &c.cmd, "logs"]);
        url.query_pairs_mut().append_pair("follow", "true");
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| SandboxError::Disconnected(e.to_string()))?;
        for (k, v) in c.toolbox.http.headers() {
            if let Ok(v) = HeaderValue::from_str(&v) {
                req.headers_mut().insert(k, v);
            }
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => {
                self.ws = Some(ws);
                self.demux = Demuxer::default();
                self.skip = self.offset;
                Ok(())
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp))
                if resp.status().as_u16() == 404 =>
            {
                // The command is gone: its session was deleted, or the sandbox restarted.
                self.ended = true;
                Ok(())
            }
            Err(e) => Err(SandboxError::Disconnected(format!("log stream: {e}"))),
        }
    }

    fn take_stdout(&mut self, mut bytes: Vec<u8>) {
        let skip = usize::try_from(self.skip)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        self.skip -= skip as u64;
        bytes.drain(..skip);
        self.pending.extend(bytes);
    }

    fn take_stderr(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Ok(mut tail) = self.stderr.lock() {
            tail.extend_from_slice(bytes);
            let over = tail.len().saturating_sub(STDERR_TAIL);
            tail.drain(..over);
        }
    }

    /// The stream closed: the end if the command has exited (the rest of the log fetched
    /// whole), a dropped connection if it still runs.
    async fn closed(&mut self) -> Result<()> {
        self.ws = None;
        let rest = self.demux.finish();
        self.take_stdout(rest.stdout);
        self.take_stderr(&rest.stderr);
        let c = self.command.clone();
        let status = c.toolbox.command(&c.session, &c.cmd).await;
        match status {
            Ok(Some(cmd)) if cmd.exit_code.is_some() => {
                let whole = c
                    .toolbox
                    .logs(&c.session, &c.cmd)
                    .await
                    .map_err(SandboxError::from)?;
                let split = split_all(&whole);
                let have = self.offset + self.pending.len() as u64;
                let have = usize::try_from(have).unwrap_or(usize::MAX);
                if split.stdout.len() > have {
                    self.pending.extend_from_slice(&split.stdout[have..]);
                }
                self.ended = true;
                Ok(())
            }
            Ok(None) => {
                self.ended = true;
                Ok(())
            }
            // Stopped (a toolbox call to a sandbox that is not started is a 400): its
            // processes are gone, and so is the rest of this log.
            Err(DaytonaError::BadRequest(m)) if m.contains("started") => {
                self.ended = true;
                Ok(())
            }
            Ok(Some(_)) => Err(SandboxError::Disconnected(
                "the log stream closed while the agent runs".into(),
            )),
            Err(e) => Err(SandboxError::Disconnected(e.to_string())),
        }
    }
}

#[async_trait::async_trait]
impl AgentLog for WsLog {
    async fn next(&mut self, idle_poll: Duration) -> Result<LogRead> {
        loop {
            if !self.pending.is_empty() {
                let n = CHUNK.min(self.pending.len());
                let chunk: Vec<u8> = self.pending.drain(..n).collect();
                self.offset += chunk.len() as u64;
                self.command.turn.saw(&chunk);
                return Ok(LogRead::Data(chunk));
            }
            if self.ended {
                return Ok(LogRead::End);
            }
            let Some(ws) = self.ws.as_mut() else {
                self.connect().await?;
                continue;
            };
            let frame = match tokio::time::timeout(idle_poll, ws.next()).await {
                Err(_) => return Ok(LogRead::Idle),
                Ok(f) => f,
            };
            match frame {
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    let split = self.demux.push(&m.into_data());
                    self.take_stdout(split.stdout);
                    self.take_stderr(&split.stderr);
                }
                Some(Ok(Message::Close(_))) | None => self.closed().await?,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::info!(error = %e, "daytona log stream dropped");
                    self.ws = None;
                    return Err(SandboxError::Disconnected(format!("log stream: {e}")));
                }
            }
        }
    }

    fn offset(&self) -> u64 {
        self.offset
    }
}
