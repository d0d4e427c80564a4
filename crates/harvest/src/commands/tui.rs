//! `harvest`, `harvest attach ID`, `harvest new` in a terminal: the terminal client.

use super::{forwarded_env, load_config};
use anyhow::{Context, Result, bail};
use harvest_config::Paths;
use std::io::IsTerminal;
use std::process::ExitCode;

pub async fn attach(paths: &Paths, initial: harvest_tui::Initial) -> Result<ExitCode> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "the terminal client needs a terminal; without one use `harvest ls`, `harvest logs ID --follow` or `harvest send`"
        );
    }
    let config = load_config(paths)?;
    let exe = std::env::current_exe().context("cannot find the harvest executable")?;
    let outcome = harvest_tui::run(harvest_tui::Options {
        paths: paths.clone(),
        exe,
        initial,
        env: forwarded_env(&config),
        keys: config.keys.clone(),
        github_api_url: config.github.api_url.clone(),
    })
    .await?;
    if let Some(id) = outcome.session {
        println!("[detached from {id}; `harvest attach {id}` to return]");
    }
    Ok(ExitCode::SUCCESS)
}
