//! The question Claude Code asks before it starts a project's `.mcp.json` servers, asked
//! on the terminal before a session starts (the store is `harvest_client::mcp_trust`,
//! shared with the TUI's new-session form); `--trust-project-mcp` for scripts.

use anyhow::{Context, Result};
use harvest_client::mcp_trust::{self, Trust};
use harvest_config::Paths;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

/// The content name of `folder`'s `.mcp.json` if the user trusts it (now, or before).
pub fn decide(paths: &Paths, folder: Option<&Path>, trust_flag: bool) -> Result<Option<String>> {
    let Some(folder) = folder else {
        return Ok(None);
    };
    let (name, servers) = match mcp_trust::lookup(&paths.data_dir, folder) {
        Trust::NoFile => return Ok(None),
        Trust::Trusted(name) => return Ok(Some(name)),
        Trust::Unknown { name, servers } => (name, servers),
    };
    let trusted = trust_flag || (interactive() && ask(folder, &servers)?);
    if !trusted {
        return Ok(None);
    }
    mcp_trust::remember(&paths.data_dir, folder, &name)
        .with_context(|| format!("cannot remember the trust in {}", paths.data_dir.display()))?;
    Ok(Some(name))
}

fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn ask(folder: &Path, servers: &[String]) -> Result<bool> {
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "{}/.mcp.json asks to start these MCP servers in the session's sandbox:",
        folder.display()
    )?;
    for line in servers {
        writeln!(
            err,
            "  {}",
            harvest_termsafe::text(line, harvest_termsafe::Sgr::Drop)
        )?;
    }
    write!(err, "Trust this file and start them? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
