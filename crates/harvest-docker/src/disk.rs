//! Each session's disk use bounded: its container's writable layer plus its HOME volume.
//!
//! Where the engine can (overlay2 over xfs with project quotas) the limit is also the
//! container's `storage-opt size`; Debian's default, overlay2 over ext4, has no such
//! thing, so the daemon measures. One task per daemon asks the engine for its disk usage
//! (`/system/df`, computed by the engine as root, so nothing the agent hides from its
//! own uid goes uncounted) every [`EVERY`], and kills the container of a session over
//! its limit; the session then ends with the reason (`AgentExit::lost`), and the next
//! message starts the container again, which is killed again while still over.

use bollard::Docker;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::container::{LABEL_INSTANCE, LABEL_SESSION};

/// How often usage is measured.
pub const EVERY: Duration = Duration::from_secs(10);

pub struct DiskWatch {
    limit_mb: u64,
    instance: String,
    /// Container name → why it was killed.
    over: Mutex<HashMap<String, String>>,
    started: std::sync::Once,
}

impl DiskWatch {
    pub fn new(limit_mb: u64, instance: &str) -> Arc<Self> {
        Arc::new(DiskWatch {
            limit_mb,
            instance: instance.to_owned(),
            over: Mutex::new(HashMap::new()),
            started: std::sync::Once::new(),
        })
    }

    /// Start measuring (once per daemon; a limit of 0 measures nothing).
    pub fn start(self: &Arc<Self>, docker: &Docker) {
        if self.limit_mb == 0 {
            return;
        }
        let (me, docker) = (self.clone(), docker.clone());
        self.started.call_once(move || {
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(EVERY).await;
                    me.measure(&docker).await;
                }
            });
        });
    }

    /// Why the container was stopped, if this did it.
    pub fn reason(&self, container: &str) -> Option<String> {
        self.lock().get(container).cloned()
    }

    /// A new agent starts in the container: what ended the last one no longer holds.
    pub fn clear(&self, container: &str) {
        self.lock().remove(container);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.over.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn measure(&self, docker: &Docker) {
        let usage = match docker.df(None).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "cannot measure the containers' disk use");
                return;
            }
        };
        let ours = |labels: Option<&HashMap<String, String>>| {
            let labels = labels?;
            (labels.get(LABEL_INSTANCE) == Some(&self.instance))
                .then(|| labels.get(LABEL_SESSION).cloned())
                .flatten()
        };
        // Session → (container name, bytes).
        let mut per: HashMap<String, (Option<String>, i64)> = HashMap::new();
        for c in usage.containers.unwrap_or_default() {
            if let Some(session) = ours(c.labels.as_ref()) {
                let e = per.entry(session).or_default();
                e.0 = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_owned());
                e.1 += c.size_rw.unwrap_or(0).max(0);
            }
        }
        for v in usage.volumes.unwrap_or_default() {
            if let Some(session) = ours(Some(&v.labels)) {
                per.entry(session).or_default().1 += v.usage_data.map_or(0, |u| u.size.max(0));
            }
        }
        let limit = i64::try_from(self.limit_mb.saturating_mul(1 << 20)).unwrap_or(i64::MAX);
        for (session, (container, bytes)) in per {
            let Some(container) = container else { continue };
            if bytes <= limit || self.reason(&container).is_some() {
                continue;
            }
            let why = format!(
                "the session's disk use ({} MB in its container and HOME) passed its limit of \
                 {} MB (docker.disk_mb), so its container was stopped; free space in the \
                 sandbox or raise docker.disk_mb",
                bytes >> 20,
                self.limit_mb
            );
            tracing::warn!(%session, mb = bytes >> 20, limit = self.limit_mb, "a session's disk use passed its limit");
            self.lock().insert(container.clone(), why);
            let _ = crate::container::kill(docker, &container).await;
        }
    }
}
