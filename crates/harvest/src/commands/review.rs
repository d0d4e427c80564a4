//! `harvest diff ID [--stat]` and `harvest apply ID [--into DIR]`: review a session's
//! work against the commit it started from, and take it into the user's checkout.
//!
//! The patch is made by git inside the sandbox and is hostile: before anything of it
//! reaches the user's checkout, every path it names must be a plain relative path outside
//! `.git`, and it may make no link and no submodule. git then applies it all or nothing;
//! a file the user changed that the patch touches stops it with nothing written.

use super::connect;
use anyhow::{Context, Result, bail};
use harvest_config::Paths;
use harvest_protocol::methods::{self as m, DiffResult};
use std::io::{IsTerminal, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

pub async fn diff(paths: &Paths, session: &str, stat: bool) -> Result<ExitCode> {
    let r = fetch(paths, session, stat).await?;
    if r.patch.is_empty() {
        eprintln!(
            "no changes since {} (the commit the session started from)",
            short(&r.base)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if stat || out.is_terminal() {
        // For a person: what the sandbox wrote cannot drive their terminal.
        let shown = harvest_termsafe::text(&r.patch, harvest_termsafe::Sgr::Drop);
        out.write_all(shown.as_bytes())?;
    } else {
        // For `git apply` (a pipe or a file): the bytes as git made them.
        out.write_all(r.patch.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn apply(paths: &Paths, session: &str, into: Option<PathBuf>) -> Result<ExitCode> {
    let r = fetch(paths, session, false).await?;
    if r.in_place {
        println!("this session works in your folder itself: its changes are there already");
        return Ok(ExitCode::SUCCESS);
    }
    let target = match (into, &r.local_repo) {
        (Some(dir), _) => dir,
        (None, Some(repo)) => PathBuf::from(repo),
        (None, None) => bail!(
            "this session's repository was not cloned from a folder here: say which checkout \
             to apply to with `harvest apply {session} --into DIR`"
        ),
    };
    if r.patch.is_empty() {
        println!("nothing to apply: the session changed no file");
        return Ok(ExitCode::SUCCESS);
    }
    let root = toplevel(&target)?;
    let touched = check_patch(&root, &r.patch)?;
    let (ok, _) = git_apply(&root, &r.patch, &["--check"])?;
    if ok {
        let (ok, stderr) = git_apply(&root, &r.patch, &[])?;
        if !ok {
            bail!("git apply failed in {}: {}", root.display(), stderr.trim());
        }
        println!(
            "applied the session's changes to {} file(s) in {}; review them with `git diff` and commit when ready",
            touched.len(),
            root.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // It does not apply as it stands. A file the user changed here is theirs: say which,
    // write nothing. Over a clean checkout, a 3-way merge can still bring it in.
    let dirty = dirty_files(&root, &touched)?;
    if !dirty.is_empty() {
        eprintln!(
            "harvest: the session's changes conflict with changes of yours in {}; nothing was written:",
            root.display()
        );
        for f in &dirty {
            eprintln!("  {f}");
        }
        eprintln!(
            "harvest: commit or stash yours and run `harvest apply {session}` again (a 3-way merge), \
             or take the patch with `harvest diff {session} > session.patch`"
        );
        return Ok(ExitCode::from(1));
    }
    let (ok, stderr) = git_apply(&root, &r.patch, &["--3way"])?;
    if ok {
        println!(
            "applied the session's changes to {} file(s) in {} with a 3-way merge (staged); review them with `git diff --cached`",
            touched.len(),
            root.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let conflicted: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("U "))
        .collect();
    if conflicted.is_empty() {
        bail!(
            "the session's changes do not apply to {} (it may not hold the commit {} they start from): {}",
            root.display(),
            short(&r.base),
            shown(stderr.trim())
        );
    }
    eprintln!(
        "harvest: the session's changes conflict with commits of yours; the files below hold both sides, marked:"
    );
    for f in conflicted {
        eprintln!("  {}", shown(f));
    }
    eprintln!("harvest: resolve them, then `git add` them and commit");
    Ok(ExitCode::from(1))
}

pub struct PrOptions {
    pub draft: bool,
    pub base: Option<String>,
    pub title: Option<String>,
}

/// The forge token, from the user's environment (GH_TOKEN, GITHUB_TOKEN) or the GitHub
/// CLI's login; it goes to the daemon for the one call that pushes and opens the pull
/// request, never into the sandbox or a file.
pub fn forge_token() -> Result<harvest_protocol::Secret> {
    for name in ["GH_TOKEN", "GITHUB_TOKEN"] {
        if let Ok(v) = std::env::var(name)
            && !v.trim().is_empty()
        {
            return Ok(harvest_protocol::Secret::new(v.trim()));
        }
    }
    if let Ok(out) = Command::new("gh").args(["auth", "token"]).output()
        && out.status.success()
    {
        let t = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !t.is_empty() {
            return Ok(harvest_protocol::Secret::new(t));
        }
    }
    bail!(
        "no GitHub token: set GH_TOKEN or GITHUB_TOKEN (a token that may push and open pull \
         requests), or log in with `gh auth login`"
    )
}

pub async fn pull_request(
    paths: &Paths,
    client: &harvest_client::Client,
    session: &str,
    o: PrOptions,
) -> Result<m::PrResult> {
    let token = forge_token()?;
    let api_url = std::env::var("GITHUB_API_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            super::load_config(paths)
                .ok()
                .and_then(|c| c.github.api_url)
        });
    let git_config = |key: &str| {
        Command::new("git")
            .args(["config", key])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let author = match (git_config("user.name"), git_config("user.email")) {
        (Some(n), Some(e)) => Some(format!("{n} <{e}>")),
        _ => None,
    };
    Ok(client
        .call::<m::SessionPr>(m::PrParams {
            session: session.to_owned(),
            token,
            api_url,
            base: o.base,
            title: o.title,
            draft: o.draft,
            author,
        })
        .await?)
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

/// The top of the git work tree holding `dir`: the user's own, so git may run there.
fn toplevel(dir: &Path) -> Result<PathBuf> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .context("cannot run git; install it")?;
    if !out.status.success() {
        bail!(
            "{} is not a git checkout: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The paths a patch touches, once each is known to be safe to write: plain, relative,
/// outside `.git`, and no link or submodule made or changed.
fn check_patch(root: &Path, patch: &str) -> Result<Vec<String>> {
    let numstat = git_apply_output(root, patch, &["--numstat", "-z"])?;
    let mut touched = Vec::new();
    // `added\tdeleted\tpath\0`, or for a rename `added\tdeleted\t\0from\0to\0`.
    let mut fields = numstat.split('\0').filter(|f| !f.is_empty()).peekable();
    while let Some(f) = fields.next() {
        let mut parts = f.splitn(3, '\t');
        let (_, _, path) = (parts.next(), parts.next(), parts.next());
        match path {
            Some(p) if !p.is_empty() => touched.push(p.to_owned()),
            _ => {
                for _ in 0..2 {
                    if let Some(p) = fields.next() {
                        touched.push(p.to_owned());
                    }
                }
            }
        }
    }
    for p in &touched {
        if !plain_relative(p) {
            bail!(
                "the session's patch names a path that is not a plain relative one outside .git ({}); nothing was written",
                shown(p)
            );
        }
    }
    let summary = git_apply_output(root, patch, &["--summary"])?;
    if let Some(line) = summary
        .lines()
        .find(|l| l.contains(" 120000") || l.contains(" 160000"))
    {
        bail!(
            "the session's patch makes a symbolic link or a submodule ({}); nothing was written: \
             review it with `harvest diff` and apply what you trust by hand",
            shown(line.trim())
        );
    }
    Ok(touched)
}

/// `a/b.txt`: no root, no `..`, no `.`, no `.git` part, no NUL or newline.
fn plain_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains(['\0', '\n'])
        && Path::new(p).components().all(|c| match c {
            Component::Normal(part) => !part.eq_ignore_ascii_case(".git"),
            _ => false,
        })
}

/// The touched files that differ here from the checkout's HEAD, or are untracked.
fn dirty_files(root: &Path, touched: &[String]) -> Result<Vec<String>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["status", "--porcelain", "-z", "--untracked-files=all", "--"])
        .args(touched)
        .output()
        .context("cannot run git status")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|e| e.len() > 3)
        .map(|e| e[3..].to_owned())
        .collect())
}

fn git_apply(root: &Path, patch: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = run_apply(root, patch, args)?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn git_apply_output(root: &Path, patch: &str, args: &[&str]) -> Result<String> {
    let out = run_apply(root, patch, args)?;
    if !out.status.success() {
        bail!(
            "the session's patch cannot be read: {}",
            shown(String::from_utf8_lossy(&out.stderr).trim())
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_apply(root: &Path, patch: &str, args: &[&str]) -> Result<std::process::Output> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(root)
        .arg("apply")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run git apply")?;
    let mut stdin = child.stdin.take().context("git apply's input")?;
    let bytes = patch.as_bytes().to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().context("git apply")?;
    let _ = writer.join();
    Ok(out)
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Sandbox-made text, safe to print.
fn shown(p: &str) -> String {
    harvest_termsafe::text(p, harvest_termsafe::Sgr::Drop).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{check_patch, plain_relative};

    /// A sandbox that is wholly the agent's can answer with any patch at all: the check
    /// stands between it and the user's checkout.
    #[test]
    fn a_forged_patch_is_refused_before_git_applies_it() {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success());
        let new_file = |path: &str, mode: &str| {
            format!(
                "diff --git a/{path} b/{path}\nnew file mode {mode}\nindex 0000000..e69de29\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"
            )
        };
        let fine = check_patch(dir.path(), &new_file("src/a.txt", "100644")).unwrap();
        assert_eq!(fine, ["src/a.txt"]);
        for (patch, why) in [
            (
                new_file(".git/hooks/post-checkout", "100755"),
                "plain relative",
            ),
            (new_file("sub/.git/config", "100644"), "plain relative"),
            (new_file("link", "120000"), "symbolic link"),
        ] {
            let err = check_patch(dir.path(), &patch).unwrap_err().to_string();
            assert!(err.contains(why), "{patch}: {err}");
        }
        // git itself refuses a path that climbs out; that too stops it.
        assert!(check_patch(dir.path(), &new_file("../escape.txt", "100644")).is_err());
    }

    #[test]
    fn only_plain_paths_outside_git_are_written() {
        for ok in ["a.txt", "src/main.rs", ".github/x.yml", "a/.gitignore"] {
            assert!(plain_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../x",
            ".git/hooks/pre-commit",
            "a/.GIT/config",
            "a\nb",
        ] {
            assert!(!plain_relative(bad), "{bad:?}");
        }
    }
}
