//! `harvest diff ID [--stat]`, `harvest apply ID [--into DIR]` and `harvest pr ID`: review
//! a session's work against the commit it started from, take it into the user's checkout
//! (checked and applied by `harvest-review`), or have it pushed as a pull request.

use super::connect;
use anyhow::{Result, bail};
use harvest_config::Paths;
use harvest_protocol::methods::{self as m, DiffResult};
use harvest_review::{Applied, ApplyError};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

pub async fn diff(paths: &Paths, session: &str, stat: bool) -> Result<ExitCode> {
    let r = fetch(paths, session, stat).await?;
    let patch = harvest_review::patch_bytes(&r)?;
    if patch.is_empty() {
        eprintln!(
            "no changes since {} (the commit the session started from)",
            short(&r.base)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if stat || out.is_terminal() {
        // For a person: what the sandbox wrote cannot drive their terminal.
        let text = String::from_utf8_lossy(&patch);
        let shown = harvest_termsafe::text(&text, harvest_termsafe::Sgr::Drop);
        out.write_all(shown.as_bytes())?;
    } else {
        // For `git apply` (a pipe or a file): the bytes as git made them.
        out.write_all(&patch)?;
    }
    drop(out);
    if !stat {
        let name = harvest_review::patch_name(&patch);
        eprintln!(
            "this is patch {name}: `harvest apply {session} --patch {name}` applies exactly it"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn apply(
    paths: &Paths,
    session: &str,
    into: Option<PathBuf>,
    reviewed: Option<String>,
) -> Result<ExitCode> {
    if let Some(r) = &reviewed
        && (r.len() != 16 || !r.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        bail!(
            "--patch takes the name `harvest diff {session}` printed (its 16 hex digits: a \
             shorter prefix is one a process left in the sandbox could match), not {:?}",
            shown(r)
        );
    }
    let r = fetch(paths, session, false).await?;
    let name = harvest_review::patch_name(&harvest_review::patch_bytes(&r)?);
    if let Some(reviewed) = reviewed
        && !r.in_place
        && name != reviewed.to_ascii_lowercase()
    {
        eprintln!(
            "harvest: the session's changes are no longer patch {}, the one you reviewed: they \
             changed since (now patch {name}); nothing was written",
            shown(&reviewed)
        );
        eprintln!("harvest: review them again with `harvest diff {session}`");
        return Ok(ExitCode::from(1));
    }
    match harvest_review::apply(&r, into.as_deref()) {
        Ok(Applied::InPlace) => {
            println!("this session works in your folder itself: its changes are there already")
        }
        Ok(Applied::Nothing) => println!("nothing to apply: the session changed no file"),
        Ok(Applied::Clean { root, files }) => println!(
            "applied patch {name} to {files} file(s) in {}; review them with `git diff` and commit when ready",
            root.display()
        ),
        Ok(Applied::AlreadyThere { root }) => println!(
            "{} already holds the changes of patch {name} (applied before): nothing written",
            root.display()
        ),
        Ok(Applied::Merged { root, files }) => println!(
            "applied patch {name} to {files} file(s) in {} with a 3-way merge (staged); review them with `git diff --cached`",
            root.display()
        ),
        Err(ApplyError::Conflict { root, files }) => {
            eprintln!(
                "harvest: the session's changes conflict with changes of yours in {}; nothing was written:",
                root.display()
            );
            for f in &files {
                eprintln!("  {f}");
            }
            eprintln!(
                "harvest: commit or stash yours and run `harvest apply {session}` again (a 3-way merge), \
                 or take the patch with `harvest diff {session} > session.patch`"
            );
            return Ok(ExitCode::from(1));
        }
        Err(ApplyError::Merge { files }) => {
            eprintln!(
                "harvest: the session's changes conflict with commits of yours; the files below hold both sides, marked:"
            );
            for f in &files {
                eprintln!("  {f}");
            }
            eprintln!("harvest: resolve them, then `git add` them and commit");
            return Ok(ExitCode::from(1));
        }
        Err(ApplyError::NoTarget) => bail!(
            "this session's repository was not cloned from a folder here: say which checkout \
             to apply to with `harvest apply {session} --into DIR`"
        ),
        Err(e) => bail!("{e}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub struct PrOptions {
    pub draft: bool,
    pub base: Option<String>,
    pub title: Option<String>,
}

/// The forge token from the user's environment (see `harvest_review::forge_token`).
pub fn forge_token() -> Result<harvest_protocol::Secret> {
    harvest_review::forge_token().map_err(anyhow::Error::msg)
}

pub async fn pull_request(
    paths: &Paths,
    client: &harvest_client::Client,
    session: &str,
    o: PrOptions,
) -> Result<m::PrResult> {
    let configured = super::load_config(paths)
        .ok()
        .and_then(|c| c.github.api_url);
    let params = harvest_review::pr_params(session, configured, (o.draft, o.base, o.title))
        .map_err(anyhow::Error::msg)?;
    Ok(client.call::<m::SessionPr>(params).await?)
}

pub fn print_pr(pr: &m::PrResult) {
    if pr.existing {
        println!(
            "a pull request is open already for {}: #{} {}",
            shown(&pr.branch),
            pr.number,
            shown(&pr.url)
        );
    } else {
        println!(
            "opened pull request #{} for {}: {}",
            pr.number,
            shown(&pr.branch),
            shown(&pr.url)
        );
    }
}

async fn fetch(paths: &Paths, session: &str, stat: bool) -> Result<DiffResult> {
    let client = connect(paths).await?;
    Ok(client
        .call::<m::SessionDiff>(m::DiffParams {
            session: session.to_owned(),
            stat,
        })
        .await?)
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

use harvest_review::shown;
