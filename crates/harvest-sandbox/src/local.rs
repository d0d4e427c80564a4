//! The `local` provider: a bubblewrap jail on this machine.
//!
//! The agent runs as `bwrap … -- claude …` in its own process group. Its stdin is a FIFO
//! in the session's state folder that the agent holds open for writing as well as
//! reading, so the stream-json input never sees EOF when the daemon dies; its stdout is
//! the file `agent.log` beside it, which the daemon ingests by offset.

pub mod bwrap;
mod log;
mod process;

use crate::{Adopted, AgentProcess, Provider, Result, Sandbox, SandboxError, SandboxSpec};
use async_trait::async_trait;
use harvest_agent::AgentCommand;
use harvest_protocol::Secret;
use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub use log::FileLog;

/// Files of a session's state folder that belong to the local provider.
pub const LOG_FILE: &str = "agent.log";
pub const STDERR_FILE: &str = "agent.stderr";
pub const STDIN_FIFO: &str = "agent.stdin";
pub const HOME_DIR: &str = "home";

pub struct LocalProvider {
    bwrap: Option<PathBuf>,
}

impl LocalProvider {
    /// `bwrap`: an explicit path from the config, or `None` to search `PATH`.
    pub fn new(bwrap: Option<PathBuf>) -> Self {
        LocalProvider { bwrap }
    }

    fn bwrap_path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.bwrap {
            return if p.is_file() {
                Ok(p.clone())
            } else {
                Err(SandboxError::BwrapMissing)
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join("bwrap"))
            .find(|p| p.is_file())
            .ok_or(SandboxError::BwrapMissing)
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn check(&self) -> Result<()> {
        let bwrap = self.bwrap_path()?;
        // The smallest jail with the namespaces we need: fails fast and says why on
        // kernels without unprivileged user namespaces.
        let out = tokio::process::Command::new(&bwrap)
            .args([
                "--unshare-user",
                "--unshare-pid",
                "--ro-bind",
                "/",
                "/",
                "true",
            ])
            .output()
            .await
            .map_err(|e| SandboxError::Spawn(format!("{}: {e}", bwrap.display())))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(SandboxError::NoUserNamespaces {
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    async fn adopt(
        &self,
        spec: &SandboxSpec,
        persisted: &serde_json::Value,
    ) -> Result<Option<Adopted>> {
        let Some(pids) = process::JailPids::from_persisted(persisted) else {
            return Ok(None);
        };
        if !pids.same_jail_alive() {
            return Ok(None);
        }
        let log_start = persisted["log_start"].as_u64().unwrap_or(0);
        let process = process::adopt(&spec.state_dir, pids, log_start)?;
        let sandbox = LocalSandbox {
            bwrap: self.bwrap_path().unwrap_or_else(|_| PathBuf::from("bwrap")),
            policy: bwrap::JailPolicy {
                workspace: spec.workspace.clone(),
                home: spec.state_dir.join(HOME_DIR),
                agent_binary: spec.agent_binary.clone(),
                hidden: spec.hidden.clone(),
                network: spec.network,
            },
            state_dir: spec.state_dir.clone(),
            agent_program: Path::new(bwrap::AGENT_BIN_DIR).join("claude"),
            pids: Some(pids),
            log_start,
        };
        Ok(Some(Adopted {
            sandbox: Box::new(sandbox),
            process,
        }))
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Box<dyn Sandbox>> {
        let bwrap = self.bwrap_path()?;
        let workspace =
            std::fs::canonicalize(&spec.workspace).map_err(|e| SandboxError::BadWorkspace {
                path: spec.workspace.clone(),
                reason: e.to_string(),
            })?;
        if !workspace.is_dir() {
            return Err(SandboxError::BadWorkspace {
                path: workspace,
                reason: "not a directory".into(),
            });
        }
        let home = spec.state_dir.join(HOME_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&home)
            .map_err(|source| SandboxError::Io {
                path: home.clone(),
                source,
            })?;
        Ok(Box::new(LocalSandbox {
            bwrap,
            policy: bwrap::JailPolicy {
                workspace,
                home,
                agent_binary: spec.agent_binary.clone(),
                hidden: spec.hidden.clone(),
                network: spec.network,
            },
            state_dir: spec.state_dir.clone(),
            agent_program: Path::new(bwrap::AGENT_BIN_DIR).join("claude"),
            pids: None,
            log_start: 0,
        }))
    }
}

pub struct LocalSandbox {
    bwrap: PathBuf,
    policy: bwrap::JailPolicy,
    state_dir: PathBuf,
    agent_program: PathBuf,
    pids: Option<process::JailPids>,
    /// Where the running agent's output begins in the log.
    log_start: u64,
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn workspace(&self) -> &Path {
        &self.policy.workspace
    }

    fn agent_program(&self) -> &Path {
        &self.agent_program
    }

    fn persisted(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "local",
            "state_dir": self.state_dir,
            "workspace": self.policy.workspace,
            "bwrap_pid": self.pids.map(|p| p.bwrap),
            "init_pid": self.pids.map(|p| p.init),
            // With the pid, the start time tells this jail from a process that reuses it.
            "init_start": self.pids.map(|p| p.init_start),
            "log_start": self.log_start,
        })
    }

    async fn spawn_agent(
        &mut self,
        cmd: &AgentCommand,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<AgentProcess> {
        let spawned = process::spawn(&self.bwrap, &self.policy, &self.state_dir, cmd, secrets)?;
        self.pids = Some(spawned.pids);
        self.log_start = spawned.process.log_start;
        Ok(spawned.process)
    }

    async fn destroy(&mut self) -> Result<()> {
        if let Some(pids) = self.pids.take() {
            pids.kill_all();
        }
        let home = &self.policy.home;
        match std::fs::remove_dir_all(home) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SandboxError::Io {
                path: home.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}
