//! The `daytona` provider: one remote Daytona sandbox per session.
//!
//! The sandbox is labelled with the session id and this daemon's instance, so a crash at
//! any point leaves something [`Provider::list`] finds, and creating is idempotent (a
//! sandbox already labelled for the session is used, not a second one made). The agent is
//! the snapshot's `claude`, run as a session command (see `remote`); its log streams back
//! over the logs WebSocket ([`crate::logs::WsLog`]).
//!
//! Credentials (DAYTONA_API_KEY, DAYTONA_API_URL, DAYTONA_TARGET) come from the client's
//! environment with each request that may need them, or the daemon's own; they stay in
//! the daemon's memory and in the Authorization header, never on disk or in a sandbox.

use crate::api::{Api, CreateRequest};
use crate::error::DaytonaError;
use crate::http::Http;
use crate::remote::{DaytonaSandbox, newest_agent};
use crate::toolbox::Toolbox;
use async_trait::async_trait;
use harvest_protocol::Secret;
use harvest_sandbox::{
    Adopted, LogPosition, Network, Provider, Result, Sandbox, SandboxError, SandboxSpec,
    WorkspaceSource,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DEFAULT_API_URL: &str = "https://app.daytona.io/api";
/// The variables the provider takes from a client's environment.
pub const CREDENTIAL_ENV: &[&str] = &["DAYTONA_API_KEY", "DAYTONA_API_URL", "DAYTONA_TARGET"];
pub const LABEL_SESSION: &str = "harvest.session";
pub const LABEL_INSTANCE: &str = "harvest.instance";

/// The `[daytona]` config.
#[derive(Debug, Clone)]
pub struct DaytonaOptions {
    /// Overridden by DAYTONA_API_URL.
    pub api_url: Option<String>,
    /// Overridden by DAYTONA_TARGET.
    pub target: Option<String>,
    pub snapshot: String,
    pub auto_stop_minutes: u32,
    pub auto_archive_minutes: u32,
    pub create_timeout: Duration,
    /// How often an open turn counts as activity (default: a third of auto-stop).
    pub keepalive: Option<Duration>,
    /// This daemon's instance (a label, so two daemons never take each other's sandboxes).
    pub instance: String,
    /// Where per-session facts live on this machine (the upload manifest for `pull`).
    pub sessions_dir: PathBuf,
}

#[derive(Clone)]
struct Credentials {
    key: Option<Secret>,
    api_url: Option<String>,
    target: Option<String>,
    /// The agent's model host (from the client's ANTHROPIC_BASE_URL): what an allow list
    /// must always let through.
    model_host: Option<String>,
}

pub struct DaytonaProvider {
    opts: DaytonaOptions,
    creds: Mutex<Credentials>,
    /// The API client for the current key (rebuilt when the key changes).
    api: Mutex<Option<(String, Api)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DaytonaProvider {
    /// With the daemon's own environment as the first credentials.
    pub fn new(opts: DaytonaOptions) -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        DaytonaProvider {
            opts,
            creds: Mutex::new(Credentials {
                key: var("DAYTONA_API_KEY").map(Secret::new),
                api_url: var("DAYTONA_API_URL"),
                target: var("DAYTONA_TARGET"),
                model_host: var("ANTHROPIC_BASE_URL").as_deref().and_then(host_of),
            }),
            api: Mutex::new(None),
        }
    }

    fn api_url(&self) -> String {
        let c = lock(&self.creds);
        c.api_url
            .clone()
            .or_else(|| self.opts.api_url.clone())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
    }

    fn target(&self) -> Option<String> {
        lock(&self.creds)
            .target
            .clone()
            .or_else(|| self.opts.target.clone())
    }

    pub(crate) fn api(&self) -> std::result::Result<Api, DaytonaError> {
        let key = lock(&self.creds).key.clone().ok_or(DaytonaError::NoKey)?;
        let url = self.api_url();
        let id = format!("{url}\n{}", key.expose());
        let mut cached = lock(&self.api);
        if let Some((k, api)) = cached.as_ref()
            && *k == id
        {
            return Ok(api.clone());
        }
        let api = Api::new(Http::new(key)?, &url)?;
        *cached = Some((id, api.clone()));
        Ok(api)
    }

    /// A third of the auto-stop interval, unless the config names one.
    fn keepalive(&self) -> Duration {
        match self.opts.keepalive {
            Some(d) => d,
            None if self.opts.auto_stop_minutes == 0 => Duration::from_secs(600),
            None => Duration::from_secs(u64::from(self.opts.auto_stop_minutes) * 20),
        }
    }

    fn labels(&self, session: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_SESSION.to_owned(), session.to_owned()),
            (LABEL_INSTANCE.to_owned(), self.opts.instance.clone()),
        ])
    }

    fn model_host(&self) -> String {
        lock(&self.creds)
            .model_host
            .clone()
            .unwrap_or_else(|| "api.anthropic.com".to_owned())
    }

    fn request(&self, spec: &SandboxSpec) -> CreateRequest {
        let model_host = self.model_host();
        let (network_block_all, domain_allow_list) = match &spec.network {
            Network::Open => (false, None),
            // The agent must still reach its model; Daytona has allow lists, no block list.
            Network::None => (false, Some(model_host)),
            Network::Allow(hosts) => {
                let mut all = hosts.clone();
                all.push(model_host);
                (false, Some(all.join(",")))
            }
        };
        CreateRequest {
            snapshot: Some(
                spec.image
                    .clone()
                    .unwrap_or_else(|| self.opts.snapshot.clone()),
            ),
            target: self.target(),
            labels: self.labels(&spec.session),
            auto_stop_minutes: self.opts.auto_stop_minutes,
            auto_archive_minutes: self.opts.auto_archive_minutes,
            network_block_all,
            domain_allow_list,
        }
    }

    /// The session's sandbox if one exists (not one in `error`), else a new one.
    async fn find_or_create(
        &self,
        api: &Api,
        spec: &SandboxSpec,
    ) -> std::result::Result<crate::api::Sandbox, DaytonaError> {
        let labels = self.labels(&spec.session);
        if let Some(s) = api.list(&labels).await?.into_iter().find(|s| !s.failed()) {
            return Ok(s);
        }
        match api.create(&self.request(spec)).await {
            Ok(s) => Ok(s),
            // The create may have been made before the answer was lost: look again.
            Err(e) if e.is_transient() => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match api.list(&labels).await?.into_iter().next() {
                    Some(s) => Ok(s),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn toolbox(api: &Api, s: &crate::api::Sandbox) -> std::result::Result<Toolbox, DaytonaError> {
        let proxy = s.toolbox_proxy_url.as_deref().ok_or_else(|| {
            DaytonaError::Protocol(format!("sandbox {} has no toolboxProxyUrl", s.id))
        })?;
        Toolbox::new(api.http.clone(), proxy, &s.id)
    }

    fn sandbox_for(
        &self,
        api: &Api,
        s: &crate::api::Sandbox,
        session: &str,
    ) -> std::result::Result<DaytonaSandbox, DaytonaError> {
        Ok(DaytonaSandbox::new(
            api.clone(),
            Self::toolbox(api, s)?,
            s.id.clone(),
            (self.opts.create_timeout, self.keepalive()),
            self.manifest(session),
        ))
    }

    fn manifest(&self, session: &str) -> PathBuf {
        self.opts
            .sessions_dir
            .join(session)
            .join(crate::workspace::MANIFEST)
    }
}

fn host_of(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
}

#[async_trait]
impl Provider for DaytonaProvider {
    fn kind(&self) -> &'static str {
        "daytona"
    }

    fn brings_agent(&self) -> bool {
        true
    }

    fn credentials(&self, env: &BTreeMap<String, Secret>) {
        let get = |k: &str| env.get(k).filter(|v| !v.expose().is_empty());
        let mut c = lock(&self.creds);
        if let Some(url) = get("ANTHROPIC_BASE_URL") {
            c.model_host = host_of(url.expose());
        }
        if let Some(k) = get("DAYTONA_API_KEY") {
            c.key = Some(k.clone());
            // A client's key comes with its URL and target (or their absence).
            c.api_url = get("DAYTONA_API_URL").map(|v| v.expose().to_owned());
            c.target = get("DAYTONA_TARGET").map(|v| v.expose().to_owned());
        }
    }

    /// The key is checked with one cheap call, so a missing or refused key is reported
    /// before anything is created.
    async fn check(&self) -> Result<()> {
        let api = self.api()?;
        api.check_key().await?;
        Ok(())
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Box<dyn Sandbox>> {
        let api = self.api()?;
        let found = self.find_or_create(&api, spec).await?;
        tracing::info!(session = %spec.session, sandbox = %found.id, state = found.state(), "daytona sandbox");
        let started = api.wait_started(&found.id, self.opts.create_timeout).await;
        let started = match started {
            Ok(s) => s,
            Err(DaytonaError::BadRequest(_)) | Err(DaytonaError::Conflict(_))
                if found.state() == "stopped" =>
            {
                api.start(&found.id).await?;
                api.wait_started(&found.id, self.opts.create_timeout)
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        let mut sandbox = self.sandbox_for(&api, &started, &spec.session)?;
        let manifest = self
            .opts
            .sessions_dir
            .join(&spec.session)
            .join(crate::workspace::MANIFEST);
        sandbox
            .prepare_workspace(&spec.workspace, &manifest, &spec.progress)
            .await?;
        sandbox.upload_home_config(&spec.home_binds).await?;
        Ok(Box::new(sandbox))
    }

    async fn adopt(
        &self,
        spec: &SandboxSpec,
        persisted: &serde_json::Value,
        at: LogPosition,
    ) -> Result<Option<Adopted>> {
        let api = self.api()?;
        let by_id = match persisted["sandbox"].as_str() {
            Some(id) => api.get(id).await?,
            None => None,
        };
        let found = match by_id {
            Some(s) => Some(s),
            None => api
                .list(&self.labels(&spec.session))
                .await?
                .into_iter()
                .next(),
        };
        let Some(found) = found else {
            return Ok(None);
        };
        let sandbox = self.sandbox_for(&api, &found, &spec.session)?;
        let mut process = None;
        if found.state() == "started"
            && let Some(found) = newest_agent(sandbox.toolbox()).await?
            && (found.log_id > at.log_id || (found.log_id == at.log_id && !at.ended))
        {
            process = found.process(&sandbox.remote());
        }
        Ok(Some(Adopted {
            sandbox: Box::new(sandbox),
            process,
        }))
    }

    async fn states(&self) -> BTreeMap<String, String> {
        let Ok(api) = self.api() else {
            return BTreeMap::new();
        };
        let labels = BTreeMap::from([(LABEL_INSTANCE.to_owned(), self.opts.instance.clone())]);
        match api.list(&labels).await {
            Ok(found) => found
                .into_iter()
                .filter_map(|s| Some((s.labels.get(LABEL_SESSION)?.clone(), s.state().to_owned())))
                .collect(),
            Err(e) => {
                tracing::info!(error = %e, "cannot list the Daytona sandboxes' states");
                BTreeMap::new()
            }
        }
    }

    async fn list(&self) -> Result<Vec<String>> {
        let Ok(api) = self.api() else {
            // Without a key there is nothing this provider can see.
            return Ok(Vec::new());
        };
        let labels = BTreeMap::from([(LABEL_INSTANCE.to_owned(), self.opts.instance.clone())]);
        Ok(api
            .list(&labels)
            .await?
            .into_iter()
            .filter_map(|s| s.labels.get(LABEL_SESSION).cloned())
            .collect())
    }

    async fn remove_orphan(&self, session: &str) -> Result<()> {
        let api = self.api()?;
        for s in api.list(&self.labels(session)).await? {
            api.delete(&s.id).await?;
        }
        // What this provider keeps on this machine for the session (the upload manifest).
        let dir = self.opts.sessions_dir.join(session);
        let _ = std::fs::remove_file(dir.join(crate::workspace::MANIFEST));
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    }

    /// The source sandbox's HOME (its workspace and the agent's transcripts) as a tarball
    /// kept with the new session on this machine; `create` unpacks it in the new sandbox.
    /// Its contents are the source agent's (hostile) but only ever unpacked remotely.
    async fn fork(&self, from: &SandboxSpec, to: &str) -> Result<WorkspaceSource> {
        let api = self.api()?;
        let Some(src) = api
            .list(&self.labels(&from.session))
            .await?
            .into_iter()
            .next()
        else {
            return Err(SandboxError::BadWorkspace {
                path: PathBuf::from(crate::remote::WORKSPACE),
                reason: format!("the Daytona sandbox of session {} is gone", from.session),
            });
        };
        let sandbox = self.sandbox_for(&api, &src, &from.session)?;
        let tarball = sandbox.export_home().await?;
        let dir = self.opts.sessions_dir.join(to);
        let io = |source| SandboxError::Io {
            path: dir.clone(),
            source,
        };
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir)
            .map_err(io)?;
        let path = dir.join(crate::workspace::FORK_TARBALL);
        std::fs::write(&path, tarball).map_err(io)?;
        Ok(WorkspaceSource::Owned { path })
    }
}

pub type SharedProvider = Arc<DaytonaProvider>;
