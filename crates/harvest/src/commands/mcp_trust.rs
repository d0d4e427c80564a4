//! The question Claude Code asks before it starts a project's `.mcp.json` servers, asked
//! here before a session starts: once per folder and content (a changed file asks again),
//! remembered in Harvest's data folder, `--trust-project-mcp` for scripts. What is sent
//! to the daemon is the content name of the file as trusted; the daemon starts the
//! servers only while the file is still exactly that.

use anyhow::{Context, Result};
use harvest_config::Paths;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

const STORE: &str = "trusted-mcp.json";

/// The content name of `folder`'s `.mcp.json` if the user trusts it (now, or before).
pub fn decide(paths: &Paths, folder: Option<&Path>, trust_flag: bool) -> Result<Option<String>> {
    let Some(folder) = folder else {
        return Ok(None);
    };
    let Ok(bytes) = std::fs::read(folder.join(".mcp.json")) else {
        return Ok(None);
    };
    let name = harvest_protocol::content_name(&bytes);
    let store_path = paths.data_dir.join(STORE);
    let mut store: BTreeMap<String, String> = std::fs::read(&store_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let key = folder.display().to_string();
    if store.get(&key) == Some(&name) {
        return Ok(Some(name));
    }
    let trusted = trust_flag || (interactive() && ask(folder, &bytes)?);
    if !trusted {
        return Ok(None);
    }
    store.insert(key, name.clone());
    std::fs::create_dir_all(&paths.data_dir).ok();
    std::fs::write(&store_path, serde_json::to_vec_pretty(&store)?)
        .with_context(|| format!("cannot remember the trust in {}", store_path.display()))?;
    Ok(Some(name))
}

fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn ask(folder: &Path, bytes: &[u8]) -> Result<bool> {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "{}/.mcp.json asks to start these MCP servers in the session's sandbox:",
        folder.display()
    )?;
    for (name, server) in v["mcpServers"].as_object().into_iter().flatten() {
        let what = server["command"]
            .as_str()
            .map(|c| {
                let args: Vec<&str> = server["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str())
                    .collect();
                format!("{c} {}", args.join(" "))
            })
            .or_else(|| server["url"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let line = format!("  {name}: {what}");
        writeln!(
            err,
            "{}",
            harvest_termsafe::text(&line, harvest_termsafe::Sgr::Drop)
        )?;
    }
    write!(err, "Trust this file and start them? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
