//! The two error shapes Daytona answers with (reference §1.3): the API's (NestJS) and the
//! toolbox's (Go), plus the empty-bodied statuses of the file routes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An error of the control-plane API.
pub fn api(status: StatusCode, path: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "path": path,
        "timestamp": now(),
        "statusCode": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "message": message.into(),
    });
    (status, axum::Json(body)).into_response()
}

/// An error of the toolbox daemon or the proxy in front of it.
pub fn toolbox(
    status: StatusCode,
    path: &str,
    method: &str,
    message: impl Into<String>,
) -> Response {
    let code = match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        408 => "REQUEST_TIMEOUT",
        409 => "CONFLICT",
        410 => "GONE",
        422 => "UNPROCESSABLE_ENTITY",
        _ => "INTERNAL_SERVER_ERROR",
    };
    let body = json!({
        "statusCode": status.as_u16(),
        "message": message.into(),
        "code": code,
        "timestamp": now(),
        "path": path,
        "method": method,
    });
    (status, axum::Json(body)).into_response()
}

/// A status with no body at all, as many file handlers answer.
pub fn empty(status: StatusCode) -> Response {
    status.into_response()
}
