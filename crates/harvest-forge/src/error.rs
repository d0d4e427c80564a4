//! What can go wrong between a pushed branch and a pull request, each with what to do.

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error(
        "no forge token: set GH_TOKEN or GITHUB_TOKEN (or log in with `gh auth login`) in the \
         environment of the harvest command"
    )]
    NoToken,
    #[error("the forge refused the token ({0}); check GH_TOKEN or GITHUB_TOKEN")]
    Unauthorized(String),
    #[error("the token may not do this on {repo} ({message}); it needs write access to it")]
    Forbidden { repo: String, message: String },
    #[error("{0} is not a repository this forge knows (owner/name from its remote URL)")]
    NotARepo(String),
    #[error(
        "the branch {branch} already exists on the remote with other commits; nothing was \
         overwritten (delete it there, or push under another name)"
    )]
    BranchExists { branch: String },
    #[error("git push of {branch} failed: {message}")]
    Push { branch: String, message: String },
    #[error("cannot reach the forge at {url}: {message}")]
    Connection { url: String, message: String },
    #[error("the forge refused the pull request: {0}")]
    Refused(String),
    #[error("unexpected answer from the forge: {0}")]
    Protocol(String),
    #[error("{0}")]
    Io(String),
}
