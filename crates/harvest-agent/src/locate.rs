//! Finding the `claude` CLI: an explicit path (config or `HARVEST_CLAUDE`), then `PATH`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error(
        "the claude CLI was not found at {path} (from {source_name}); install it with \
         `npm install @anthropic-ai/claude-code` or fix the path"
    )]
    NotAtPath { path: PathBuf, source_name: String },
    #[error(
        "the claude CLI was not found (searched HARVEST_CLAUDE, the config's agent.claude_path \
         and PATH: {searched}); install it with `npm install -g @anthropic-ai/claude-code`, \
         or set HARVEST_CLAUDE=/path/to/claude"
    )]
    NotFound { searched: String },
}

/// `explicit` is the configured path, if any, and where it came from.
pub fn locate_claude(
    explicit: Option<(&Path, &str)>,
    path_var: Option<&str>,
) -> Result<PathBuf, LocateError> {
    if let Some((path, source_name)) = explicit {
        return if is_executable(path) {
            Ok(resolve_native(path))
        } else {
            Err(LocateError::NotAtPath {
                path: path.to_owned(),
                source_name: source_name.to_owned(),
            })
        };
    }
    let path_var = path_var.unwrap_or("");
    for dir in std::env::split_paths(path_var) {
        let candidate = dir.join("claude");
        if is_executable(&candidate) {
            return Ok(resolve_native(&candidate));
        }
    }
    Err(LocateError::NotFound {
        searched: path_var.to_owned(),
    })
}

/// The npm wrapper's `bin/claude.exe` is a copy of the native binary, and `.bin/claude` a
/// symlink to it; resolve symlinks so the sandbox can mount the one real file.
fn resolve_native(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_fix() {
        let err = locate_claude(None, Some("/nonexistent-a:/nonexistent-b")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("HARVEST_CLAUDE"), "{msg}");
        assert!(msg.contains("/nonexistent-a"), "{msg}");
    }

    #[test]
    fn explicit_path_that_is_not_executable_is_an_error() {
        let not_executable = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let err = locate_claude(Some((&not_executable, "HARVEST_CLAUDE")), None).unwrap_err();
        assert!(err.to_string().contains("HARVEST_CLAUDE"));
    }
}
