//! Whether bubblewrap can make a jail here, and what to tell the user when it cannot;
//! cloning a `--repo` workspace on this machine.

use crate::{Result, SandboxError};
use std::path::Path;

/// The smallest jail with the namespaces we need: fails fast and says why.
pub async fn namespaces(bwrap: &Path) -> Result<()> {
    let out = tokio::process::Command::new(bwrap)
        .args([
            "--unshare-user",
            "--unshare-pid",
            "--unshare-net",
            "--ro-bind",
            "/",
            "/",
            "true",
        ])
        .output()
        .await
        .map_err(|e| SandboxError::Spawn(format!("{}: {e}", bwrap.display())))?;
    if out.status.success() {
        return Ok(());
    }
    Err(classify(String::from_utf8_lossy(&out.stderr).trim()))
}

/// Turn what bwrap printed into an error that says what is wrong and what to do.
pub fn classify(detail: &str) -> SandboxError {
    let apparmor =
        std::fs::read_to_string("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
            .is_ok_and(|v| v.trim() == "1");
    let fix = if detail.contains("RTM_NEWADDR") || detail.contains("loopback") {
        "This looks like a container that does not allow network namespaces (bwrap could \
         not set up loopback). Run Harvest on the host, give the container CAP_NET_ADMIN, \
         or use `--sandbox docker`."
            .to_owned()
    } else if apparmor {
        "AppArmor restricts unprivileged user namespaces on this machine \
         (kernel.apparmor_restrict_unprivileged_userns = 1, the Ubuntu 23.10+ default). \
         Allow bwrap with an AppArmor profile (see docs/configuration.md), or run \
         `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`."
            .to_owned()
    } else if detail.contains("namespace")
        || detail.contains("uid map")
        || detail.contains("Operation not permitted")
    {
        "Unprivileged user namespaces are probably disabled; enable them with \
         `sudo sysctl -w kernel.unprivileged_userns_clone=1` (Debian) or \
         `sudo sysctl -w user.max_user_namespaces=15000`."
            .to_owned()
    } else {
        return SandboxError::Spawn(detail.to_owned());
    };
    SandboxError::NoUserNamespaces {
        detail: detail.to_owned(),
        fix,
    }
}

/// `git clone` into a workspace of the session's own. Credentials in the URL are kept out
/// of the error text and out of the clone's `.git/config` (the agent can read it).
pub async fn clone(url: &str, parent: &Path, target: &Path) -> Result<()> {
    let shown = redact_url(url);
    let fail = |reason: String| SandboxError::BadWorkspace {
        path: target.to_owned(),
        reason,
    };
    std::fs::create_dir_all(parent)
        .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    let out = tokio::process::Command::new("git")
        // A local source is copied, never hardlinked: shared object files would let the
        // agent rewrite the source repository's history from inside its clone.
        .args(["clone", "--quiet", "--no-hardlinks", "--", url])
        .arg(target)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .map_err(|e| fail(format!("cannot run git to clone {shown}: {e}; install git")))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(target);
        let stderr = String::from_utf8_lossy(&out.stderr).replace(url, &shown);
        return Err(fail(format!("git clone {shown} failed: {}", stderr.trim())));
    }
    if shown != url {
        let _ = tokio::process::Command::new("git")
            .arg("-C")
            .arg(target)
            .args(["remote", "set-url", "origin", &shown])
            .output()
            .await;
    }
    Ok(())
}

/// `https://user:token@host/x` → `https://host/x`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, path)) => match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{host}/{path}"),
                None => url.to_owned(),
            },
            None => match rest.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{host}"),
                None => url.to_owned(),
            },
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_urls() {
        assert_eq!(
            redact_url("https://u:tok@example.com/o/r.git"),
            "https://example.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://example.com/o/r"),
            "https://example.com/o/r"
        );
        assert_eq!(redact_url("/local/path"), "/local/path");
    }

    #[test]
    fn container_loopback_failures_are_explained() {
        let e = classify("bwrap: loopback: Failed RTM_NEWADDR: Operation not permitted");
        assert!(e.to_string().contains("network namespaces"), "{e}");
    }
}
