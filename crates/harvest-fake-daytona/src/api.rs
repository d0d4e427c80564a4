//! The control-plane API under `/api` (reference §2, §4): create, get, list by label,
//! start, stop, archive, delete, preview links; the state machine of §2.5 with delays.

use crate::errors::{self, now};
use crate::jail::Jail;
use crate::state::{Lifecycle, Sandbox, Shared, State, lock};
use axum::Json;
use axum::extract::{Path, Query, RawQuery, State as Ext};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn sandbox_json(fake: &Shared, s: &Sandbox) -> Response {
    Json(s.to_json(&fake.toolbox_proxy_url(), false)).into_response()
}

fn not_found(path: &str, id: &str) -> Response {
    errors::api(
        StatusCode::NOT_FOUND,
        path,
        format!("Sandbox with ID or name {id} not found"),
    )
}

fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    name: Option<String>,
    snapshot: Option<String>,
    build_info: Option<Value>,
    #[serde(default)]
    env: Option<Value>,
    #[serde(default)]
    labels: Option<Value>,
    #[serde(default)]
    public: Option<bool>,
    #[serde(default)]
    network_block_all: Option<bool>,
    domain_allow_list: Option<String>,
    target: Option<String>,
    cpu: Option<i64>,
    gpu: Option<i64>,
    memory: Option<i64>,
    disk: Option<i64>,
    auto_stop_interval: Option<i64>,
    auto_archive_interval: Option<i64>,
    auto_delete_interval: Option<i64>,
}

fn string_map(v: &Option<Value>, what: &str) -> Result<BTreeMap<String, String>, String> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(format!("{what} values must be strings")),
            })
            .collect(),
        Some(_) => Err(format!("{what} must be an object")),
    }
}

pub async fn create(Ext(fake): Ext<Shared>, body: axum::body::Bytes) -> Response {
    let path = "/api/sandbox";
    let bad = |m: &str| errors::api(StatusCode::BAD_REQUEST, path, m);
    let b: CreateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad(&format!("Invalid request body: {e}")),
    };
    if b.snapshot.is_some() && b.build_info.is_some() {
        return bad("Cannot specify both snapshot and buildInfo");
    }
    for (n, v) in [
        ("cpu", b.cpu),
        ("gpu", b.gpu),
        ("memory", b.memory),
        ("disk", b.disk),
    ] {
        if v.is_some_and(|v| v < 0) {
            return bad(&format!("{n} must not be less than 0"));
        }
        if v.is_some() && b.build_info.is_none() {
            return bad("Cannot specify Sandbox resources when using a snapshot");
        }
    }
    let (env, labels) = match (string_map(&b.env, "env"), string_map(&b.labels, "labels")) {
        (Ok(e), Ok(l)) => (e, l),
        (Err(m), _) | (_, Err(m)) => return bad(&m),
    };
    if let Some(name) = &b.name
        && fake.find(name).is_some()
    {
        return errors::api(
            StatusCode::CONFLICT,
            path,
            format!("Sandbox with name {name} already exists"),
        );
    }
    let opts = fake.opts();
    let id = uuid::Uuid::new_v4().to_string();
    let jail = match Jail::create(opts.root.join(&id), opts.claude.clone(), id[..8].to_owned()) {
        Ok(j) => j,
        Err(e) => {
            return errors::api(
                StatusCode::INTERNAL_SERVER_ERROR,
                path,
                format!("An unexpected error occurred. ({e})"),
            );
        }
    };
    let sandbox = Arc::new(Sandbox {
        name: b.name.clone().unwrap_or_else(|| id.clone()),
        id: id.clone(),
        snapshot: b
            .snapshot
            .clone()
            .unwrap_or_else(|| "daytona-default".into()),
        target: b.target.clone().unwrap_or_else(|| "us".into()),
        env,
        labels,
        public: b.public.unwrap_or(false),
        network_block_all: b.network_block_all.unwrap_or(false),
        domain_allow_list: b.domain_allow_list.clone(),
        auto_stop: b.auto_stop_interval.unwrap_or(15),
        auto_archive: b.auto_archive_interval.unwrap_or(10080),
        auto_delete: b.auto_delete_interval.unwrap_or(-1),
        created_at: now(),
        seq: fake.seq.fetch_add(1, Ordering::SeqCst),
        life: std::sync::Mutex::new(Lifecycle {
            stored: State::Creating,
            desired: State::Started,
            error_reason: None,
            preview_token: token(),
            last_activity: Instant::now(),
            updated_at: now(),
        }),
        sessions: std::sync::Mutex::new(Default::default()),
        jail,
    });
    lock(&fake.sandboxes).insert(id.clone(), sandbox.clone());
    let fails = lock(&fake.faults).error_next_create.take();
    let response = sandbox_json(&fake, &sandbox);
    transition(&fake, &sandbox, State::Started, fails);
    response
}

/// Move a sandbox to `to` after the transition delay (or to `error` with a reason).
fn transition(fake: &Shared, s: &Arc<Sandbox>, to: State, fail: Option<String>) {
    {
        let mut life = s.life();
        life.desired = to;
        life.updated_at = now();
    }
    let (s, delay) = (s.clone(), fake.opts().transition);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if matches!(to, State::Stopped | State::Destroyed | State::Archived) {
            stop_processes(&s).await;
        }
        let mut life = s.life();
        if life.desired != to {
            return;
        }
        if let Some(reason) = fail {
            life.stored = State::Error;
            life.error_reason = Some(reason);
        } else {
            if to == State::Started && life.stored != State::Creating {
                // Starting from stopped or archived rotates the preview token (§4).
                life.preview_token = token();
            }
            life.stored = to;
            life.last_activity = Instant::now();
        }
        life.updated_at = now();
        if to == State::Destroyed {
            s.jail.remove();
        }
    });
}

/// A stopped sandbox keeps its files and loses its processes and sessions.
async fn stop_processes(s: &Sandbox) {
    let sessions: Vec<_> = s.sessions().drain().map(|(_, v)| v).collect();
    for sess in sessions {
        sess.kill(Duration::ZERO).await;
    }
}

pub async fn get(Ext(fake): Ext<Shared>, Path(id): Path<String>) -> Response {
    match fake.find(&id) {
        Some(s) => sandbox_json(&fake, &s),
        None => not_found(&format!("/api/sandbox/{id}"), &id),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    labels: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn list(
    Ext(fake): Ext<Shared>,
    Query(q): Query<ListQuery>,
    RawQuery(raw): RawQuery,
) -> Response {
    let path = "/api/sandbox";
    let want: BTreeMap<String, String> = match &q.labels {
        None => BTreeMap::new(),
        Some(l) => match serde_json::from_str(l) {
            Ok(m) => m,
            Err(_) => {
                return errors::api(StatusCode::BAD_REQUEST, path, "Invalid labels JSON format");
            }
        },
    };
    let states: Vec<String> = url_pairs(raw.as_deref().unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| k == "states")
        .map(|(_, v)| v)
        .collect();
    let limit = q.limit.unwrap_or(100);
    if !(1..=200).contains(&limit) {
        return errors::api(
            StatusCode::BAD_REQUEST,
            path,
            "limit must not be greater than 200",
        );
    }
    let mut all: Vec<Arc<Sandbox>> = lock(&fake.sandboxes)
        .values()
        .filter(|s| s.life().stored != State::Destroyed)
        .filter(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .filter(|s| states.is_empty() || states.iter().any(|st| st == s.life().shown()))
        .cloned()
        .collect();
    all.sort_by_key(|s| s.seq);
    let start: usize = q
        .cursor
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|s| s.to_json(&fake.toolbox_proxy_url(), true))
        .collect();
    let next = (start + limit < all.len()).then(|| (start + limit).to_string());
    Json(json!({"items": page, "nextCursor": next})).into_response()
}

/// `k=v&k=v` pairs, percent-decoded (repeated keys kept, which serde's Query does not).
fn url_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The lifecycle calls of §2.4, with their preconditions.
pub async fn action(
    Ext(fake): Ext<Shared>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    lifecycle(&fake, &id, &action).await
}

pub async fn delete(Ext(fake): Ext<Shared>, Path(id): Path<String>) -> Response {
    lifecycle(&fake, &id, "delete").await
}

async fn lifecycle(fake: &Shared, id: &str, action: &str) -> Response {
    let path = format!("/api/sandbox/{id}/{action}");
    let Some(s) = fake.find(id) else {
        return not_found(&path, id);
    };
    let bad = |m: &str| errors::api(StatusCode::BAD_REQUEST, &path, m);
    let (stored, busy) = {
        let l = s.life();
        (l.stored, l.in_transition())
    };
    if busy {
        return errors::api(
            StatusCode::CONFLICT,
            &path,
            "Sandbox state change in progress",
        );
    }
    let errored = matches!(stored, State::Error | State::BuildFailed);
    let to = match action {
        "delete" => State::Destroyed,
        _ if errored => return bad("Sandbox is in an errored state"),
        "start" => match stored {
            State::Started => return sandbox_json(fake, &s),
            State::Stopped | State::Archived => State::Started,
            _ => return bad("Sandbox is not in a startable state"),
        },
        "stop" => match stored {
            State::Started if s.auto_delete == 0 => State::Destroyed,
            State::Started => State::Stopped,
            _ => return bad("Sandbox is not in a stoppable state"),
        },
        "archive" => match stored {
            State::Stopped => State::Archived,
            _ => return bad("Sandbox is not stopped"),
        },
        other => return errors::api(StatusCode::NOT_FOUND, &path, format!("Cannot POST {other}")),
    };
    transition(fake, &s, to, None);
    sandbox_json(fake, &s)
}

pub async fn preview_url(
    Ext(fake): Ext<Shared>,
    Path((id, port)): Path<(String, String)>,
) -> Response {
    let path = format!("/api/sandbox/{id}/ports/{port}/preview-url");
    let Some(s) = fake.find(&id) else {
        return not_found(&path, &id);
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return errors::api(StatusCode::BAD_REQUEST, &path, "Invalid port"),
    };
    let token = s.life().preview_token.clone();
    Json(json!({
        "sandboxId": s.id,
        "url": format!("{}/_preview/{port}-{}", fake.opts().base, s.id),
        "token": token,
    }))
    .into_response()
}

pub async fn toolbox_proxy_url(Ext(fake): Ext<Shared>, Path(id): Path<String>) -> Response {
    match fake.find(&id) {
        Some(_) => Json(json!({"url": fake.toolbox_proxy_url()})).into_response(),
        None => not_found(&format!("/api/sandbox/{id}/toolbox-proxy-url"), &id),
    }
}

/// Auto-stop: a started sandbox without toolbox or preview traffic for its interval
/// stops (its processes end, its files stay).
pub fn spawn_auto_stop(fake: Shared) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let minute = fake.opts().minute;
            let idle: Vec<Arc<Sandbox>> = lock(&fake.sandboxes)
                .values()
                .filter(|s| {
                    let l = s.life();
                    s.auto_stop > 0
                        && l.stored == State::Started
                        && l.desired == State::Started
                        && l.last_activity.elapsed()
                            >= minute * u32::try_from(s.auto_stop).unwrap_or(u32::MAX)
                })
                .cloned()
                .collect();
            for s in idle {
                tracing::info!(sandbox = %s.id, "auto-stop after idle interval");
                transition(&fake, &s, State::Stopped, None);
            }
        }
    });
}
