//! The user's Claude subscription login (what `claude` / `/login` writes for Pro and Max
//! plans): found in `$CLAUDE_CONFIG_DIR/.credentials.json` or `~/.claude/.credentials.json`,
//! used and refreshed only here, in the model proxy outside every sandbox.
//!
//! Claude Code rotates the refresh token on every refresh and the old one stops working,
//! so two copies refreshed in two places log each other out. Hence: the file stays the
//! one copy. Each proxy reads the access token from it; the one that finds it (nearly)
//! expired takes Claude Code's own refresh locks (`<dir>/.oauth_refresh.lock` and the
//! legacy `<dir>.lock`, directories made with mkdir, stale after 60 s, as the CLI's
//! proper-lockfile makes them), reads the file again — another proxy, or the user's own
//! `claude`, may have refreshed meanwhile, and then that token is used — and only
//! otherwise refreshes, writing the rotated tokens back (atomically, mode 0600, every
//! other field kept). N sessions refresh once, and the user's `claude` keeps working.
//!
//! The agent gets a placeholder token (`hvp-…`) as `CLAUDE_CODE_OAUTH_TOKEN`, so the CLI
//! speaks as a subscription user; the placeholder is worthless anywhere but its proxy.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use harvest_protocol::secret::LOGIN_VAR;
/// Claude Code's token endpoint (observed in the pinned CLI, 2.1.330).
pub const TOKEN_URL: &str = "https://platform.claude.com/v1/oauth/token";
/// For tests only: a fake token endpoint. Read from the daemon's environment, which
/// nothing in a sandbox reaches.
pub const TOKEN_URL_FOR_TESTS_VAR: &str = "HARVEST_TEST_OAUTH_ENDPOINT";
/// Claude Code's OAuth client id.
const CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
/// A token this close to its expiry is refreshed before use.
const MARGIN_MS: i64 = 5 * 60 * 1000;
const LOCK_STALE: Duration = Duration::from_secs(60);
const LOCK_WAIT: Duration = Duration::from_secs(45);

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "cannot read the Claude login in {path}: {detail}; log in again with `claude` (or make a \
         long-lived token with `claude setup-token` and set CLAUDE_CODE_OAUTH_TOKEN)"
    )]
    Unreadable { path: PathBuf, detail: String },
    #[error(
        "the Claude login in {path} expired and could not be refreshed ({detail}); log in again \
         with `claude`, or set CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`"
    )]
    Refresh { path: PathBuf, detail: String },
    #[error("another process held the Claude login's refresh lock ({0}) for too long")]
    Locked(PathBuf),
}

/// What `harvest auth` shows of a login: never a token.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginInfo {
    pub path: PathBuf,
    pub subscription: Option<String>,
    /// Milliseconds since the epoch.
    pub expires_at_ms: Option<i64>,
}

/// The login file the user's own `claude` would use, when it holds a subscription login.
pub fn find(config_dir: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let path = match config_dir {
        Some(dir) => dir.join(".credentials.json"),
        None => home?.join(".claude").join(".credentials.json"),
    };
    describe(&path).ok().map(|_| path)
}

/// The login's kind and expiry, read from its file.
pub fn describe(path: &Path) -> Result<LoginInfo, LoginError> {
    let oauth = read(path)?;
    let oauth = &oauth["claudeAiOauth"];
    Ok(LoginInfo {
        path: path.to_owned(),
        subscription: oauth["subscriptionType"].as_str().map(str::to_owned),
        expires_at_ms: oauth["expiresAt"].as_i64(),
    })
}

fn read(path: &Path) -> Result<Value, LoginError> {
    let bad = |detail: String| LoginError::Unreadable {
        path: path.to_owned(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let token = v["claudeAiOauth"]["accessToken"].as_str().unwrap_or("");
    if token.is_empty() {
        return Err(bad("it holds no subscription login (claudeAiOauth)".into()));
    }
    Ok(v)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A usable access token in the file's login, if it is not (nearly) expired.
fn fresh(v: &Value) -> Option<String> {
    let oauth = &v["claudeAiOauth"];
    let token = oauth["accessToken"].as_str()?;
    let expires = oauth["expiresAt"].as_i64().unwrap_or(i64::MAX);
    (expires - now_ms() > MARGIN_MS).then(|| token.to_owned())
}

/// One proxy's use of the login.
pub struct Login {
    path: PathBuf,
    token_url: String,
    client: reqwest::Client,
    /// The token last used and when it expires, so a request costs no file read.
    cached: tokio::sync::Mutex<Option<(String, i64)>>,
}

impl Login {
    pub fn new(path: PathBuf, token_url: String, client: reqwest::Client) -> Self {
        Login {
            path,
            token_url,
            client,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The access token to put on a request, refreshed first when it is about to expire.
    pub async fn access_token(&self) -> Result<String, LoginError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && expires - now_ms() > MARGIN_MS
        {
            return Ok(token.clone());
        }
        let v = read(&self.path)?;
        let token = match fresh(&v) {
            Some(t) => t,
            None => self.refresh_locked().await?,
        };
        let v = read(&self.path).unwrap_or(v);
        let expires = v["claudeAiOauth"]["expiresAt"].as_i64().unwrap_or(i64::MAX);
        *cached = Some((token.clone(), expires));
        Ok(token)
    }

    /// The upstream refused `token`: the next request reads the file again (another
    /// holder may have rotated it) and refreshes if it is still the same.
    pub async fn rejected(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == token) {
            *cached = Some((token.to_owned(), 0));
        }
    }

    async fn refresh_locked(&self) -> Result<String, LoginError> {
        let dir = self.path.parent().unwrap_or(Path::new("/")).to_owned();
        let real = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let locks = [
            dir.join(".oauth_refresh.lock"),
            PathBuf::from(format!("{}.lock", real.display())),
        ];
        let mut held = Vec::new();
        for lock in &locks {
            match acquire(lock).await {
                Ok(()) => held.push(lock.clone()),
                Err(e) => {
                    release(&held);
                    return Err(e);
                }
            }
        }
        let result = self.refresh_holding_the_lock().await;
        release(&held);
        result
    }

    async fn refresh_holding_the_lock(&self) -> Result<String, LoginError> {
        // Someone (another session's proxy, the user's own claude) may have refreshed
        // while we waited for the lock: their token is the one to use.
        let v = read(&self.path)?;
        if let Some(token) = fresh(&v) {
            tracing::debug!("the Claude login was refreshed by another holder");
            return Ok(token);
        }
        let fail = |detail: String| LoginError::Refresh {
            path: self.path.clone(),
            detail,
        };
        let oauth = &v["claudeAiOauth"];
        let refresh = oauth["refreshToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("the login has no refresh token".into()))?;
        let mut body = serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": CLIENT_ID,
        });
        if let Some(scopes) = oauth["scopes"].as_array() {
            let scopes: Vec<&str> = scopes.iter().filter_map(Value::as_str).collect();
            body["scope"] = Value::from(scopes.join(" "));
        }
        let resp = self
            .client
            .post(&self.token_url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| fail(format!("the token endpoint is out of reach: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| fail(format!("the token endpoint answered {status}: {e}")))?;
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| fail(format!("the token endpoint answered {status}: {e}")))?;
        if !status.is_success() {
            let why = answer["error_description"]
                .as_str()
                .or(answer["error"].as_str())
                .unwrap_or("no reason given");
            return Err(fail(format!("the token endpoint answered {status}: {why}")));
        }
        let access = answer["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("the token endpoint gave no access token".into()))?
            .to_owned();
        let mut updated = v.clone();
        let o = &mut updated["claudeAiOauth"];
        o["accessToken"] = Value::from(access.clone());
        if let Some(r) = answer["refresh_token"].as_str() {
            o["refreshToken"] = Value::from(r);
        }
        if let Some(secs) = answer["expires_in"].as_i64() {
            o["expiresAt"] = Value::from(now_ms() + secs * 1000);
        }
        write_back(&self.path, &updated).map_err(|e| fail(format!("cannot write it back: {e}")))?;
        tracing::info!(path = %self.path.display(), "refreshed the Claude login");
        Ok(access)
    }
}

/// Replace the file whole (a reader never sees half of it), private to the user.
fn write_back(path: &Path, v: &Value) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("json.harvest-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(serde_json::to_string(v).unwrap_or_default().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A lock as proper-lockfile makes it: a directory; one older than the stale age is a
/// dead holder's and is taken over.
async fn acquire(lock: &Path) -> Result<(), LoginError> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match std::fs::create_dir(lock) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let stale = std::fs::metadata(lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > LOCK_STALE);
                if stale {
                    let _ = std::fs::remove_dir(lock);
                    continue;
                }
            }
            Err(_) => return Err(LoginError::Locked(lock.to_owned())),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LoginError::Locked(lock.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn release(held: &[PathBuf]) {
    for lock in held.iter().rev() {
        let _ = std::fs::remove_dir(lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login_file(dir: &Path, expires_in_ms: i64) -> PathBuf {
        let path = dir.join(".credentials.json");
        let v = serde_json::json!({"claudeAiOauth": {
            "accessToken": "sk-ant-oat01-old", "refreshToken": "sk-ant-ort01-r0",
            "expiresAt": now_ms() + expires_in_ms, "scopes": ["user:inference"],
            "subscriptionType": "max"}, "other": {"kept": true}});
        std::fs::write(&path, v.to_string()).unwrap();
        path
    }

    #[test]
    fn a_login_is_found_where_claude_keeps_it_and_described_without_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        assert_eq!(find(None, Some(home)), None, "no file, no login");
        let path = login_file(&home.join(".claude"), 3_600_000);
        assert_eq!(find(None, Some(home)), Some(path.clone()));
        let info = describe(&path).unwrap();
        assert_eq!(info.subscription.as_deref(), Some("max"));
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(
            find(Some(elsewhere.path()), Some(home)),
            None,
            "CLAUDE_CONFIG_DIR wins"
        );
    }

    #[tokio::test]
    async fn a_fresh_token_is_used_as_it_is_and_a_held_lock_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = login_file(dir.path(), 3_600_000);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let login = Login::new(
            path,
            "http://127.0.0.1:9/unused".into(),
            reqwest::Client::new(),
        );
        assert_eq!(login.access_token().await.unwrap(), "sk-ant-oat01-old");
        // A lock younger than the stale age is someone's: it is waited for, then taken.
        let lock = dir.path().join(".oauth_refresh.lock");
        std::fs::create_dir(&lock).unwrap();
        let waiter = tokio::spawn(async move { acquire(&lock).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished());
        std::fs::remove_dir(dir.path().join(".oauth_refresh.lock")).unwrap();
        waiter.await.unwrap().unwrap();
    }
}
