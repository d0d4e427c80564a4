//! The session's branch pushed from this machine. The sandbox hands over its commits as a
//! git bundle (data, checked by git as any fetched pack is); a throwaway bare repository
//! here takes the base branch from the remote, then the bundle on top, and pushes the
//! branch. The token reaches git through its environment (`GIT_CONFIG_*`), never a
//! command line, a config file or the remote URL.

use crate::{ForgeError, RepoName, Result};
use base64::Engine;
use harvest_protocol::Secret;
use std::path::Path;

/// The session's side of a push: its commits as a bundle, the commit it started from and
/// the one it says is its tip.
pub struct SessionCommits<'a> {
    pub bundle: &'a [u8],
    pub base: &'a str,
    pub tip: &'a str,
}

/// Push the session's commits (on top of `base_branch`, their tip as `HEAD`) to `branch`
/// of `repo`. What goes out is checked here first: the tip is the commit the sandbox
/// named, and it descends from the session's base. A branch there with other commits is
/// never overwritten.
pub async fn push_bundle(
    commits: SessionCommits<'_>,
    repo: &RepoName,
    base_branch: &str,
    branch: &str,
    token: &Secret,
) -> Result<()> {
    let bundle = commits.bundle;
    let io = |e: std::io::Error| ForgeError::Io(format!("cannot prepare the push: {e}"));
    let tmp = tempfile::tempdir().map_err(io)?;
    let git_dir = tmp.path().join("push.git");
    let bundle_file = tmp.path().join("session.bundle");
    std::fs::write(&bundle_file, bundle).map_err(io)?;
    let url = repo.push_url();
    let dir = git_dir.to_string_lossy().into_owned();
    git(tmp.path(), None, &["init", "-q", "--bare", &dir], token).await?;
    let base_ref = format!("+refs/heads/{base_branch}:refs/remotes/origin/{base_branch}");
    let fetch = ["fetch", "-q", "--no-tags", &url, &base_ref];
    git(&git_dir, Some(token), &fetch, token)
        .await
        .map_err(|e| relabel(e, branch))?;
    let bundle_path = bundle_file.to_string_lossy().into_owned();
    let into = format!("HEAD:refs/heads/{branch}");
    // Objects from the sandbox are checked as any fetched from a stranger.
    let fetch_bundle = [
        "-c",
        "transfer.fsckObjects=true",
        "fetch",
        "-q",
        &bundle_path,
        &into,
    ];
    git(&git_dir, None, &fetch_bundle, token)
        .await
        .map_err(|e| match e {
            ForgeError::Push { message, .. } => ForgeError::Push {
                branch: branch.to_owned(),
                message: format!(
                    "the session's commits do not sit on {base_branch} of {repo} ({message})"
                ),
            },
            other => other,
        })?;
    let tip_ref = format!("refs/heads/{branch}");
    let tip = git_out(&git_dir, &["rev-parse", "--verify", &tip_ref], token).await?;
    let descends = git(
        &git_dir,
        None,
        &["merge-base", "--is-ancestor", commits.base, &tip_ref],
        token,
    )
    .await;
    if tip.trim() != commits.tip || descends.is_err() {
        return Err(ForgeError::Push {
            branch: branch.to_owned(),
            message: format!(
                "the sandbox's commits are not what it reported (tip {}, expected {} on top of {}); nothing was pushed",
                tip.trim(),
                commits.tip,
                commits.base
            ),
        });
    }
    let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
    git(
        &git_dir,
        Some(token),
        &["push", "--porcelain", &url, &refspec],
        token,
    )
    .await
    .map_err(|e| relabel(e, branch))?;
    Ok(())
}

fn relabel(e: ForgeError, branch: &str) -> ForgeError {
    match e {
        ForgeError::Push { message, .. }
            if message.contains("non-fast-forward")
                || message.contains("fetch first")
                || message.contains("[rejected]") =>
        {
            ForgeError::BranchExists {
                branch: branch.to_owned(),
            }
        }
        ForgeError::Push { message, .. }
            if message.contains("Authentication failed")
                || message.contains("401")
                || message.contains("could not read Username") =>
        {
            ForgeError::Unauthorized(message)
        }
        ForgeError::Push { message, .. } if message.contains("403") => ForgeError::Forbidden {
            repo: "the remote".into(),
            message,
        },
        ForgeError::Push { message, .. } => ForgeError::Push {
            branch: branch.to_owned(),
            message,
        },
        other => other,
    }
}

/// `git ARGS` in `dir`: a bare repository of ours (or, for `init`, the folder to hold
/// one); nothing of the caller's git environment leaks in.
async fn git(dir: &Path, auth: Option<&Secret>, args: &[&str], token: &Secret) -> Result<()> {
    run(dir, auth, args, token).await.map(|_| ())
}

/// The same, for its output.
async fn git_out(dir: &Path, args: &[&str], token: &Secret) -> Result<String> {
    run(dir, None, args, token).await
}

/// How long one host-side git step may take: a push that stalls on the network ends
/// instead of holding the session.
const GIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

async fn run(dir: &Path, auth: Option<&Secret>, args: &[&str], token: &Secret) -> Result<String> {
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("x-access-token:{}", token.expose()));
    let mut cmd = tokio::process::Command::new("git");
    cmd.current_dir(dir);
    // Nothing of the caller's git environment: no other repository, no tracing that would
    // print the authorization header.
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "GIT_TRACE",
        "GIT_TRACE_CURL",
        "GIT_TRACE_PACKET",
        "GIT_CURL_VERBOSE",
        "GIT_TRACE_REDACT",
        "GIT_CONFIG_PARAMETERS",
    ] {
        cmd.env_remove(var);
    }
    // Nothing of the user's credential helpers or prompts: the token or nothing; and a
    // transfer slower than 1 KB/s for a minute is given up.
    cmd.args(["-c", "credential.helper=", "-c", "core.askPass="])
        .args([
            "-c",
            "http.lowSpeedLimit=1000",
            "-c",
            "http.lowSpeedTime=60",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true);
    if auth.is_some() {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env(
                "GIT_CONFIG_VALUE_0",
                format!("Authorization: Basic {basic}"),
            );
    }
    let out = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Ok(out) => out.map_err(|e| ForgeError::Io(format!("cannot run git: {e}; install git")))?,
        Err(_) => {
            return Err(ForgeError::Push {
                branch: String::new(),
                message: format!(
                    "git {} took longer than {} s",
                    args.first().unwrap_or(&""),
                    GIT_TIMEOUT.as_secs()
                ),
            });
        }
    };
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut message = String::from_utf8_lossy(&out.stderr).into_owned();
    message.push_str(&String::from_utf8_lossy(&out.stdout));
    // Whatever git says, the token is not repeated, plain or as its header.
    let message = message
        .replace(token.expose(), "***")
        .replace(&basic, "***")
        .trim()
        .to_owned();
    Err(ForgeError::Push {
        branch: String::new(),
        message,
    })
}
