//! One Daytona sandbox and the agent process in it.
//!
//! The agent is a session command (`harvest-agent-<log id>`, one session per process, so
//! the newest is found again by name after a daemon restart). Log ids are wall-clock
//! milliseconds: a later process always has a larger id than any committed one. Secrets
//! are never in the command text (which `GET /process/session` shows): the command reads
//! `NAME=value` lines from its input until an empty line, exports them, then `exec`s the
//! CLI, and Harvest sends those lines first, with the input echo suppressed.

use crate::api::Api;
use crate::error::DaytonaError;
use crate::logs::{CommandRef, WsLog};
use crate::toolbox::Toolbox;
use async_trait::async_trait;
use harvest_agent::AgentCommand;
use harvest_protocol::Secret;
use harvest_sandbox::{
    AgentControl, AgentExit, AgentInput, AgentLog, AgentProcess, ExecLimits, ExecOutput, Result,
    Sandbox, SandboxError,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const WORKSPACE: &str = "/home/daytona/workspace";
pub const CLAUDE: &str = "/usr/local/bin/claude";
pub const HOME: &str = "/home/daytona";
const SESSION_PREFIX: &str = "harvest-agent-";

pub struct DaytonaSandbox {
    api: Api,
    toolbox: Toolbox,
    id: String,
    timeout: Duration,
    keepalive: Duration,
    /// What was uploaded, on this machine (for `pull`).
    manifest: PathBuf,
    workspace: PathBuf,
    program: PathBuf,
    /// Preview links by port, valid until the sandbox is started again (the token rotates).
    previews: tokio::sync::Mutex<BTreeMap<u16, String>>,
}

/// `'…'` for sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl DaytonaSandbox {
    pub fn new(
        api: Api,
        toolbox: Toolbox,
        id: String,
        (timeout, keepalive): (Duration, Duration),
        manifest: PathBuf,
    ) -> Self {
        DaytonaSandbox {
            api,
            toolbox,
            id,
            timeout,
            keepalive,
            manifest,
            workspace: PathBuf::from(WORKSPACE),
            program: PathBuf::from(CLAUDE),
            previews: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    pub fn toolbox(&self) -> &Toolbox {
        &self.toolbox
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn remote(&self) -> Remote {
        Remote {
            api: self.api.clone(),
            toolbox: self.toolbox.clone(),
            id: self.id.clone(),
            keepalive: self.keepalive,
        }
    }

    /// Started, starting it if it stopped (auto-stop) or was archived; a clear error if it
    /// was deleted outside Harvest or failed.
    pub(crate) async fn ensure_started(&self) -> Result<()> {
        let Some(s) = self.api.get(&self.id).await? else {
            return Err(SandboxError::Spawn(format!(
                "the Daytona sandbox {} was deleted outside Harvest; `harvest rm` this session \
                 and start a new one",
                self.id
            )));
        };
        if s.failed() {
            return Err(DaytonaError::SandboxFailed {
                id: self.id.clone(),
                reason: s
                    .error_reason
                    .clone()
                    .unwrap_or_else(|| s.state().to_owned()),
            }
            .into());
        }
        if s.state() != "started" {
            if matches!(s.state(), "stopped" | "archived") {
                tracing::info!(sandbox = %self.id, state = s.state(), "starting the daytona sandbox again");
                self.api.start(&self.id).await?;
                self.previews.lock().await.clear();
            }
            self.api.wait_started(&self.id, self.timeout).await?;
        }
        Ok(())
    }

    /// The command a session runs: read the secrets, then become the CLI.
    fn command_text(cmd: &AgentCommand) -> String {
        let mut text = format!(
            "cd {} && while IFS= read -r l && [ -n \"$l\" ]; do export \"$l\"; done; exec env",
            quote(WORKSPACE)
        );
        for (k, v) in &cmd.env {
            text.push(' ');
            text.push_str(&quote(&format!("{k}={v}")));
        }
        text.push(' ');
        text.push_str(&quote(&cmd.program.to_string_lossy()));
        for a in &cmd.args {
            text.push(' ');
            text.push_str(&quote(&a.to_string_lossy()));
        }
        text
    }

    /// A one-shot command in the workspace.
    pub(crate) async fn execute(
        &self,
        script: &str,
        timeout: Duration,
    ) -> Result<(Option<i32>, String)> {
        self.execute_at(WORKSPACE, script, timeout).await
    }

    /// A one-shot command in `cwd` (HOME, before the workspace exists).
    pub(crate) async fn execute_at(
        &self,
        cwd: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<(Option<i32>, String)> {
        let r = self.toolbox.execute(script, cwd, timeout).await?;
        Ok((r.exit_code.and_then(|c| i32::try_from(c).ok()), r.result))
    }
}

#[async_trait]
impl Sandbox for DaytonaSandbox {
    fn workspace(&self) -> &Path {
        &self.workspace
    }

    fn host_workspace(&self) -> Option<&Path> {
        None
    }

    fn agent_program(&self) -> &Path {
        &self.program
    }

    fn agent_home(&self) -> &Path {
        Path::new(HOME)
    }

    fn persisted(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "daytona",
            "sandbox": self.id,
            "workspace": WORKSPACE,
        })
    }

    async fn spawn_agent(
        &mut self,
        cmd: &AgentCommand,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<AgentProcess> {
        if secrets.contains_key(harvest_protocol::secret::LOGIN_VAR) {
            // This agent holds its credential inside the remote sandbox; a subscription
            // login's refresh token must never go there.
            return Err(SandboxError::Unsupported {
                kind: "daytona",
                what: "a Claude subscription login (its agent would hold it in the remote \
                       sandbox); make a token with `claude setup-token` and set \
                       CLAUDE_CODE_OAUTH_TOKEN, or set ANTHROPIC_API_KEY"
                    .into(),
            });
        }
        self.ensure_started().await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let log_id = u64::try_from(now).unwrap_or(u64::MAX);
        let session = format!("{SESSION_PREFIX}{log_id}");
        self.toolbox.create_session(&session).await?;
        let cmd_id = self
            .toolbox
            .exec_async(&session, &Self::command_text(cmd))
            .await?;
        // The secrets the user named for their stdio MCP servers go with the model's.
        for (k, v) in secrets.iter().chain(&cmd.secret_env) {
            if v.expose().contains('\n') || k.contains('=') {
                continue;
            }
            self.toolbox
                .input(&session, &cmd_id, &format!("{k}={}", v.expose()))
                .await?;
        }
        self.toolbox.input(&session, &cmd_id, "").await?;
        Ok(process(&self.remote(), log_id, session, cmd_id))
    }

    async fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>> {
        let p = path.to_string_lossy();
        if !path.is_absolute() {
            return Err(SandboxError::Spawn(format!("not an absolute path: {p}")));
        }
        // Only a regular file (a FIFO or device is never opened); links resolve inside.
        let (code, _) = self
            .execute(&format!("test -f {}", quote(&p)), Duration::from_secs(30))
            .await?;
        if code != Some(0) {
            return Err(SandboxError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a regular file in the sandbox",
                ),
            });
        }
        let mut bytes = self.toolbox.download(&p).await?.unwrap_or_default();
        bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(bytes)
    }

    async fn exec(&self, argv: &[String], limits: ExecLimits) -> Result<ExecOutput> {
        let script: Vec<String> = argv.iter().map(|a| quote(a)).collect();
        let (code, out) = match self.execute(&script.join(" "), limits.timeout).await {
            Ok(r) => r,
            Err(SandboxError::Spawn(m)) if m.contains("timed out") => (None, String::new()),
            Err(e) => return Err(e),
        };
        let mut stdout = out.into_bytes();
        let truncated = stdout.len() > limits.output_bytes;
        stdout.truncate(limits.output_bytes);
        Ok(ExecOutput {
            code,
            stdout,
            stderr: Vec::new(),
            truncated,
        })
    }

    async fn destroy(&mut self) -> Result<()> {
        self.api.delete(&self.id).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.api.get(&self.id).await?.is_some() {
            if tokio::time::Instant::now() > deadline {
                return Err(SandboxError::Spawn(format!(
                    "the Daytona sandbox {} is still there a minute after its delete",
                    self.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    }

    async fn changes(&self) -> Result<Vec<harvest_sandbox::WorkspaceChange>> {
        self.ensure_started().await?;
        self.changes_since_upload(&self.manifest).await
    }

    /// A port's preview link once something answers behind it (the token is part of the
    /// link, as Daytona's `DAYTONA_SANDBOX_AUTH_KEY` query parameter).
    async fn previews(&self, ports: &[u16]) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        let mut cache = self.previews.lock().await;
        for &port in ports {
            let url = match cache.get(&port) {
                Some(u) => u.clone(),
                None => match self.api.preview_link(&self.id, port).await {
                    Ok(l) => {
                        let mut u = match reqwest::Url::parse(&l.url) {
                            Ok(u) => u,
                            Err(_) => continue,
                        };
                        u.query_pairs_mut()
                            .append_pair("DAYTONA_SANDBOX_AUTH_KEY", &l.token);
                        let u = u.to_string();
                        cache.insert(port, u.clone());
                        u
                    }
                    Err(_) => continue,
                },
            };
            if answers(&url).await {
                out.push((port, url));
            }
        }
        out
    }
}

/// Something serves behind a preview link (the proxy answers 502 while nothing listens).
async fn answers(url: &str) -> bool {
    // One client for every probe: its connection pool and TLS setup are reused.
    static PROBE: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    let client = PROBE.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok()
    });
    let Some(client) = client else {
        return false;
    };
    match client.get(url).send().await {
        Ok(r) => !matches!(r.status().as_u16(), 502..=504),
        Err(_) => false,
    }
}

/// The newest agent session in the sandbox, from one listing: its log id, and its one
/// command (`None` once the command is gone).
pub struct FoundAgent {
    pub log_id: u64,
    session: String,
    command: Option<String>,
}

impl FoundAgent {
    /// The agent process found again, when its command is still there.
    pub fn process(self, remote: &Remote) -> Option<AgentProcess> {
        let cmd = self.command?;
        Some(process(remote, self.log_id, self.session, cmd))
    }
}

pub async fn newest_agent(toolbox: &Toolbox) -> Result<Option<FoundAgent>> {
    let sessions = toolbox.sessions().await?;
    Ok(sessions
        .into_iter()
        .filter_map(|s| {
            let n = s
                .session_id
                .strip_prefix(SESSION_PREFIX)?
                .parse::<u64>()
                .ok()?;
            Some((n, s))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(log_id, s)| FoundAgent {
            log_id,
            command: s
                .commands
                .unwrap_or_default()
                .into_iter()
                .next()
                .map(|c| c.id),
            session: s.session_id,
        }))
}

/// What the agent's handles need of the sandbox.
#[derive(Clone)]
pub struct Remote {
    pub api: Api,
    pub toolbox: Toolbox,
    pub id: String,
    /// How often an open turn tells Daytona it is active.
    pub keepalive: Duration,
}

fn process(remote: &Remote, log_id: u64, session: String, cmd: String) -> AgentProcess {
    let turn = Arc::new(crate::keepalive::TurnWatch::default());
    crate::keepalive::spawn(
        Arc::downgrade(&turn),
        remote.toolbox.clone(),
        session.clone(),
        cmd.clone(),
        remote.keepalive,
    );
    let command = CommandRef {
        toolbox: remote.toolbox.clone(),
        session,
        cmd,
        turn,
    };
    let stderr = Arc::new(Mutex::new(Vec::new()));
    AgentProcess {
        log_id,
        input: Box::new(Input(command.clone())),
        control: Box::new(Control {
            command,
            stderr,
            remote: remote.clone(),
        }),
    }
}

struct Input(CommandRef);

#[async_trait]
impl AgentInput for Input {
    async fn write_line(&mut self, line: &str) -> Result<()> {
        let c = &self.0;
        c.turn.wrote(line);
        match c
            .toolbox
            .input(&c.session, &c.cmd, line.strip_suffix('\n').unwrap_or(line))
            .await
        {
            Ok(()) => Ok(()),
            Err(DaytonaError::Gone(_)) | Err(DaytonaError::NotFound(_)) => {
                Err(SandboxError::InputClosed)
            }
            Err(e) => Err(e.into()),
        }
    }
}

struct Control {
    command: CommandRef,
    stderr: Arc<Mutex<Vec<u8>>>,
    remote: Remote,
}

#[async_trait]
impl AgentControl for Control {
    /// Daytona has no signal for a session command (its stdin is a FIFO, not a TTY).
    async fn interrupt(&self) -> Result<bool> {
        Ok(false)
    }

    async fn stop(&self) -> Result<()> {
        let c = &self.command;
        c.toolbox.delete_session(&c.session).await?;
        Ok(())
    }

    /// Deleting the session kills its process group and descendants; what a tool started
    /// in a new session of its own is ended too.
    async fn kill(&self) -> Result<()> {
        let c = &self.command;
        c.toolbox.delete_session(&c.session).await?;
        let _ = c
            .toolbox
            .execute(
                "pkill -KILL -f /usr/local/bin/claude || true",
                WORKSPACE,
                Duration::from_secs(10),
            )
            .await;
        Ok(())
    }

    async fn open_log(&self, offset: u64) -> Result<Box<dyn AgentLog>> {
        Ok(Box::new(WsLog::new(
            self.command.clone(),
            offset,
            self.stderr.clone(),
        )))
    }

    async fn exit_status(&self) -> Option<AgentExit> {
        let c = &self.command;
        match c.toolbox.command(&c.session, &c.cmd).await {
            Ok(Some(cmd)) => cmd.exit_code.map(|code| AgentExit {
                code: i32::try_from(code).ok(),
                signal: None,
                lost: None,
            }),
            // Deleted (stopped, cancelled) or the sandbox stopped: no exit code is kept.
            // Reported as a kill: the session's processes got SIGKILL at the latest.
            Ok(None) => Some(AgentExit {
                code: None,
                signal: Some(9),
                lost: None,
            }),
            Err(_) => None,
        }
    }

    /// A sandbox that stopped (Daytona's auto-stop after its idle interval, or a stop from
    /// outside) ended the agent; the next message starts it again.
    async fn ended_by_provider(&self) -> Option<String> {
        let s = self.remote.api.get(&self.remote.id).await.ok()?;
        match s.as_ref().map(|s| s.state()) {
            Some("stopped" | "stopping" | "archived" | "archiving") => Some(format!(
                "the Daytona sandbox {} stopped (idle, or stopped outside Harvest)",
                self.remote.id
            )),
            None => Some(format!(
                "the Daytona sandbox {} was deleted outside Harvest",
                self.remote.id
            )),
            _ => None,
        }
    }

    async fn diagnostics(&self) -> String {
        let tail = self.stderr.lock().map(|t| t.clone()).unwrap_or_default();
        String::from_utf8_lossy(&tail).into_owned()
    }
}
