//! The control-plane API (`{DAYTONA_API_URL}/sandbox…`): create, find, start, stop and
//! delete sandboxes, and their preview links. Shapes as in
//! `../shared/reference/daytona-api.md` §2 and §4.

use crate::error::{DaytonaError, Result};
use crate::http::{Body, Call, Http, join};
use reqwest::{Method, Url};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A sandbox as the API shows it (only what Harvest reads; the rest is ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    pub id: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub error_reason: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub toolbox_proxy_url: Option<String>,
}

impl Sandbox {
    pub fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("unknown")
    }
    pub fn failed(&self) -> bool {
        matches!(self.state(), "error" | "build_failed")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PreviewLink {
    pub url: String,
    pub token: String,
}

/// What a new sandbox is made with.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub snapshot: Option<String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub auto_stop_minutes: u32,
    pub auto_archive_minutes: u32,
    pub network_block_all: bool,
    pub domain_allow_list: Option<String>,
}

#[derive(Clone)]
pub struct Api {
    pub http: Http,
    base: Url,
}

impl Api {
    pub fn new(http: Http, api_url: &str) -> Result<Api> {
        let mut base = Url::parse(api_url.trim_end_matches('/'))
            .map_err(|e| DaytonaError::Protocol(format!("DAYTONA_API_URL {api_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(DaytonaError::Protocol(format!(
                "DAYTONA_API_URL {api_url:?} must be an http(s) URL"
            )));
        }
        // Paths are appended as segments.
        if let Ok(mut segs) = base.path_segments_mut() {
            segs.pop_if_empty();
        }
        Ok(Api { http, base })
    }

    fn url(&self, segments: &[&str]) -> Url {
        join(&self.base, segments)
    }

    /// A cheap authenticated call: is the key good? (Before anything is created.)
    pub async fn check_key(&self) -> Result<()> {
        let mut url = self.url(&["sandbox"]);
        url.query_pairs_mut().append_pair("limit", "1");
        let _: serde_json::Value = self.http.json(Call::new(Method::GET, url)).await?;
        Ok(())
    }

    pub async fn create(&self, req: &CreateRequest) -> Result<Sandbox> {
        let mut body = serde_json::json!({
            "labels": req.labels,
            "autoStopInterval": req.auto_stop_minutes,
            "autoArchiveInterval": req.auto_archive_minutes,
            // Nothing secret is ever put here: a listing returns it.
            "env": {},
        });
        if let Some(s) = &req.snapshot {
            body["snapshot"] = s.clone().into();
        }
        if let Some(t) = &req.target {
            body["target"] = t.clone().into();
        }
        if req.network_block_all {
            body["networkBlockAll"] = true.into();
        }
        if let Some(d) = &req.domain_allow_list {
            body["domainAllowList"] = d.clone().into();
        }
        self.http
            .json(Call {
                body: Some(Body::Json(body)),
                once_unless_refused: true,
                ..Call::new(Method::POST, self.url(&["sandbox"]))
            })
            .await
    }

    /// `Ok(None)`: no such sandbox (deleted outside Harvest, or never made).
    pub async fn get(&self, id: &str) -> Result<Option<Sandbox>> {
        match self
            .http
            .json(Call::new(Method::GET, self.url(&["sandbox", id])))
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(DaytonaError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every sandbox carrying all these labels (every page).
    pub async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<Sandbox>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            items: Vec<Sandbox>,
            #[serde(default)]
            next_cursor: Option<String>,
        }
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = self.url(&["sandbox"]);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("labels", &serde_json::to_string(labels).unwrap_or_default());
                q.append_pair("limit", "200");
                if let Some(c) = &cursor {
                    q.append_pair("cursor", c);
                }
            }
            let page: Page = self.http.json(Call::new(Method::GET, url)).await?;
            // The filter is the server's; checked again, as a wrong match would be deleted.
            out.extend(
                page.items
                    .into_iter()
                    .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))),
            );
            match page.next_cursor {
                Some(c) if !c.is_empty() && cursor.as_deref() != Some(&c) => cursor = Some(c),
                _ => return Ok(out),
            }
        }
    }

    pub async fn start(&self, id: &str) -> Result<Sandbox> {
        self.lifecycle(Method::POST, &["sandbox", id, "start"])
            .await
    }

    pub async fn stop(&self, id: &str) -> Result<Sandbox> {
        self.lifecycle(Method::POST, &["sandbox", id, "stop"]).await
    }

    /// Delete; a sandbox already gone counts as deleted.
    pub async fn delete(&self, id: &str) -> Result<()> {
        match self.lifecycle(Method::DELETE, &["sandbox", id]).await {
            Ok(_) | Err(DaytonaError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A lifecycle call; a 409 (another transition under way) waits for it and tries again.
    async fn lifecycle(&self, method: Method, path: &[&str]) -> Result<Sandbox> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self
                .http
                .json(Call::new(method.clone(), self.url(path)))
                .await
            {
                Err(DaytonaError::Conflict(m)) if Instant::now() < deadline => {
                    tracing::debug!(message = %m, "daytona transition in progress; waiting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    /// Wait until the sandbox is `started`, as the SDKs do: poll every 100 ms, slower
    /// (×1.1, at most 1 s) after 5 s; fail on `error`/`build_failed` with Daytona's reason,
    /// or at the timeout.
    pub async fn wait_started(&self, id: &str, timeout: Duration) -> Result<Sandbox> {
        self.wait_for(id, timeout, "started").await
    }

    pub async fn wait_for(&self, id: &str, timeout: Duration, want: &str) -> Result<Sandbox> {
        let began = Instant::now();
        let mut interval = Duration::from_millis(100);
        loop {
            let Some(s) = self.get(id).await? else {
                return Err(DaytonaError::NotFound(format!(
                    "the sandbox {id} was deleted outside Harvest"
                )));
            };
            if s.state() == want {
                return Ok(s);
            }
            if s.failed() {
                return Err(DaytonaError::SandboxFailed {
                    id: id.to_owned(),
                    reason: format!(
                        "{}: {}",
                        s.state(),
                        s.error_reason.as_deref().unwrap_or("no reason given")
                    ),
                });
            }
            if began.elapsed() >= timeout {
                return Err(DaytonaError::Timeout(format!(
                    "the sandbox {id} is still {} after {timeout:?} (want {want})",
                    s.state()
                )));
            }
            tokio::time::sleep(interval).await;
            if began.elapsed() > Duration::from_secs(5) {
                interval = (interval.mul_f64(1.1)).min(Duration::from_secs(1));
            }
        }
    }

    pub async fn preview_link(&self, id: &str, port: u16) -> Result<PreviewLink> {
        let port = port.to_string();
        self.http
            .json(Call::new(
                Method::GET,
                self.url(&["sandbox", id, "ports", &port, "preview-url"]),
            ))
            .await
    }
}
