//! A FAKE provider, for the conformance suite only (enabled by `HARVEST_TEST_PROVIDERS=
//! fake-remote`, never offered otherwise). It runs agents exactly as the local provider
//! does, but shows the daemon the shape of a remote one (Daytona's session commands):
//!
//! - each command's log starts at byte 0 and is **replayed from the start** on every
//!   open, so the reader must skip what it already has;
//! - bytes arrive in small frames split anywhere (mid-line, mid-UTF-8);
//! - the stream **drops** now and then and must be reopened;
//! - the stream **closes about a second after the command exits**, so the end is known
//!   only from the stream, not from the exit status;
//! - input is a call, and there are **no signals**: interrupt is unsupported, stop
//!   deletes the command (here: kills the jail).
//!
//! If the daemon's ingestion works against this and against the local provider, it does
//! not depend on anything only a local file log gives.

use async_trait::async_trait;
use harvest_agent::AgentCommand;
use harvest_protocol::Secret;
use harvest_sandbox::{
    Adopted, AgentControl, AgentExit, AgentLog, AgentProcess, LocalProvider, LogPosition, LogRead,
    Provider, Result, Sandbox, SandboxError, SandboxSpec,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Bytes per frame: small and odd, so frames split lines and characters.
const FRAME: usize = 61;
/// A dropped stream every this many frames.
const DROP_EVERY: u64 = 97;
/// How long after the command's exit the stream closes.
const CLOSE_DELAY: Duration = Duration::from_millis(1000);

pub struct FakeRemote {
    local: Arc<LocalProvider>,
}

impl FakeRemote {
    pub fn new(local: Arc<LocalProvider>) -> Self {
        FakeRemote { local }
    }
}

#[async_trait]
impl Provider for FakeRemote {
    fn kind(&self) -> &'static str {
        "fake-remote"
    }
    async fn check(&self) -> Result<()> {
        self.local.check().await
    }
    async fn create(&self, spec: &SandboxSpec) -> Result<Box<dyn Sandbox>> {
        Ok(Box::new(FakeSandbox {
            inner: self.local.create(spec).await?,
        }))
    }
    async fn adopt(
        &self,
        spec: &SandboxSpec,
        persisted: &serde_json::Value,
        at: LogPosition,
    ) -> Result<Option<Adopted>> {
        Ok(self
            .local
            .adopt(spec, persisted, at)
            .await?
            .map(|a| Adopted {
                sandbox: Box::new(FakeSandbox { inner: a.sandbox }),
                process: a.process.map(remote_shaped),
            }))
    }
    async fn list(&self) -> Result<Vec<String>> {
        self.local.list().await
    }
    async fn remove_orphan(&self, session: &str) -> Result<()> {
        self.local.remove_orphan(session).await
    }
    async fn fork(&self, from: &SandboxSpec, to: &str) -> Result<harvest_sandbox::WorkspaceSource> {
        self.local.fork(from, to).await
    }
}

struct FakeSandbox {
    inner: Box<dyn Sandbox>,
}

#[async_trait]
impl Sandbox for FakeSandbox {
    fn workspace(&self) -> &Path {
        self.inner.workspace()
    }
    fn host_workspace(&self) -> Option<&Path> {
        // A remote workspace is not on this machine.
        None
    }
    fn agent_program(&self) -> &Path {
        self.inner.agent_program()
    }
    fn agent_home(&self) -> &Path {
        self.inner.agent_home()
    }
    fn persisted(&self) -> serde_json::Value {
        self.inner.persisted()
    }
    async fn spawn_agent(
        &mut self,
        cmd: &AgentCommand,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<AgentProcess> {
        Ok(remote_shaped(self.inner.spawn_agent(cmd, secrets).await?))
    }
    async fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>> {
        self.inner.read_file(path, limit).await
    }
    async fn exec(
        &self,
        argv: &[String],
        limits: harvest_sandbox::ExecLimits,
    ) -> Result<harvest_sandbox::ExecOutput> {
        self.inner.exec(argv, limits).await
    }
    async fn previews(&self, ports: &[u16]) -> Vec<(u16, String)> {
        self.inner.previews(ports).await
    }
    async fn destroy(&mut self) -> Result<()> {
        self.inner.destroy().await
    }
}

fn remote_shaped(p: AgentProcess) -> AgentProcess {
    AgentProcess {
        log_id: p.log_id,
        input: p.input,
        control: Box::new(FakeControl {
            inner: Arc::from(p.control),
        }),
    }
}

struct FakeControl {
    inner: Arc<dyn AgentControl>,
}

#[async_trait]
impl AgentControl for FakeControl {
    async fn interrupt(&self) -> Result<bool> {
        Ok(false)
    }
    async fn stop(&self) -> Result<()> {
        self.inner.kill().await
    }
    async fn kill(&self) -> Result<()> {
        self.inner.kill().await
    }
    async fn open_log(&self, offset: u64) -> Result<Box<dyn AgentLog>> {
        // Replayed from the start, as a remote log stream is.
        Ok(Box::new(FakeLog {
            inner: self.inner.open_log(0).await?,
            skip: offset,
            offset,
            held: Vec::new(),
            frames: 0,
            ended_at: None,
        }))
    }
    async fn exit_status(&self) -> Option<AgentExit> {
        self.inner.exit_status().await
    }
    async fn diagnostics(&self) -> String {
        self.inner.diagnostics().await
    }
}

struct FakeLog {
    inner: Box<dyn AgentLog>,
    /// Replayed bytes still to skip (the reader has them).
    skip: u64,
    offset: u64,
    held: Vec<u8>,
    frames: u64,
    ended_at: Option<tokio::time::Instant>,
}

#[async_trait]
impl AgentLog for FakeLog {
    async fn next(&mut self, idle_poll: Duration) -> Result<LogRead> {
        loop {
            if !self.held.is_empty() {
                self.frames += 1;
                if self.frames.is_multiple_of(DROP_EVERY) {
                    return Err(SandboxError::Disconnected("fake: stream dropped".into()));
                }
                let n = FRAME.min(self.held.len());
                let frame: Vec<u8> = self.held.drain(..n).collect();
                self.offset += frame.len() as u64;
                return Ok(LogRead::Data(frame));
            }
            if let Some(at) = self.ended_at {
                tokio::time::sleep_until(at).await;
                return Ok(LogRead::End);
            }
            match self.inner.next(idle_poll).await? {
                LogRead::Data(mut bytes) => {
                    let skip = (self.skip as usize).min(bytes.len());
                    self.skip -= skip as u64;
                    bytes.drain(..skip);
                    self.held = bytes;
                }
                LogRead::Idle => return Ok(LogRead::Idle),
                LogRead::End => {
                    self.ended_at = Some(tokio::time::Instant::now() + CLOSE_DELAY);
                }
            }
        }
    }

    fn offset(&self) -> u64 {
        self.offset
    }
}
