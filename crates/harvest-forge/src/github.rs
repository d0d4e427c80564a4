//! The pull-request calls of GitHub's REST API (github.com, Enterprise, or a forge on this
//! machine that speaks it): a repository's default branch, open a pull request, find the
//! open one for a branch.

use crate::{ForgeError, RepoName, Result};
use harvest_protocol::Secret;
use serde_json::{Value, json};
use std::time::Duration;

pub struct GitHub {
    api: String,
    token: Secret,
    client: reqwest::Client,
}

/// A pull request as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub url: String,
    pub number: u64,
    /// It was open already for this branch (a second `harvest pr`).
    pub existing: bool,
}

pub struct NewPullRequest<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub head: &'a str,
    pub base: &'a str,
    pub draft: bool,
}

impl GitHub {
    pub fn new(api: &str, token: Secret) -> Result<GitHub> {
        // One process-wide TLS provider (ring), as the other HTTP clients install it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // The token is a bearer token: never carried to another host by a redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("harvest")
            .build()
            .map_err(|e| ForgeError::Protocol(format!("HTTP client: {e}")))?;
        Ok(GitHub {
            api: api.trim_end_matches('/').to_owned(),
            token,
            client,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let url = format!("{}{path}", self.api);
        let mut req = self
            .client
            .request(method, &url)
            .bearer_auth(self.token.expose())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| ForgeError::Connection {
            url: self.api.clone(),
            message: e.without_url().to_string(),
        })?;
        let status = resp.status().as_u16();
        let value = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, value))
    }

    fn failed(repo: &RepoName, status: u16, v: &Value) -> ForgeError {
        let message = v["message"].as_str().unwrap_or("no message").to_owned();
        match status {
            401 => ForgeError::Unauthorized(message),
            403 => ForgeError::Forbidden {
                repo: repo.to_string(),
                message,
            },
            404 => ForgeError::NotARepo(repo.to_string()),
            _ => ForgeError::Refused(format!("{status}: {message}{}", details(v))),
        }
    }

    /// The branch a pull request goes into when none is named.
    pub async fn default_branch(&self, repo: &RepoName) -> Result<String> {
        let (status, v) = self
            .call(
                reqwest::Method::GET,
                &format!("/repos/{}/{}", repo.owner, repo.name),
                None,
            )
            .await?;
        if status != 200 {
            return Err(Self::failed(repo, status, &v));
        }
        v["default_branch"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ForgeError::Protocol("a repository without default_branch".into()))
    }

    /// Open the pull request; one already open for the branch is returned instead.
    pub async fn open(&self, repo: &RepoName, pr: &NewPullRequest<'_>) -> Result<PullRequest> {
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                &format!("/repos/{}/{}/pulls", repo.owner, repo.name),
                Some(json!({
                    "title": pr.title,
                    "body": pr.body,
                    "head": pr.head,
                    "base": pr.base,
                    "draft": pr.draft,
                })),
            )
            .await?;
        match status {
            201 => parse(&v, false),
            422 if details(&v).contains("already exists") => {
                self.find_open(repo, pr.head).await?.ok_or_else(|| {
                    ForgeError::Refused(format!(
                        "GitHub says a pull request exists for {} but lists none",
                        pr.head
                    ))
                })
            }
            _ => Err(Self::failed(repo, status, &v)),
        }
    }

    /// The open pull request whose head is `branch` in the repository itself.
    pub async fn find_open(&self, repo: &RepoName, branch: &str) -> Result<Option<PullRequest>> {
        let path = format!(
            "/repos/{}/{}/pulls?state=open&head={}:{}",
            repo.owner, repo.name, repo.owner, branch
        );
        let (status, v) = self.call(reqwest::Method::GET, &path, None).await?;
        if status != 200 {
            return Err(Self::failed(repo, status, &v));
        }
        match v.as_array().and_then(|a| a.first()) {
            Some(first) => parse(first, true).map(Some),
            None => Ok(None),
        }
    }
}

fn parse(v: &Value, existing: bool) -> Result<PullRequest> {
    Ok(PullRequest {
        url: v["html_url"]
            .as_str()
            .ok_or_else(|| ForgeError::Protocol("a pull request without html_url".into()))?
            .to_owned(),
        number: v["number"]
            .as_u64()
            .ok_or_else(|| ForgeError::Protocol("a pull request without number".into()))?,
        existing,
    })
}

/// GitHub's validation errors (`errors: [{message}|{code, field}]`), joined.
fn details(v: &Value) -> String {
    let Some(errors) = v["errors"].as_array() else {
        return String::new();
    };
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            e["message"].as_str().map(str::to_owned).unwrap_or_else(|| {
                format!(
                    "{} {}",
                    e["field"].as_str().unwrap_or(""),
                    e["code"].as_str().unwrap_or("")
                )
            })
        })
        .collect();
    format!(" ({})", parts.join("; "))
}
