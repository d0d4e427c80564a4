//! The session's branch pushed from this machine. The sandbox hands over its commits as a
//! git bundle (data, checked by git as any fetched pack is); a throwaway bare repository
//! here takes the base branch from the remote, then the bundle on top, and pushes the
//! branch. The token reaches git through its environment (`GIT_CONFIG_*`), never a
//! command line, a config file or the remote URL.

use crate::{ForgeError, RepoName, Result};
use base64::Engine;
use harvest_protocol::Secret;
use std::path::Path;

/// Push `bundle` (commits on top of `base_branch`, its tip as `HEAD`) to `branch` of
/// `repo`. A branch there with other commits is never overwritten.
pub async fn push_bundle(
    bundle: &[u8],
    repo: &RepoName,
    base_branch: &str,
    branch: &str,
    token: &Secret,
) -> Result<()> {
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
    git(&git_dir, None, &["fetch", "-q", &bundle_path, &into], token)
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
            repo: String::new(),
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
    let mut cmd = tokio::process::Command::new("git");
    cmd.current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        // Nothing of the user's credential helpers or prompts: the token or nothing.
        .args(["-c", "credential.helper=", "-c", "core.askPass="])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .kill_on_drop(true);
    if let Some(t) = auth {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("x-access-token:{}", t.expose()));
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env(
                "GIT_CONFIG_VALUE_0",
                format!("Authorization: Basic {basic}"),
            );
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| ForgeError::Io(format!("cannot run git: {e}; install git")))?;
    if out.status.success() {
        return Ok(());
    }
    let mut message = String::from_utf8_lossy(&out.stderr).into_owned();
    message.push_str(&String::from_utf8_lossy(&out.stdout));
    // Whatever git says, the token is not repeated.
    let message = message.replace(token.expose(), "***").trim().to_owned();
    Err(ForgeError::Push {
        branch: String::new(),
        message,
    })
}
