//! The toolbox API of one sandbox (`{toolboxProxyUrl}/{sandboxId}/…`, §3 of the
//! reference): one-shot commands, session commands and their input, files, git.

use crate::error::{DaytonaError, Result};
use crate::http::{Body, Call, Http, join};
use reqwest::{Method, Url};
use serde::Deserialize;
use std::time::Duration;

#[derive(Clone)]
pub struct Toolbox {
    pub http: Http,
    base: Url,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteResponse {
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub result: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub id: String,
    #[serde(default)]
    pub exit_code: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub session_id: String,
    #[serde(default)]
    pub commands: Option<Vec<Command>>,
}

impl Toolbox {
    /// From the sandbox's `toolboxProxyUrl` (read from the sandbox, never built: it varies
    /// by region) and its id.
    pub fn new(http: Http, proxy_url: &str, id: &str) -> Result<Toolbox> {
        let mut base = Url::parse(proxy_url.trim_end_matches('/')).map_err(|e| {
            DaytonaError::Protocol(format!("the sandbox's toolboxProxyUrl {proxy_url:?}: {e}"))
        })?;
        if let Ok(mut s) = base.path_segments_mut() {
            s.pop_if_empty().push(id);
        }
        Ok(Toolbox { http, base })
    }

    pub fn url(&self, segments: &[&str]) -> Url {
        join(&self.base, segments)
    }

    /// The log WebSocket's URL: the same path, `ws`/`wss`.
    pub fn ws_url(&self, segments: &[&str]) -> Url {
        let mut u = self.url(segments);
        let scheme = if u.scheme() == "https" { "wss" } else { "ws" };
        let _ = u.set_scheme(scheme);
        u
    }

    fn call(method: Method, url: Url, body: Option<serde_json::Value>) -> Call {
        Call {
            body: body.map(Body::Json),
            ..Call::new(method, url)
        }
    }

    /// `process/execute`: the command text goes to the sandbox's shell; stdout and stderr
    /// come back merged.
    pub async fn execute(
        &self,
        command: &str,
        cwd: &str,
        timeout: Duration,
    ) -> Result<ExecuteResponse> {
        let secs = timeout.as_secs().max(1);
        let mut call = Self::call(
            Method::POST,
            self.url(&["process", "execute"]),
            Some(serde_json::json!({ "command": command, "cwd": cwd, "timeout": secs })),
        );
        call.timeout = Some(timeout + Duration::from_secs(15));
        self.http.json(call).await
    }

    pub async fn create_session(&self, session: &str) -> Result<()> {
        self.http
            .send(Self::call(
                Method::POST,
                self.url(&["process", "session"]),
                Some(serde_json::json!({ "sessionId": session })),
            ))
            .await
            .map(drop)
    }

    pub async fn sessions(&self) -> Result<Vec<Session>> {
        self.http
            .json(Self::call(
                Method::GET,
                self.url(&["process", "session"]),
                None,
            ))
            .await
    }

    /// Start a command in a session, asynchronously, its input not echoed into the log.
    pub async fn exec_async(&self, session: &str, command: &str) -> Result<String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Started {
            cmd_id: String,
        }
        let s: Started = self
            .http
            .json(Self::call(
                Method::POST,
                self.url(&["process", "session", session, "exec"]),
                Some(serde_json::json!({
                    "command": command,
                    "runAsync": true,
                    "suppressInputEcho": true,
                })),
            ))
            .await?;
        Ok(s.cmd_id)
    }

    /// `Ok(None)`: the session or command is gone (deleted, or the sandbox restarted).
    pub async fn command(&self, session: &str, cmd: &str) -> Result<Option<Command>> {
        match self
            .http
            .json(Self::call(
                Method::GET,
                self.url(&["process", "session", session, "command", cmd]),
                None,
            ))
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(DaytonaError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The whole log so far, raw (with the stream markers).
    pub async fn logs(&self, session: &str, cmd: &str) -> Result<Vec<u8>> {
        #[derive(Deserialize)]
        struct Logs {
            #[serde(default)]
            output: Option<String>,
        }
        let body = self
            .http
            .send(Self::call(
                Method::GET,
                self.url(&["process", "session", session, "command", cmd, "logs"]),
                None,
            ))
            .await?;
        // New SDK versions get JSON; an older server answers the raw log as text.
        match serde_json::from_slice::<Logs>(&body) {
            Ok(l) => Ok(l.output.unwrap_or_default().into_bytes()),
            Err(_) => Ok(body),
        }
    }

    pub async fn input(&self, session: &str, cmd: &str, data: &str) -> Result<()> {
        self.http
            .send(Self::call(
                Method::POST,
                self.url(&["process", "session", session, "command", cmd, "input"]),
                Some(serde_json::json!({ "data": data })),
            ))
            .await
            .map(drop)
    }

    /// Delete a session: its commands are killed (SIGTERM, then SIGKILL after ~5 s). An
    /// already gone session counts as deleted.
    pub async fn delete_session(&self, session: &str) -> Result<()> {
        match self
            .http
            .send(Self::call(
                Method::DELETE,
                self.url(&["process", "session", session]),
                None,
            ))
            .await
        {
            Ok(_) | Err(DaytonaError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Upload files (`bulk-upload`: for each, the destination path part before its bytes).
    pub async fn upload(&self, files: Vec<(String, Vec<u8>)>) -> Result<()> {
        let files = std::sync::Arc::new(files);
        let make = move || {
            let mut form = reqwest::multipart::Form::new();
            for (i, (path, bytes)) in files.iter().enumerate() {
                form = form.text(format!("files[{i}].path"), path.clone()).part(
                    format!("files[{i}].file"),
                    reqwest::multipart::Part::bytes(bytes.clone()).file_name(path.clone()),
                );
            }
            form
        };
        let mut call = Self::call(Method::POST, self.url(&["files", "bulk-upload"]), None);
        call.body = Some(Body::Form(Box::new(make)));
        call.timeout = Some(Duration::from_secs(1800));
        self.http.send(call).await.map(drop)
    }

    /// A file's bytes; `Ok(None)`: no such file (a 404, often with an empty body).
    pub async fn download(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let mut url = self.url(&["files", "download"]);
        url.query_pairs_mut().append_pair("path", path);
        let mut call = Self::call(Method::GET, url, None);
        call.timeout = Some(Duration::from_secs(1800));
        match self.http.send(call).await {
            Ok(b) => Ok(Some(b)),
            Err(DaytonaError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn make_folder(&self, path: &str) -> Result<()> {
        let mut url = self.url(&["files", "folder"]);
        url.query_pairs_mut()
            .append_pair("path", path)
            .append_pair("mode", "755");
        self.http
            .send(Self::call(Method::POST, url, None))
            .await
            .map(drop)
    }

    pub async fn git_clone(&self, url: &str, path: &str) -> Result<()> {
        let mut call = Self::call(
            Method::POST,
            self.url(&["git", "clone"]),
            Some(serde_json::json!({ "url": url, "path": path })),
        );
        call.timeout = Some(Duration::from_secs(1800));
        self.http.send(call).await.map(drop)
    }
}
