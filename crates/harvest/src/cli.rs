//! The command line.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "harvest",
    version,
    about = "Run Claude Code agents in sandboxes, in the background; attach from any terminal."
)]
pub struct Cli {
    /// Without a command: attach to the most recent session, or open the session picker.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a prompt in a new session and stream it here until the turn ends (exit 0/1).
    Run {
        #[command(flatten)]
        new: NewArgs,
        /// One JSON event per line instead of the human-readable stream.
        #[arg(long)]
        json: bool,
        /// When the turn ends well, open a pull request of its work (needs --repo URL of
        /// a GitHub repository and GH_TOKEN or GITHUB_TOKEN); its URL is printed last.
        #[arg(long, requires = "repo")]
        pr: bool,
    },
    /// Start a session and attach to it (in a terminal), or print its id (--detach, or
    /// when the output is not a terminal).
    New {
        #[command(flatten)]
        new: NewArgs,
        /// Start in the background and print the id.
        #[arg(short, long)]
        detach: bool,
    },
    /// Attach the terminal client to a session (C-b d detaches; the session keeps running).
    Attach { session: String },
    /// Which credential new sessions started from here will use (never printed): a key
    /// or token in this environment, or your Claude subscription login.
    Auth,
    /// List sessions: id, name, state, sandbox, cost, age.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Replay a session's stored events; --follow keeps streaming new ones.
    Logs {
        session: String,
        #[arg(long)]
        json: bool,
        #[arg(short, long)]
        follow: bool,
        /// Start from this event number.
        #[arg(long, default_value_t = 1)]
        from_seq: u64,
        /// Print tool outputs whole (by default a long one shows its first lines). A
        /// command whose output the CLI saved to a file: `harvest cat ID PATH`.
        #[arg(long)]
        full: bool,
    },
    /// Send a follow-up message into a session's conversation. Sent while a turn runs,
    /// it is queued until that turn ends (`withdraw` takes it back until then).
    Send { session: String, text: String },
    /// Take back follow-ups still queued behind the running turn (all, or one by its id)
    /// and print their text.
    Withdraw {
        session: String,
        /// The queued message's id, as `send` printed it.
        #[arg(long)]
        message: Option<String>,
    },
    /// Send follow-ups queued behind the running turn into it now (all, or one by id): the
    /// agent reads them at its next tool call instead of after the turn.
    SendNow {
        session: String,
        /// The queued message's id, as `send` printed it.
        #[arg(long)]
        message: Option<String>,
    },
    /// Interrupt the turn in progress.
    Cancel { session: String },
    /// Stop a session's agent; the session and its history stay, and `send` resumes it.
    Stop { session: String },
    /// Block until the session is idle (exit 0) or needs input (exit 3); exit 1 when it
    /// ends otherwise (failed, exited, interrupted, removed).
    Wait { session: String },
    /// Answer a permission request: allow once, always (this tool, for the session), or deny.
    /// The request id may be left out while exactly one request waits.
    Approve {
        session: String,
        request: Option<String>,
        #[arg(long, group = "decision")]
        allow: bool,
        #[arg(long, group = "decision")]
        always: bool,
        #[arg(long, group = "decision")]
        deny: bool,
        /// With --deny: what the agent is told.
        #[arg(long)]
        message: Option<String>,
        /// With --allow: run this command instead of the requested one (Bash).
        #[arg(long)]
        command: Option<String>,
    },
    /// A new session that starts as a copy of one (workspace and conversation so far).
    Fork {
        session: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Give a session a new name.
    Rename { session: String, name: String },
    /// Print a file as the agent sees it (a path inside its sandbox), read by the daemon
    /// inside the sandbox: no link the agent planted leads outside it.
    Cat { session: String, path: String },
    /// Start a finished, stopped or interrupted session's agent again (`claude --resume`).
    Resume { session: String },
    /// Stop the agent, remove the sandbox and the session's stored history.
    Rm { session: String },
    /// Bring a remote sandbox's changes (daytona) back into the folder its workspace was
    /// uploaded from; files changed here since the upload are never overwritten.
    Pull {
        session: String,
        /// Write the changes as a patch (git's format) instead of into the folder.
        #[arg(long, value_name = "FILE")]
        patch: Option<std::path::PathBuf>,
    },
    /// The session's changes against the commit it started from (committed or not), as
    /// a patch for `git apply`, or a summary with --stat.
    Diff {
        session: String,
        #[arg(long)]
        stat: bool,
    },
    /// Bring the session's changes into your checkout (the repository it was cloned
    /// from, or --into DIR): all or nothing, conflicts with your own changes reported.
    Apply {
        session: String,
        /// The checkout to apply to (default: the local repository given to --repo).
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
        /// Apply only the patch `harvest diff` named: if the session's changes differ now,
        /// nothing is written.
        #[arg(long, value_name = "NAME")]
        patch: Option<String>,
    },
    /// Commit the session's work, push its branch and open a pull request (Harvest does
    /// this from here with GH_TOKEN or GITHUB_TOKEN: the token never enters the sandbox).
    Pr {
        session: String,
        /// Open it as a draft.
        #[arg(long)]
        draft: bool,
        /// The branch to merge into (default: the repository's default branch).
        #[arg(long)]
        base: Option<String>,
        /// Its title (default: the session's first prompt).
        #[arg(long)]
        title: Option<String>,
    },
    /// Run the daemon, or control it.
    Daemon {
        #[command(subcommand)]
        action: Option<DaemonAction>,
        /// Stay in the foreground (logs still go to the log file).
        #[arg(long)]
        foreground: bool,
    },
    /// The whole product offline, through a scripted model (no API key, no real model).
    Demo {
        /// Keep streaming as JSON events.
        #[arg(long)]
        json: bool,
    },
    /// Serve the scripted model (Messages API) from a script file, for tests and demos.
    #[command(hide = true)]
    ScriptedModel {
        #[arg(long)]
        script: PathBuf,
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

#[derive(Subcommand)]
pub enum DaemonAction {
    /// Stop the running daemon. Agents keep running and the next daemon (started by any
    /// command) takes them up again, mid-turn or not.
    Stop {
        /// Stop every session's agent first (their sessions show as exited; sending a
        /// message resumes one).
        #[arg(long)]
        end_sessions: bool,
    },
    /// Read harvest.toml again: the daemon is restarted with it, its agents running on
    /// (a config with an error is refused and the running daemon kept).
    Reload,
    /// Show whether the daemon runs, its pid, socket and sessions.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct NewArgs {
    /// The folder the agent works in, used as it is. Without it (and without --repo): the
    /// current folder.
    #[arg(long, short = 'w', conflicts_with = "repo")]
    pub workspace: Option<PathBuf>,
    /// A git repository (https URL or local path) to clone into a fresh workspace, where
    /// the session works on its own branch, `harvest/<slug>-<id>`; your checkout is never
    /// touched.
    #[arg(long)]
    pub repo: Option<String>,
    /// With --repo PATH: work in that folder itself, on its current branch, instead of
    /// a clone (what --workspace does).
    #[arg(long, requires = "repo")]
    pub in_place: bool,
    /// Sandbox provider: `local` (bubblewrap) or `docker` (a container from the sandbox
    /// image). Default: the config's `sandbox.default`, else `local`.
    #[arg(long)]
    pub sandbox: Option<String>,
    /// A port the agent will serve on (a dev server), to open from this machine; the
    /// session shows its preview URL. Repeatable.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// With `--sandbox docker`: the image (default: the config's `docker.image`).
    #[arg(long)]
    pub image: Option<String>,
    /// Run without your own Claude Code configuration (CLAUDE.md, settings, commands,
    /// skills, agents, output styles, MCP servers), as a fresh install would.
    #[arg(long)]
    pub no_user_config: bool,
    /// Trust the project's `.mcp.json` and start its servers (without the question that is
    /// asked once per folder and content otherwise).
    #[arg(long)]
    pub trust_project_mcp: bool,
    /// Skip the repository's setup script (`.harvest/setup`), which otherwise runs in the
    /// sandbox before the first turn.
    #[arg(long)]
    pub no_setup: bool,
    /// What the agent's tools may reach: `open` (the host's network) or `none` (loopback
    /// only; the agent still reaches its model). Default from the config.
    #[arg(long)]
    pub network: Option<String>,
    /// Session name (default: the folder and the prompt's first words).
    #[arg(long)]
    pub name: Option<String>,
    /// Model alias or id for the agent.
    #[arg(long)]
    pub model: Option<String>,
    /// `bypass` (every tool call runs; the sandbox is the boundary) or `ask` (tool calls
    /// wait for `harvest approve` or an answer in the client). Default from the config.
    #[arg(long, value_parser = ["bypass", "ask"])]
    pub permissions: Option<String>,
    /// The first message.
    pub prompt: String,
}
