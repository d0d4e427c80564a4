//! The trust Claude Code asks for before it starts a project's `.mcp.json` servers, kept
//! for every client of this user: once per folder and content (a changed file is asked
//! about again), in Harvest's data folder. The question itself is each client's (the
//! command line asks on the terminal, the TUI in its new-session form); what goes to the
//! daemon is the content name of the file as trusted, and the daemon starts the servers
//! only while the file is still exactly that.

use std::collections::BTreeMap;
use std::path::Path;

const STORE: &str = "trusted-mcp.json";

/// Where a folder's `.mcp.json` stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The folder has none.
    NoFile,
    /// Trusted as it is now: its content name.
    Trusted(String),
    /// Not trusted (never, or it changed since): its content name, and its servers as
    /// `name: command args` (or URL) lines, for the question. The lines are the file's,
    /// untrusted: a client makes them terminal-safe before it shows them.
    Unknown { name: String, servers: Vec<String> },
}

fn store(data_dir: &Path) -> BTreeMap<String, String> {
    std::fs::read(data_dir.join(STORE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Where `folder`'s `.mcp.json` stands for this user.
pub fn lookup(data_dir: &Path, folder: &Path) -> Trust {
    let Ok(bytes) = std::fs::read(folder.join(".mcp.json")) else {
        return Trust::NoFile;
    };
    let name = harvest_protocol::content_name(&bytes);
    if store(data_dir).get(&folder.display().to_string()) == Some(&name) {
        return Trust::Trusted(name);
    }
    Trust::Unknown {
        name,
        servers: servers(&bytes),
    }
}

/// Remember that the user trusts `folder`'s `.mcp.json` with content name `name`.
pub fn remember(data_dir: &Path, folder: &Path, name: &str) -> std::io::Result<()> {
    let mut all = store(data_dir);
    all.insert(folder.display().to_string(), name.to_owned());
    std::fs::create_dir_all(data_dir)?;
    let bytes = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
    std::fs::write(data_dir.join(STORE), bytes)
}

fn servers(bytes: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    v["mcpServers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, server)| {
            let what = server["command"]
                .as_str()
                .map(|c| {
                    let args: Vec<&str> = server["args"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str())
                        .collect();
                    format!("{c} {}", args.join(" ")).trim_end().to_owned()
                })
                .or_else(|| server["url"].as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("{name}: {what}")
        })
        .collect()
}
