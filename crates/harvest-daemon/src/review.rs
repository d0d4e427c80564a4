//! Harvest's own git work on a session's repository: its branch at the start, its diff
//! against where it started.
//!
//! Every git command runs inside the sandbox, through the provider's one-shot exec,
//! never on this machine: the repository's `.git` is the agent's to write, and a config
//! it wrote (`core.fsmonitor`, a diff driver, a filter) would run its commands wherever
//! git runs. Inside the sandbox that gains it nothing it did not have. What comes out
//! (the base, the patch) is data, checked by whoever uses it.

use harvest_protocol::methods::DIFF_MAX;
use harvest_protocol::rpc::{RpcError, codes};
use harvest_sandbox::{ExecLimits, Sandbox};
use std::time::Duration;

/// Git as Harvest runs it in a workspace whose owner may differ from the sandbox's user
/// (a clone given to the agent, a folder of the user's), with no pager and no colour.
const GIT: &str = "git -c safe.directory='*' -c core.pager=cat -c color.ui=never";

/// `harvest/<slug>-<id>`: the first prompt's first words, lowercased, then the id.
pub fn branch_name(id: &str, prompt: Option<&str>) -> String {
    let mut slug = String::new();
    for word in prompt
        .unwrap_or_default()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if slug.len() + word.len() > 30 {
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(&word.to_ascii_lowercase());
    }
    if slug.is_empty() {
        slug.push_str("session");
    }
    format!("harvest/{slug}-{id}")
}

/// What the start of a session found of its repository.
pub struct Started {
    /// The commit it starts from.
    pub base: String,
}

/// Put a fresh clone on its own `branch` (when given) and record the commit it starts
/// from. `Ok(None)`: the workspace is not a git repository with a commit, so the session
/// has no base to diff against.
pub async fn start(sandbox: &dyn Sandbox, branch: Option<&str>) -> Result<Option<Started>, String> {
    let script = format!(
        r#"{GIT} rev-parse --verify -q HEAD >/dev/null 2>&1 || exit 3
if [ -n "$1" ]; then {GIT} checkout -q -b "$1" || exit 4; fi
{GIT} rev-parse HEAD"#
    );
    let out = run(sandbox, &script, branch.unwrap_or_default(), 64 * 1024).await?;
    match out.code {
        Some(0) => {}
        Some(3) => return Ok(None),
        _ => {
            return Err(format!(
                "cannot make the branch {}: {}",
                branch.unwrap_or_default(),
                tail(&out.stdout, &out.stderr)
            ));
        }
    }
    let base = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if base.len() != 40 || !base.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("git gave no commit for HEAD ({base:?})"));
    }
    Ok(Some(Started { base }))
}

/// The workspace against `base`: every file changed, made or deleted since, committed or
/// not (ignored files left out), as a binary-safe patch, or its `--stat` summary; the
/// bytes as git made them (they travel base64 from the sandbox, so no provider's text
/// handling can change them).
pub async fn diff(sandbox: &dyn Sandbox, base: &str, stat: bool) -> Result<Vec<u8>, RpcError> {
    // A throwaway index, so the agent's own staging is left as it is. Prefixes and paths
    // are spelled out: the repository's config (the agent's) could change them, and
    // `git apply` on the user's side strips exactly one `a/`.
    let script = format!(
        r#"tmp=$(mktemp -d) || exit 5
trap 'rm -rf "$tmp"' EXIT
export GIT_INDEX_FILE="$tmp/index"
{GIT} add -A . || exit 6
{GIT} -c core.quotepath=off diff --cached --no-ext-diff --no-textconv --no-relative --src-prefix=a/ --dst-prefix=b/ {} "$1" > "$tmp/out" || exit 8
base64 -w0 < "$tmp/out""#,
        if stat { "--stat=100" } else { "--binary" }
    );
    let out = run(sandbox, &script, base, DIFF_MAX / 3 * 4 + 4)
        .await
        .map_err(|e| RpcError::new(codes::SANDBOX_UNAVAILABLE, e))?;
    if out.truncated {
        return Err(RpcError::new(
            codes::INVALID_PARAMS,
            format!(
                "the session's changes are more than {} MiB as a patch; review them with git \
                 inside the session (harvest attach) or with --stat",
                DIFF_MAX >> 20
            ),
        ));
    }
    if out.code != Some(0) {
        return Err(RpcError::new(
            codes::SESSION_STATE,
            format!(
                "git diff in the sandbox failed: {}",
                tail(&out.stdout, &out.stderr)
            ),
        ));
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8_lossy(&out.stdout).trim())
        .map_err(|_| RpcError::new(codes::SESSION_STATE, "the sandbox's diff is not base64"))
}

/// The session's work as commits: what is not committed yet is committed (as `author`,
/// with `message`, the agent's hooks skipped), then everything since `base` leaves the
/// sandbox as a git bundle. `(the commit, the bundle)`.
pub async fn commit_and_bundle(
    sandbox: &dyn Sandbox,
    base: &str,
    message: &str,
    author: (&str, &str),
) -> Result<(String, Vec<u8>), String> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    // The message and the author travel base64-encoded: no quoting of sandbox-bound text.
    let script = format!(
        r#"set -e
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf %s "$2" | base64 -d > "$tmp/msg"
name=$(printf %s "$3" | base64 -d); email=$(printf %s "$4" | base64 -d)
{GIT} add -A .
if ! {GIT} diff --cached --quiet; then
  {GIT} -c user.name="$name" -c user.email="$email" -c core.hooksPath=/dev/null commit -q --no-verify -F "$tmp/msg"
fi
test "$({GIT} rev-list --count "$1..HEAD")" -gt 0 || exit 7
{GIT} bundle create -q "$tmp/b" "$1..HEAD" 2>/dev/null
{GIT} rev-parse HEAD
base64 -w0 < "$tmp/b""#
    );
    let argv = [
        "sh".to_owned(),
        "-c".to_owned(),
        script,
        "harvest-git".to_owned(),
        base.to_owned(),
        engine.encode(message),
        engine.encode(author.0),
        engine.encode(author.1),
    ];
    let out = sandbox
        .exec(
            &argv,
            ExecLimits {
                output_bytes: DIFF_MAX,
                timeout: Duration::from_secs(300),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    match out.code {
        Some(0) if !out.truncated => {}
        Some(0) => {
            return Err(format!(
                "the session's commits are more than {} MiB; push them with git from inside the session",
                DIFF_MAX >> 20
            ));
        }
        Some(7) => {
            return Err(
                "the session changed nothing since it started: there is nothing to push".into(),
            );
        }
        _ => {
            return Err(format!(
                "cannot commit in the sandbox: {}",
                tail(&out.stdout, &out.stderr)
            ));
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // The last two lines (a provider may mix git's warnings into the output before them).
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).rev();
    let encoded = lines.next().unwrap_or_default().trim();
    let commit = lines.next().unwrap_or_default().trim().to_owned();
    let bundle = engine
        .decode(encoded)
        .map_err(|_| "the sandbox's bundle is not base64".to_owned())?;
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) || bundle.is_empty() {
        return Err("the sandbox gave no commit to push".into());
    }
    Ok((commit, bundle))
}

async fn run(
    sandbox: &dyn Sandbox,
    script: &str,
    arg: &str,
    output_bytes: usize,
) -> Result<harvest_sandbox::ExecOutput, String> {
    let argv = ["sh", "-c", script, "harvest-git", arg].map(str::to_owned);
    sandbox
        .exec(
            &argv,
            ExecLimits {
                output_bytes,
                timeout: Duration::from_secs(120),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())
}

/// The end of what a failed command said, safe to show.
fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let text = if stderr.is_empty() { stdout } else { stderr };
    let text = String::from_utf8_lossy(text);
    let text = text.trim();
    let start = text.char_indices().rev().nth(400).map_or(0, |(i, _)| i);
    harvest_termsafe::text(&text[start..], harvest_termsafe::Sgr::Drop).into_owned()
}

#[cfg(test)]
mod tests {
    use super::branch_name;

    #[test]
    fn branch_names_are_short_slugs_of_the_prompt() {
        assert_eq!(
            branch_name("3f9a2c1d", Some("Refactor the parser!")),
            "harvest/refactor-the-parser-3f9a2c1d"
        );
        assert_eq!(
            branch_name(
                "ab",
                Some("Fix `rm -rf /` ../../x; and; then; much more text here")
            ),
            "harvest/fix-rm-rf-x-and-then-much-more-ab"
        );
        assert_eq!(branch_name("ab", None), "harvest/session-ab");
        assert_eq!(branch_name("ab", Some("日本語")), "harvest/session-ab");
    }
}
