//! The forge side of a session's branch. Harvest, not the agent, pushes and opens the
//! pull request: the token lives in this process (from the user's environment) and is
//! handed only to the `git push` it runs and to GitHub's API, never to a sandbox, a file
//! or a log.

mod error;
pub mod github;
pub mod push;
pub mod remote;

pub use error::ForgeError;
pub use remote::RepoName;

pub type Result<T> = std::result::Result<T, ForgeError>;
