//! One HTTP client for the API and the toolbox: the headers every call carries, Daytona's
//! errors, and the retry rule of the SDKs (a 429 waits for the server's `Retry-After-*`
//! hint, a 5xx or an unreachable service backs off exponentially).

use crate::error::{DaytonaError, Result};
use harvest_protocol::Secret;
use reqwest::{Method, StatusCode, Url};
use std::time::Duration;

/// Sent as `X-Daytona-SDK-Version`: the toolbox changes its output format by it, and at
/// 0.167.0 or later it splits stdout from stderr (markers in the log). The version the
/// provider was built against.
pub const SDK_VERSION: &str = "0.190.0";

/// How often a transient failure is tried again before it is reported.
const ATTEMPTS: u32 = 6;
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    key: Secret,
    /// Pauses are this much shorter in tests of the retry loop (1 = real time).
    pub(crate) backoff_scale: u32,
}

/// A request, kept so it can be sent again.
pub struct Call {
    pub method: Method,
    pub url: Url,
    pub body: Option<Body>,
    /// Sent at most once: a create must not be repeated blindly after a 5xx (it may have
    /// been made); only a 429, which refused it, is retried.
    pub once_unless_refused: bool,
    pub timeout: Option<Duration>,
}

impl Call {
    /// A call without a body, with the SDKs' 60 s lifecycle timeout.
    pub fn new(method: Method, url: Url) -> Call {
        Call {
            method,
            url,
            body: None,
            once_unless_refused: false,
            timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// `base` with these path segments appended (each escaped).
pub fn join(base: &Url, segments: &[&str]) -> Url {
    let mut u = base.clone();
    if let Ok(mut s) = u.path_segments_mut() {
        s.extend(segments);
    }
    u
}

pub enum Body {
    Json(serde_json::Value),
    /// A multipart form, built afresh for each attempt.
    Form(Box<dyn Fn() -> reqwest::multipart::Form + Send + Sync>),
}

impl Http {
    pub fn new(key: Secret) -> Result<Http> {
        // One process-wide TLS provider (ring), as the model proxy installs it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // The key is a bearer token: never carried to another host by a redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DaytonaError::Protocol(format!("HTTP client: {e}")))?;
        Ok(Http {
            client,
            key,
            backoff_scale: 1,
        })
    }

    pub fn key(&self) -> &Secret {
        &self.key
    }

    /// The headers of every call (and of the log WebSocket's upgrade).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("authorization", format!("Bearer {}", self.key.expose())),
            ("x-daytona-sdk-version", SDK_VERSION.to_owned()),
            ("x-daytona-source", "harvest".to_owned()),
        ]
    }

    /// Send, retrying what is transient; the body of a 2xx answer.
    pub async fn send(&self, call: Call) -> Result<Vec<u8>> {
        let mut attempt = 0;
        let mut waited = Duration::ZERO;
        loop {
            attempt += 1;
            let (err, hint) = match self.once(&call).await {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            let retry = err.is_transient()
                && attempt < ATTEMPTS
                && (!call.once_unless_refused || matches!(err, DaytonaError::RateLimited { .. }));
            if !retry {
                return Err(match err {
                    DaytonaError::RateLimited { message, .. } => {
                        DaytonaError::RateLimited { message, waited }
                    }
                    e => e,
                });
            }
            let pause = hint.unwrap_or_else(|| {
                (Duration::from_secs(1) * 2u32.saturating_pow(attempt - 1)).min(MAX_BACKOFF)
            }) / self.backoff_scale;
            tracing::info!(
                method = %call.method, path = call.url.path(), attempt, ?pause, error = %err,
                "daytona call failed; trying again"
            );
            waited += pause;
            tokio::time::sleep(pause).await;
        }
    }

    /// Send, and read the answer as JSON.
    pub async fn json<T: for<'de> serde::Deserialize<'de>>(&self, call: Call) -> Result<T> {
        let body = self.send(call).await?;
        serde_json::from_slice(&body).map_err(|e| DaytonaError::Protocol(e.to_string()))
    }

    /// One attempt: the body, or the error with the server's retry hint.
    async fn once(
        &self,
        call: &Call,
    ) -> std::result::Result<Vec<u8>, (DaytonaError, Option<Duration>)> {
        let mut req = self.client.request(call.method.clone(), call.url.clone());
        for (k, v) in self.headers() {
            req = req.header(k, v);
        }
        if let Some(t) = call.timeout {
            req = req.timeout(t);
        }
        req = match &call.body {
            Some(Body::Json(v)) => req
                .header("content-type", "application/json")
                .body(v.to_string()),
            Some(Body::Form(make)) => req.multipart(make()),
            None => req,
        };
        let resp = req.send().await.map_err(|e| {
            let url = redact(&call.url);
            let err = if e.is_timeout() {
                DaytonaError::Timeout(format!("{} {url}", call.method))
            } else {
                DaytonaError::Connection {
                    url,
                    message: root_cause(&e),
                }
            };
            (err, None)
        })?;
        let status = resp.status();
        let hint = retry_hint(resp.headers());
        let body = resp.bytes().await.map_err(|e| {
            (
                DaytonaError::Connection {
                    url: redact(&call.url),
                    message: root_cause(&e),
                },
                None,
            )
        })?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let hint = if status == StatusCode::TOO_MANY_REQUESTS {
            hint
        } else {
            None
        };
        Err((DaytonaError::from_status(status.as_u16(), &body), hint))
    }
}

/// The server's hint on a 429: any header named `retry-after…` (one per throttler), in
/// seconds.
fn retry_hint(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("retry-after"))
        .filter_map(|(_, v)| v.to_str().ok()?.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(300.0)))
        .max()
}

fn redact(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    u.to_string()
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_retry_after_header_of_any_throttler_is_the_hint() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after-sandbox-create", "2".parse().unwrap());
        h.insert("x-ratelimit-reset-sandbox-create", "9".parse().unwrap());
        assert_eq!(retry_hint(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_hint(&h), Some(Duration::from_secs(3)));
        assert_eq!(retry_hint(&reqwest::header::HeaderMap::new()), None);
    }
}
