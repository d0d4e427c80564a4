//! Command handlers: each turns a CLI command into calls on the client facade.

mod auth;
mod daemon;
mod demo;
mod mcp_trust;
mod pull;
mod review;
mod run;
mod sessions;
mod tui;

use crate::cli::{Cli, Command};
use anyhow::{Context, Result};
use harvest_agent::command::FORWARDED_ENV;
use harvest_client::Client;
use harvest_config::{Config, Paths};
use harvest_protocol::Secret;
use std::collections::BTreeMap;
use std::process::ExitCode;

pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let paths = Paths::from_env()?;
    let Some(command) = cli.command else {
        return tui::attach(&paths, harvest_tui::Initial::MostRecent).await;
    };
    match command {
        Command::Daemon { action, foreground } => daemon::run(&paths, action, foreground).await,
        Command::ScriptedModel { script, port } => demo::serve_script(&script, port).await,
        Command::Run { new, json, pr } => run::run(&paths, new, json, pr).await,
        Command::New { new, detach } => {
            use std::io::IsTerminal;
            if detach || !std::io::stdout().is_terminal() {
                run::new(&paths, new).await
            } else {
                let id = run::create_quiet(&paths, new).await?;
                tui::attach(&paths, harvest_tui::Initial::Session(id)).await
            }
        }
        Command::Attach { session } => {
            tui::attach(&paths, harvest_tui::Initial::Session(session)).await
        }
        Command::Demo { json } => demo::demo(&paths, json).await,
        Command::Auth => auth::auth(),
        Command::Ls { json } => sessions::ls(&paths, json).await,
        Command::Logs {
            session,
            json,
            follow,
            from_seq,
            full,
        } => {
            crate::render::show_outputs_whole(full);
            sessions::logs(&paths, &session, json, follow, from_seq).await
        }
        Command::Send { session, text } => sessions::send(&paths, &session, text).await,
        Command::Withdraw { session, message } => {
            sessions::withdraw(&paths, &session, message).await
        }
        Command::SendNow { session, message } => {
            sessions::send_now(&paths, &session, message).await
        }
        Command::Cancel { session } => sessions::cancel(&paths, &session).await,
        Command::Stop { session } => sessions::stop(&paths, &session).await,
        Command::Rm { session } => sessions::rm(&paths, &session).await,
        Command::Pull { session, patch } => pull::pull(&paths, &session, patch).await,
        Command::Diff { session, stat } => review::diff(&paths, &session, stat).await,
        Command::Apply {
            session,
            into,
            patch,
        } => review::apply(&paths, &session, into, patch).await,
        Command::Pr {
            session,
            draft,
            base,
            title,
        } => {
            let client = connect(&paths).await?;
            let options = review::PrOptions { draft, base, title };
            let pr = review::pull_request(&paths, &client, &session, options).await?;
            review::print_pr(&pr);
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { session } => sessions::resume(&paths, &session).await,
        Command::Wait { session } => sessions::wait(&paths, &session).await,
        Command::Rename { session, name } => sessions::rename(&paths, &session, name).await,
        Command::Cat { session, path } => sessions::cat(&paths, &session, path).await,
        Command::Fork { session, name } => sessions::fork(&paths, &session, name).await,
        Command::Approve {
            session,
            request,
            allow,
            always,
            deny,
            message,
            command,
        } => {
            let decision = match (allow, always, deny) {
                (_, true, _) => "always",
                (_, _, true) => "deny",
                (true, _, _) => "allow",
                _ => anyhow::bail!("say --allow, --always or --deny"),
            };
            sessions::approve(
                &paths,
                &session,
                request.as_deref(),
                decision,
                message,
                command,
            )
            .await
        }
    }
}

/// Connect to the daemon, starting it when it is not running.
pub async fn connect(paths: &Paths) -> Result<Client> {
    let exe = std::env::current_exe().context("cannot find the harvest executable")?;
    Ok(harvest_client::connect_or_start(paths, &exe, "harvest-cli").await?)
}

pub fn load_config(paths: &Paths) -> Result<Config> {
    Ok(Config::load(&paths.config_file())?)
}

/// The variables this client sends with a session: the agent's credentials, the config's
/// list, and a remote provider's own (DAYTONA_*, which the daemon keeps from the agent).
pub fn forwarded_env(config: &Config) -> BTreeMap<String, Secret> {
    let mut env = FORWARDED_ENV
        .iter()
        .chain(harvest_daytona::provider::CREDENTIAL_ENV)
        .map(|s| s.to_string())
        .chain(config.agent.forward_env.iter().cloned())
        .filter_map(|k| {
            let v = std::env::var(&k).ok().filter(|v| !v.is_empty())?;
            Some((k, Secret::new(v)))
        })
        .collect::<BTreeMap<_, _>>();
    // Without a key or token in the environment, the user's own Claude login (as their
    // `claude` would find it) goes by its path; the model proxy uses it from there.
    let has_credential = harvest_proxy::CREDENTIAL_VARS
        .iter()
        .any(|k| env.contains_key(*k));
    if !has_credential && let Some(path) = claude_login() {
        env.insert(
            harvest_protocol::secret::LOGIN_VAR.to_owned(),
            Secret::new(path.to_string_lossy().into_owned()),
        );
    }
    env
}

/// The subscription login the user's own `claude` would use.
pub fn claude_login() -> Option<std::path::PathBuf> {
    let config_dir = std::env::var_os("CLAUDE_CONFIG_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from);
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    harvest_proxy::login::find(config_dir.as_deref(), home.as_deref())
}
