//! The user's MCP servers, as a sandbox can take them without a secret the user did not
//! name:
//!
//! - a remote (HTTP or SSE) server is reached through the supervisor's relay, which adds
//!   its credentials outside the sandbox: the headers the user configured (`${VAR}`s
//!   expanded here) or the token their own `claude` got by logging in to it. The agent's
//!   entry names only the relay's address and a token worthless beyond its process; so
//!   `--network none` reaches it too. Where the sandbox has no relay (a remote engine), a
//!   server that needs credentials is left out and said so;
//! - a stdio server runs in the sandbox. Its environment passes when nothing in it looks
//!   like a secret; a secret passes only when the user names it for that server
//!   (`[mcp.secrets] server = ["VAR"]`), reaching it through the agent's environment
//!   (never the command line), and the session says so. Otherwise the server is left
//!   out, with what to name.

use harvest_protocol::Secret;
use harvest_protocol::mcp::{McpTarget, RELAY_HEADER, RELAY_TOKEN_VAR, relay_address_var};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// What the agent's `--mcp-config` holds and what goes with it.
#[derive(Debug, Default)]
pub struct Placed {
    pub servers: Map<String, Value>,
    pub relays: Vec<McpTarget>,
    pub secret_env: BTreeMap<String, Secret>,
    /// `server: VAR` for each named secret that enters the sandbox.
    pub secrets_inside: Vec<String>,
}

/// User-scope servers, then the project's over them, as the user wrote them.
pub fn configured(
    claude_json: &Path,
    projects: &[String],
    notes: &mut Vec<String>,
) -> Map<String, Value> {
    let Ok(text) = std::fs::read_to_string(claude_json) else {
        return Map::new();
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        notes.push(format!(
            "{} is not valid JSON; no MCP server came along",
            claude_json.display()
        ));
        return Map::new();
    };
    let mut servers = Map::new();
    let mut add = |from: &Value| {
        if let Some(m) = from.as_object() {
            for (name, server) in m {
                servers.insert(name.clone(), server.clone());
            }
        }
    };
    add(&v["mcpServers"]);
    for key in projects {
        add(&v["projects"][key]["mcpServers"]);
    }
    servers
}

/// How the servers are given to a sandbox. `relays`: the sandbox relays remote servers;
/// `named`: `[mcp.secrets]`; `env`: where `${VAR}`s are looked up (the daemon's own
/// environment, as the user's `claude` would); `oauth`: the tokens their `claude` holds
/// for remote servers (its `.credentials.json`'s `mcpOAuth`).
pub struct Placing<'a> {
    pub relays: bool,
    pub named: &'a BTreeMap<String, Vec<String>>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub oauth: &'a Value,
}

pub fn place(servers: Map<String, Value>, how: &Placing<'_>, notes: &mut Vec<String>) -> Placed {
    let mut out = Placed::default();
    for (name, server) in servers {
        let kind = server["type"]
            .as_str()
            .unwrap_or(if server.get("url").is_some() {
                "http"
            } else {
                "stdio"
            })
            .to_owned();
        let placed = match kind.as_str() {
            "stdio" => stdio(&name, server, how, &mut out),
            "http" | "sse" => remote(&name, &kind, server, how, &mut out),
            other => Err(format!(
                "its transport {other} is not one Harvest can give a sandbox"
            )),
        };
        match placed {
            Ok(entry) => {
                out.servers.insert(name, entry);
            }
            Err(why) => notes.push(format!("the MCP server {name} was left out: {why}")),
        }
    }
    out
}

/// Variables whose names say they hold a secret.
pub fn looks_secret(name: &str) -> bool {
    let k = name.to_ascii_uppercase();
    [
        "TOKEN",
        "KEY",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "COOKIE",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// `${VAR}` and `${VAR:-default}` in `text`, from `env`; the name of the first variable
/// that is unset (and has no default) otherwise.
fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &rest[start + 2..start + end];
        let (var, default) = match inner.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (inner, None),
        };
        match (env(var), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(var.to_owned()),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn stdio(
    name: &str,
    mut server: Value,
    how: &Placing<'_>,
    out: &mut Placed,
) -> Result<Value, String> {
    let named = how.named.get(name).map(Vec::as_slice).unwrap_or(&[]);
    let Some(o) = server.as_object_mut() else {
        return Err("it is not a JSON object".into());
    };
    let env = o
        .remove("env")
        .and_then(|e| e.as_object().cloned())
        .unwrap_or_default();
    let mut given = Map::new();
    let mut unnamed = Vec::new();
    for (key, value) in env {
        let text = value
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        if named.iter().any(|n| n == &key) {
            let value = expand(&text, how.env).map_err(|var| {
                format!("its secret {key} names ${{{var}}}, which is not set where the daemon runs")
            })?;
            // Through the agent's environment: never on its command line.
            let var = format!("HARVEST_MCP_SECRET_{}", out.secret_env.len());
            out.secret_env.insert(var.clone(), Secret::new(value));
            given.insert(key.clone(), Value::String(format!("${{{var}}}")));
            out.secrets_inside.push(format!("{name}: {key}"));
        } else if looks_secret(&key) || text.contains("${") {
            unnamed.push(key);
        } else {
            given.insert(key, Value::String(text));
        }
    }
    if !unnamed.is_empty() {
        let list = unnamed
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "it needs env {} (no secret enters the sandbox unless you name it: \
             [mcp.secrets] {name} = [{list}] in harvest.toml)",
            unnamed.join(", ")
        ));
    }
    if !given.is_empty() {
        o.insert("env".into(), Value::Object(given));
    }
    Ok(server)
}

fn remote(
    name: &str,
    kind: &str,
    server: Value,
    how: &Placing<'_>,
    out: &mut Placed,
) -> Result<Value, String> {
    let url = server["url"].as_str().ok_or("it has no url")?;
    let url = expand(url, how.env).map_err(|var| {
        format!("its url names ${{{var}}}, which is not set where the daemon runs")
    })?;
    if server.get("headersHelper").is_some() {
        return Err(
            "its headersHelper is a command that would make its credentials inside \
                    the sandbox; put the headers in its \"headers\" instead"
                .into(),
        );
    }
    let mut headers = Vec::new();
    if let Some(h) = server["headers"].as_object() {
        for (key, value) in h {
            let text = value.as_str().unwrap_or_default();
            let value = expand(text, how.env).map_err(|var| {
                format!("its header {key} names ${{{var}}}, which is not set where the daemon runs")
            })?;
            headers.push((key.clone(), Secret::new(value)));
        }
    }
    let has_authorization = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
    if !has_authorization && let Some(token) = login_token(name, &url, how.oauth)? {
        headers.push((
            "Authorization".into(),
            Secret::new(format!("Bearer {token}")),
        ));
    }
    if !how.relays {
        if !headers.is_empty() {
            return Err(
                "it needs credentials, and this sandbox's agent would hold them: \
                        no relay keeps them outside a remote sandbox yet (run it in a local \
                        or docker session)"
                    .into(),
            );
        }
        return Ok(serde_json::json!({"type": kind, "url": url}));
    }
    let Some(path) = harvest_proxy::mcp::relayed_path(&url) else {
        return Err(format!("its url {url} is not an http(s) URL"));
    };
    let index = out.relays.len();
    out.relays.push(McpTarget {
        server: name.to_owned(),
        url,
        headers,
        any_path: kind == "sse",
    });
    Ok(serde_json::json!({
        "type": kind,
        "url": format!("${{{}}}{path}", relay_address_var(index)),
        "headers": {RELAY_HEADER: format!("${{{RELAY_TOKEN_VAR}}}")},
    }))
}

/// The access token the user's own `claude` holds for this server (from logging in to it
/// through `/mcp`), if it has one that has not expired.
fn login_token(name: &str, url: &str, oauth: &Value) -> Result<Option<String>, String> {
    let Some(entries) = oauth.as_object() else {
        return Ok(None);
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for entry in entries.values() {
        if entry["serverName"].as_str() != Some(name) || entry["serverUrl"].as_str() != Some(url) {
            continue;
        }
        let Some(token) = entry["accessToken"].as_str().filter(|t| !t.is_empty()) else {
            continue;
        };
        if entry["expiresAt"].as_u64().is_some_and(|at| at <= now_ms) {
            return Err(
                "your login to it has expired: run `claude`, then /mcp, to log in \
                        again (Harvest uses your login but does not refresh it)"
                    .into(),
            );
        }
        return Ok(Some(token.to_owned()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "SET" => Some("value".into()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_claude_codes_forms() {
        assert_eq!(expand("Bearer ${SET}", &env).unwrap(), "Bearer value");
        assert_eq!(expand("${UNSET:-dflt}/x", &env).unwrap(), "dflt/x");
        assert_eq!(expand("${UNSET}", &env).unwrap_err(), "UNSET");
        assert_eq!(expand("plain", &env).unwrap(), "plain");
    }

    fn placing<'a>(named: &'a BTreeMap<String, Vec<String>>, oauth: &'a Value) -> Placing<'a> {
        Placing {
            relays: true,
            named,
            env: &env,
            oauth,
        }
    }

    #[test]
    fn a_remote_servers_credentials_stay_with_the_relay() {
        let named = BTreeMap::new();
        let oauth = serde_json::json!({"oauthed|abc": {"serverName": "oauthed",
            "serverUrl": "https://mcp.example.com/v1/mcp", "accessToken": "oauth-tok"}});
        let servers = serde_json::json!({
            "remote": {"type": "http", "url": "https://mcp.example.com/v1/mcp?x=1"},
            "keyed": {"type": "http", "url": "https://k.example.com/mcp",
                      "headers": {"Authorization": "Bearer ${SET}"}},
            "oauthed": {"type": "http", "url": "https://mcp.example.com/v1/mcp"},
        });
        let servers = servers.as_object().unwrap().clone();
        let mut notes = Vec::new();
        let placed = place(servers, &placing(&named, &oauth), &mut notes);
        let text = Value::Object(placed.servers.clone()).to_string();
        assert!(
            !text.contains("value") && !text.contains("oauth-tok"),
            "{text}"
        );
        assert!(text.contains("${HARVEST_MCP_2}/v1/mcp?x=1"), "{text}");
        assert_eq!(placed.relays.len(), 3);
        let keyed = placed.relays.iter().find(|r| r.server == "keyed").unwrap();
        assert_eq!(keyed.headers[0].1.expose(), "Bearer value");
        let oauthed = placed
            .relays
            .iter()
            .find(|r| r.server == "oauthed")
            .unwrap();
        assert_eq!(oauthed.headers[0].1.expose(), "Bearer oauth-tok");
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_stdio_secret_enters_only_when_named() {
        let oauth = Value::Null;
        let servers = serde_json::json!({
            "db": {"command": "db-mcp", "env": {"DB_TOKEN": "tok-1", "LOG_LEVEL": "debug"}},
        });
        let servers = servers.as_object().unwrap().clone();
        let mut notes = Vec::new();
        let none = BTreeMap::new();
        let placed = place(servers.clone(), &placing(&none, &oauth), &mut notes);
        assert!(placed.servers.is_empty());
        assert!(
            notes[0].contains("[mcp.secrets] db = [\"DB_TOKEN\"]"),
            "{notes:?}"
        );
        assert!(!notes[0].contains("tok-1"));

        let named = BTreeMap::from([("db".to_owned(), vec!["DB_TOKEN".to_owned()])]);
        let mut notes = Vec::new();
        let placed = place(servers, &placing(&named, &oauth), &mut notes);
        let text = Value::Object(placed.servers.clone()).to_string();
        assert!(
            !text.contains("tok-1") && text.contains("LOG_LEVEL"),
            "{text}"
        );
        assert_eq!(placed.secret_env["HARVEST_MCP_SECRET_0"].expose(), "tok-1");
        assert_eq!(placed.secrets_inside, vec!["db: DB_TOKEN"]);
    }

    #[test]
    fn without_a_relay_a_server_needing_credentials_stays_out() {
        let named = BTreeMap::new();
        let oauth = Value::Null;
        let servers = serde_json::json!({
            "keyed": {"type": "http", "url": "https://k.example.com/mcp", "headers": {"X-Key": "k"}},
            "open": {"type": "http", "url": "https://o.example.com/mcp"},
        });
        let mut notes = Vec::new();
        let how = Placing {
            relays: false,
            named: &named,
            env: &env,
            oauth: &oauth,
        };
        let placed = place(servers.as_object().unwrap().clone(), &how, &mut notes);
        assert!(placed.servers.contains_key("open") && !placed.servers.contains_key("keyed"));
        assert!(placed.relays.is_empty());
        assert_eq!(notes.len(), 1);
    }
}
