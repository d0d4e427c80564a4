//! The toolbox's file and git routes (reference §3.7, §3.8). Each runs a small script in
//! the sandbox, so a path is resolved as the sandbox sees it: a planted link leads only
//! to the sandbox's own files, and a FIFO is not a regular file and is never read.

use crate::errors;
use crate::jail::{HOME, absolute};
use crate::state::Sandbox;
use axum::Json;
use axum::extract::Multipart;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

const WRITE: &str = r#"mkdir -p -- "$(dirname -- "$1")" && cat > "$1""#;
/// Exit 3: a directory; 4: not a regular file (missing, FIFO, device).
const READ: &str = r#"[ -d "$1" ] && exit 3; [ -f "$1" ] || exit 4; exec cat -- "$1""#;
/// name, size, octal mode, symbolic mode, uid, gid, type, mtime (seconds).
const INFO_FMT: &str = r"%f\t%s\t%m\t%M\t%U\t%G\t%y\t%T@\n";

async fn write(s: &Sandbox, path: &str, bytes: &[u8]) -> Result<(), String> {
    match s.jail.run(HOME, WRITE, &[path], bytes).await {
        Ok(o) if o.code == Some(0) => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

async fn read(s: &Sandbox, path: &str) -> Result<Vec<u8>, StatusCode> {
    match s.jail.run(HOME, READ, &[path], b"").await {
        Ok(o) if o.code == Some(0) => Ok(o.stdout),
        Ok(o) if o.code == Some(3) => Err(StatusCode::BAD_REQUEST),
        Ok(_) => Err(StatusCode::NOT_FOUND),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn file_info(line: &str) -> Option<Value> {
    let f: Vec<&str> = line.split('\t').collect();
    let [name, size, mode, symbolic, uid, gid, kind, mtime] = f.as_slice() else {
        return None;
    };
    let secs = mtime.split('.').next()?.parse::<i64>().ok()?;
    let modified = time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()?;
    Some(json!({
        "name": name, "size": size.parse::<u64>().unwrap_or(0), "mode": symbolic,
        "permissions": format!("0{mode}"), "owner": uid, "group": gid, "isDir": *kind == "d",
        "modifiedAt": modified, "modTime": modified,
    }))
}

async fn find(s: &Sandbox, path: &str, depth: &str) -> Option<Vec<Value>> {
    let script = format!(r#"find "$1" -mindepth {depth} -maxdepth {depth} -printf '{INFO_FMT}'"#);
    let o = s.jail.run(HOME, &script, &[path], b"").await.ok()?;
    if o.code != Some(0) {
        return None;
    }
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(file_info)
            .collect(),
    )
}

pub async fn route(
    sandbox: Arc<Sandbox>,
    method: &str,
    rest: &str,
    q: &HashMap<String, String>,
    body: axum::body::Bytes,
    multipart: Option<Multipart>,
) -> Response {
    let path = || absolute(q.get("path").map(String::as_str).unwrap_or("."));
    let here = format!("/{rest}");
    match (method, rest) {
        ("GET", "files") => match find(&sandbox, &path(), "1").await {
            Some(list) => Json(Value::Array(list)).into_response(),
            None => errors::empty(StatusCode::NOT_FOUND),
        },
        ("GET", "files/info") => match find(&sandbox, &path(), "0").await.and_then(|mut v| v.pop())
        {
            Some(info) => Json(info).into_response(),
            None => errors::empty(StatusCode::NOT_FOUND),
        },
        ("GET", "files/download") => match read(&sandbox, &path()).await {
            Ok(bytes) => {
                let name = path().rsplit('/').next().unwrap_or("file").to_owned();
                (
                    [
                        ("content-type", "application/octet-stream".to_owned()),
                        (
                            "content-disposition",
                            format!("attachment; filename={name}"),
                        ),
                    ],
                    bytes,
                )
                    .into_response()
            }
            Err(status) => errors::empty(status),
        },
        ("POST", "files/bulk-download") => bulk_download(&sandbox, &body).await,
        ("POST", "files/upload") => upload(&sandbox, &path(), multipart).await,
        ("POST", "files/bulk-upload") => bulk_upload(&sandbox, multipart).await,
        ("POST", "files/folder") => {
            let mode = q.get("mode").cloned().unwrap_or_else(|| "755".into());
            if !mode.chars().all(|c| c.is_ascii_digit() && c < '8') {
                return errors::toolbox(StatusCode::BAD_REQUEST, &here, method, "invalid mode");
            }
            match sandbox
                .jail
                .run(HOME, r#"mkdir -p -m "$2" -- "$1""#, &[&path(), &mode], b"")
                .await
            {
                Ok(o) if o.code == Some(0) => StatusCode::CREATED.into_response(),
                _ => errors::toolbox(
                    StatusCode::BAD_REQUEST,
                    &here,
                    method,
                    "cannot create the folder",
                ),
            }
        }
        ("DELETE", "files") => {
            let recursive = q.get("recursive").is_some_and(|r| r == "true");
            let script = if recursive {
                r#"[ -e "$1" ] || [ -L "$1" ] || exit 4; rm -rf -- "$1""#
            } else {
                r#"[ -e "$1" ] || [ -L "$1" ] || exit 4; [ -d "$1" ] && exit 3; rm -f -- "$1""#
            };
            match sandbox
                .jail
                .run(HOME, script, &[&path()], b"")
                .await
                .map(|o| o.code)
            {
                Ok(Some(0)) => StatusCode::NO_CONTENT.into_response(),
                Ok(Some(3)) => errors::toolbox(
                    StatusCode::BAD_REQUEST,
                    &here,
                    method,
                    "is a directory; set recursive=true",
                ),
                Ok(Some(4)) => errors::empty(StatusCode::NOT_FOUND),
                _ => errors::toolbox(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &here,
                    method,
                    "cannot delete",
                ),
            }
        }
        ("POST", "git/clone") => clone(&sandbox, &body).await,
        _ => errors::toolbox(
            StatusCode::NOT_FOUND,
            &here,
            method,
            "not found: no such route",
        ),
    }
}

async fn bulk_download(s: &Sandbox, body: &[u8]) -> Response {
    let paths: Vec<String> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| serde_json::from_value(v["paths"].clone()).ok())
        .unwrap_or_default();
    if paths.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "paths must not be empty"})),
        )
            .into_response();
    }
    let boundary = "DAYTONA-FILE-BOUNDARY";
    let mut out = Vec::new();
    for p in &paths {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match read(s, &absolute(p)).await {
            Ok(bytes) => {
                out.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"file\"; filename=\"{p}\"\r\n\
                         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                        bytes.len()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(&bytes);
            }
            Err(status) => {
                let code = if status == StatusCode::NOT_FOUND {
                    "FILE_NOT_FOUND"
                } else {
                    "INVALID_FILE_PATH"
                };
                let err = json!({"code": code, "message": format!("cannot read {p}"), "statusCode": status.as_u16()});
                out.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"error\"; filename=\"{p}\"\r\n\
                         Content-Type: application/json\r\n\r\n{err}"
                    )
                    .as_bytes(),
                );
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        [(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )],
        out,
    )
        .into_response()
}

async fn upload(s: &Sandbox, dest: &str, multipart: Option<Multipart>) -> Response {
    let Some(mut mp) = multipart else {
        return errors::empty(StatusCode::BAD_REQUEST);
    };
    while let Ok(Some(field)) = mp.next_field().await {
        if field.name() == Some("file") {
            let Ok(bytes) = field.bytes().await else {
                return errors::empty(StatusCode::BAD_REQUEST);
            };
            return match write(s, dest, &bytes).await {
                Ok(()) => StatusCode::OK.into_response(),
                Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
            };
        }
    }
    errors::empty(StatusCode::BAD_REQUEST)
}

/// `files[i].path` then `files[i].file`, for each i (§3.7).
async fn bulk_upload(s: &Sandbox, multipart: Option<Multipart>) -> Response {
    let Some(mut mp) = multipart else {
        return errors::empty(StatusCode::BAD_REQUEST);
    };
    let mut dests: HashMap<String, String> = HashMap::new();
    let (mut ok, mut errs) = (Vec::new(), Vec::new());
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"errors": [e.to_string()], "files": ok})),
                )
                    .into_response();
            }
        };
        let name = field.name().unwrap_or("").to_owned();
        let Some(index) = name
            .strip_prefix("files[")
            .and_then(|r| r.split_once(']'))
            .map(|(i, f)| (i.to_owned(), f.to_owned()))
        else {
            continue;
        };
        let Ok(bytes) = field.bytes().await else {
            errs.push(format!("{name}: cannot read the part"));
            continue;
        };
        match index.1.as_str() {
            ".path" => {
                dests.insert(index.0, String::from_utf8_lossy(&bytes).into_owned());
            }
            ".file" => match dests.get(&index.0) {
                Some(dest) => {
                    let dest = absolute(dest);
                    match write(s, &dest, &bytes).await {
                        Ok(()) => ok.push(json!({"path": dest, "bytes": bytes.len()})),
                        Err(e) => errs.push(format!("{dest}: {e}")),
                    }
                }
                None => errs.push(format!("files[{}].file came before its path", index.0)),
            },
            _ => {}
        }
    }
    if errs.is_empty() {
        Json(json!({"files": ok})).into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": errs, "files": ok})),
        )
            .into_response()
    }
}

async fn clone(s: &Sandbox, body: &[u8]) -> Response {
    let here = "/git/clone";
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (Some(url), Some(path)) = (v["url"].as_str(), v["path"].as_str()) else {
        return errors::toolbox(
            StatusCode::BAD_REQUEST,
            here,
            "POST",
            "url and path are required",
        );
    };
    let dest = absolute(path);
    let branch = v["branch"].as_str().unwrap_or("");
    let commit = v["commit_id"].as_str().unwrap_or("");
    let script = r#"set -e
if [ -n "$3" ]; then git clone --quiet --branch "$3" -- "$1" "$2"; else git clone --quiet -- "$1" "$2"; fi
if [ -n "$4" ]; then git -C "$2" checkout --quiet "$4"; fi"#;
    match s
        .jail
        .run(HOME, script, &[url, &dest, branch, commit], b"")
        .await
    {
        Ok(o) if o.code == Some(0) => StatusCode::OK.into_response(),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            let status = if err.contains("Authentication failed") {
                StatusCode::FORBIDDEN
            } else if err.contains("could not read Username")
                || err.contains("authentication required")
            {
                StatusCode::UNAUTHORIZED
            } else if err.contains("not found")
                || err.contains("does not exist")
                || err.contains("not appear to be a git repository")
            {
                StatusCode::NOT_FOUND
            } else if err.contains("already exists") {
                StatusCode::CONFLICT
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            errors::toolbox(
                status,
                here,
                "POST",
                format!("failed to clone repository: {err}"),
            )
        }
        Err(e) => errors::toolbox(
            StatusCode::INTERNAL_SERVER_ERROR,
            here,
            "POST",
            e.to_string(),
        ),
    }
}
