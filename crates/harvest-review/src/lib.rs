//! Taking a session's work on this machine, for the CLI (`harvest apply`, `harvest pr`)
//! and the terminal client's review view alike.
//!
//! The patch is made by git inside the sandbox and is hostile: before anything of it
//! reaches the user's checkout, every path it names must be a plain relative path outside
//! `.git`, and it may make no link and no submodule. git then applies it all or nothing;
//! a file the user changed that the patch touches stops it with nothing written. git runs
//! here only in the user's own checkout, never in the session's repository.

mod files;

pub use files::{ChangedFile, split_patch};

use harvest_protocol::Secret;
use harvest_protocol::methods::{DiffResult, PrParams};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// What `apply` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The session works in the user's folder itself: nothing to bring.
    InPlace,
    /// The session changed nothing.
    Nothing,
    /// Written into the working tree, as plain changes.
    Clean { root: PathBuf, files: usize },
    /// Brought in by a 3-way merge (staged).
    Merged { root: PathBuf, files: usize },
    /// The checkout already holds exactly these changes (applied before): nothing written.
    AlreadyThere { root: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "this session's repository was not cloned from a folder here: say which checkout to \
         apply to (harvest apply ID --into DIR)"
    )]
    NoTarget,
    /// Files of the user's that the changes touch and do not apply over: nothing written.
    #[error("the session's changes conflict with your changes in {}: {}", root.display(), files.join(", "))]
    Conflict { root: PathBuf, files: Vec<String> },
    /// A 3-way merge left these files with both sides marked.
    #[error("the session's changes conflict with your commits in: {}", files.join(", "))]
    Merge { files: Vec<String> },
    #[error("{0}")]
    Refused(String),
}

/// Apply the session's patch to `into` (default: the repository it was cloned from).
pub fn apply(diff: &DiffResult, into: Option<&Path>) -> Result<Applied, ApplyError> {
    if diff.in_place {
        return Ok(Applied::InPlace);
    }
    let target = match (into, &diff.local_repo) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(repo)) => PathBuf::from(repo),
        (None, None) => return Err(ApplyError::NoTarget),
    };
    let patch = &patch_bytes(diff)?;
    if patch.is_empty() {
        return Ok(Applied::Nothing);
    }
    let root = toplevel(&target)?;
    let touched = check_patch(&root, patch)?;
    if git_apply(&root, patch, &["--check"])?.0 {
        let (ok, stderr) = git_apply(&root, patch, &[])?;
        if !ok {
            return Err(ApplyError::Refused(format!(
                "git apply failed in {}: {}",
                root.display(),
                shown(stderr.trim())
            )));
        }
        return Ok(Applied::Clean {
            root,
            files: touched.len(),
        });
    }
    // Applied already (a second `apply`): it would come off cleanly in reverse.
    if git_apply(&root, patch, &["--check", "--reverse"])?.0 {
        return Ok(Applied::AlreadyThere { root });
    }
    // It does not apply as it stands. A file the user changed here is theirs: say which,
    // write nothing. Over a clean checkout, a 3-way merge can still bring it in.
    let dirty = dirty_files(&root, &touched)?;
    if !dirty.is_empty() {
        return Err(ApplyError::Conflict { root, files: dirty });
    }
    let (ok, stderr) = git_apply(&root, patch, &["--3way"])?;
    if ok {
        return Ok(Applied::Merged {
            root,
            files: touched.len(),
        });
    }
    let files: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("U "))
        .map(shown)
        .collect();
    if files.is_empty() {
        return Err(ApplyError::Refused(format!(
            "the session's changes do not apply to {} (it may not hold the commit {} they start from): {}",
            root.display(),
            diff.base.get(..12).unwrap_or(&diff.base),
            shown(stderr.trim())
        )));
    }
    Err(ApplyError::Merge { files })
}

/// The patch's bytes as git made them in the sandbox.
pub fn patch_bytes(diff: &DiffResult) -> Result<Vec<u8>, ApplyError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(&diff.patch_b64)
        .map_err(|_| ApplyError::Refused("the daemon sent a patch that is not base64".into()))
}

/// A patch's name: what `harvest diff` prints beside it and `harvest apply --patch`
/// takes, so that what is applied is byte for byte what was reviewed (a process the
/// agent left running may change the workspace between the two). The first 16 hex
/// digits of its SHA-256.
pub fn patch_name(patch: &[u8]) -> String {
    harvest_protocol::content_name(patch)
}

/// The forge token, from the user's environment (GH_TOKEN, GITHUB_TOKEN) or the GitHub
/// CLI's login; it goes to the daemon for the one call that pushes and opens the pull
/// request, never into the sandbox or a file.
pub fn forge_token() -> Result<Secret, String> {
    for name in ["GH_TOKEN", "GITHUB_TOKEN"] {
        if let Ok(v) = std::env::var(name)
            && !v.trim().is_empty()
        {
            return Ok(Secret::new(v.trim()));
        }
    }
    if let Ok(out) = Command::new("gh").args(["auth", "token"]).output()
        && out.status.success()
    {
        let t = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !t.is_empty() {
            return Ok(Secret::new(t));
        }
    }
    Err(
        "no GitHub token: set GH_TOKEN or GITHUB_TOKEN (a token that may push and open pull \
         requests), or log in with `gh auth login`"
            .into(),
    )
}

/// What `session/pr` needs from this client, as the CLI and the terminal client send it
/// alike: the token, the API (GITHUB_API_URL, else the config's `github.api_url`), the
/// author from the user's git config.
pub fn pr_params(
    session: &str,
    configured_api: Option<String>,
    options: (bool, Option<String>, Option<String>),
) -> Result<PrParams, String> {
    let (draft, base, title) = options;
    Ok(PrParams {
        session: session.to_owned(),
        token: forge_token()?,
        api_url: std::env::var("GITHUB_API_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or(configured_api),
        base,
        title,
        draft,
        author: git_author(),
    })
}

/// Why a pull request cannot be opened for a repository cloned from the user's folder
/// `repo`: it has no `origin`, or its origin is a folder too. `None`: it has a remote (whose
/// forge the daemon checks).
pub fn no_forge_remote(repo: &Path) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["remote", "get-url", "origin"])
        .output()
        .ok()?;
    let origin = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || origin.is_empty() {
        return Some(format!(
            "{} has no `origin` remote, so there is nowhere to open a pull request: `a` applies the changes to it instead",
            shown(&repo.display().to_string())
        ));
    }
    let local = origin.starts_with('/') || origin.starts_with("file://") || origin.starts_with('.');
    local.then(|| {
        format!(
            "the origin of {} is a folder ({}), not a forge: `a` applies the changes instead, or push the branch yourself",
            shown(&repo.display().to_string()),
            shown(&origin)
        )
    })
}

/// `Name <email>` from the user's git config, for the commit Harvest makes.
pub fn git_author() -> Option<String> {
    let get = |key: &str| {
        Command::new("git")
            .args(["config", key])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    Some(format!("{} <{}>", get("user.name")?, get("user.email")?))
}

/// The top of the git work tree holding `dir`: the user's own, so git may run there.
fn toplevel(dir: &Path) -> Result<PathBuf, ApplyError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .map_err(|e| ApplyError::Refused(format!("cannot run git: {e}; install it")))?;
    if !out.status.success() {
        return Err(ApplyError::Refused(format!(
            "{} is not a git checkout: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The paths a patch touches, once each is known to be safe to write: plain, relative,
/// outside `.git`, and no link or submodule made or changed.
pub fn check_patch(root: &Path, patch: &[u8]) -> Result<Vec<String>, ApplyError> {
    let numstat = git_apply_output(root, patch, &["--numstat", "-z"])?;
    let mut touched = Vec::new();
    // `added\tdeleted\tpath\0`, or for a rename `added\tdeleted\t\0from\0to\0`.
    let mut fields = numstat.split('\0').filter(|f| !f.is_empty());
    while let Some(f) = fields.next() {
        let mut parts = f.splitn(3, '\t');
        match parts.nth(2) {
            Some(p) if !p.is_empty() => touched.push(p.to_owned()),
            _ => touched.extend(fields.by_ref().take(2).map(str::to_owned)),
        }
    }
    if let Some(p) = touched.iter().find(|p| !plain_relative(p)) {
        return Err(ApplyError::Refused(format!(
            "the session's patch names a path that is not a plain relative one outside .git \
             ({}); nothing was written",
            shown(p)
        )));
    }
    // Modes are read from the patch itself, not from git's summary (older git shows a
    // mode like 120644 as it came, and still makes a link of it): only plain files.
    if let Some(line) = String::from_utf8_lossy(patch)
        .lines()
        .find(|l| !plain_mode(l))
    {
        return Err(ApplyError::Refused(format!(
            "the session's patch makes a symbolic link, a submodule or an odd file mode ({}); \
             nothing was written: review it with `harvest diff` and apply what you trust by hand",
            shown(line.trim())
        )));
    }
    if let Some(dir) = plants_a_repository(Some(root), &touched) {
        return Err(ApplyError::Refused(format!(
            "the session's patch makes {} a git repository (a HEAD beside objects/ and refs/, or a commondir), \
             which would run its config wherever git runs there; nothing was written",
            shown(&dir)
        )));
    }
    Ok(touched)
}

/// A header line of the patch that sets a mode sets a regular file's (`100644`,
/// `100755`); every other line passes. Content lines start with `+`, `-`, ` `, `@` or
/// `\\`, and binary data (base85) has no spaces, so neither can pose as a header.
fn plain_mode(line: &str) -> bool {
    let mode = if let Some(m) = line
        .strip_prefix("new file mode ")
        .or_else(|| line.strip_prefix("new mode "))
        .or_else(|| line.strip_prefix("old mode "))
        .or_else(|| line.strip_prefix("deleted file mode "))
    {
        m
    } else if let Some(rest) = line.strip_prefix("index ") {
        match rest.split_whitespace().nth(1) {
            Some(m) => m,
            None => return true,
        }
    } else {
        return true;
    };
    matches!(mode.trim(), "100644" | "100755")
}

/// A folder the change would leave looking like a (bare) git repository to git: a `HEAD`
/// beside `objects/` and `refs/`, or a `HEAD` beside a `commondir` (which borrows another
/// folder's objects, refs and config). Judged on what the folder holds afterwards, the
/// change's files and what is on disk already together: a `HEAD` brought by one pull and
/// `objects/` by the next make a repository as surely as both at once.
pub fn plants_a_repository(root: Option<&Path>, touched: &[String]) -> Option<String> {
    let mut folders: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for path in touched {
        let mut dir = Path::new(path).parent();
        while let Some(d) = dir {
            folders.insert(d.to_string_lossy().into_owned());
            dir = d.parent();
        }
    }
    for dir in folders {
        let has = |name: &str| {
            let own = if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            };
            let inside = format!("{own}/");
            touched.iter().any(|p| *p == own || p.starts_with(&inside))
                || root.is_some_and(|r| std::fs::symlink_metadata(r.join(&own)).is_ok())
        };
        if has("HEAD") && (has("commondir") || (has("objects") && has("refs"))) {
            return Some(if dir.is_empty() { ".".into() } else { dir });
        }
    }
    None
}

/// `a/b.txt`: no root, no `..`, no `.`, no `.git` part, no NUL or newline.
pub fn plain_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains(['\0', '\n'])
        && Path::new(p).components().all(|c| match c {
            Component::Normal(part) => !part.eq_ignore_ascii_case(".git"),
            _ => false,
        })
}

/// The touched files that differ here from the checkout's HEAD, or are untracked.
fn dirty_files(root: &Path, touched: &[String]) -> Result<Vec<String>, ApplyError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "--literal-pathspecs",
            "status",
            "--porcelain",
            "-z",
            "--untracked-files=all",
            "--",
        ])
        .args(touched)
        .output()
        .map_err(|e| ApplyError::Refused(format!("cannot run git status: {e}")))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|e| e.len() > 3)
        .map(|e| shown(&e[3..]))
        .collect())
}

fn git_apply(root: &Path, patch: &[u8], args: &[&str]) -> Result<(bool, String), ApplyError> {
    let out = run_apply(root, patch, args)?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn git_apply_output(root: &Path, patch: &[u8], args: &[&str]) -> Result<String, ApplyError> {
    let out = run_apply(root, patch, args)?;
    if !out.status.success() {
        return Err(ApplyError::Refused(format!(
            "the session's patch cannot be read: {}",
            shown(String::from_utf8_lossy(&out.stderr).trim())
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_apply(root: &Path, patch: &[u8], args: &[&str]) -> Result<std::process::Output, ApplyError> {
    let failed = |e: std::io::Error| ApplyError::Refused(format!("cannot run git apply: {e}"));
    let mut child = Command::new("git")
        .arg("-C")
        .arg(root)
        .arg("apply")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed)?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| ApplyError::Refused("git apply's input".into()))?;
    let bytes = patch.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().map_err(failed)?;
    let _ = writer.join();
    Ok(out)
}

/// Sandbox-made text, safe to print.
pub fn shown(p: &str) -> String {
    harvest_termsafe::text(p, harvest_termsafe::Sgr::Drop).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{check_patch, plain_relative};

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
        let fine = check_patch(dir.path(), new_file("src/a.txt", "100644").as_bytes()).unwrap();
        assert_eq!(fine, ["src/a.txt"]);
        for (patch, why) in [
            (
                new_file(".git/hooks/post-checkout", "100755"),
                "plain relative",
            ),
            (new_file("sub/.git/config", "100644"), "plain relative"),
            (new_file("link", "120000"), "symbolic link"),
            (new_file("odd", "120644"), "symbolic link"),
            (new_file("sub", "160000"), "submodule"),
        ] {
            let err = check_patch(dir.path(), patch.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{patch}: {err}");
        }
        let bare = [
            new_file("x/HEAD", "100644"),
            new_file("x/objects/k", "100644"),
            new_file("x/refs/k", "100644"),
        ]
        .concat();
        let err = check_patch(dir.path(), bare.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("git repository"), "{err}");
        // A HEAD that borrows another folder's config through `commondir`.
        let borrowed = [
            new_file("a/HEAD", "100644"),
            new_file("a/commondir", "100644"),
        ]
        .concat();
        let err = check_patch(dir.path(), borrowed.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("git repository"), "{err}");
        // In two steps: the HEAD already there, objects and refs coming now.
        std::fs::create_dir_all(dir.path().join("y")).unwrap();
        std::fs::write(dir.path().join("y/HEAD"), "ref: refs/heads/main\n").unwrap();
        let rest = [
            new_file("y/objects/k", "100644"),
            new_file("y/refs/k", "100644"),
        ]
        .concat();
        let err = check_patch(dir.path(), rest.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("git repository"), "{err}");
        // git itself refuses a path that climbs out; that too stops it.
        assert!(check_patch(dir.path(), new_file("../escape.txt", "100644").as_bytes()).is_err());
    }
}
