//! The bubblewrap command line for a session: a pure function of the policy, so it is
//! unit-tested on its argv and the escape tests run it against real bubblewrap.
//!
//! The jail starts from an empty root (bwrap's own tmpfs) and adds only what the agent
//! needs, so everything else on the host (the real HOME with its keys and history,
//! Harvest's data and state, other sessions' workspaces) is absent, not merely read-only.
//! Mount order matters: later mounts go on top of earlier ones, so system folders come
//! first, then the private tmpfs overlays, then the read-write workspace and HOME.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where the agent binary and the agent's HOME appear inside the jail.
pub const AGENT_BIN_DIR: &str = "/harvest/bin";
pub const AGENT_HOME: &str = "/home/agent";
/// The uid and gid inside: not root, because Claude Code refuses to skip permission
/// prompts as root, and a non-root agent cannot undo the jail's read-only mounts.
pub const SANDBOX_UID: u32 = 1000;

/// System folders mounted read-only when they exist on the host: what builds and tools
/// need. `/bin`, `/lib`... are symlinks into `/usr` on merged-/usr systems and are
/// recreated as symlinks then.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/nix",
];

#[derive(Debug, Clone)]
pub struct JailPolicy {
    pub workspace: PathBuf,
    /// Where the jail shows the workspace (a fork's copy: where its conversation saw the
    /// original); usually `workspace` itself.
    pub workspace_in_jail: PathBuf,
    pub home: PathBuf,
    pub agent_binary: PathBuf,
    /// Host paths that must stay invisible wherever a mount would show them (Harvest's
    /// own folders, other sessions' workspaces). Only paths that exist are listed.
    pub hidden: Vec<PathBuf>,
    pub network: bool,
    /// The `harvest` binary, bound read-only at [`FORWARDER`]: `harvest forward` is the
    /// jail's first command. It hands the CLI its stdio sockets (which bwrap's own init
    /// must not hold), and without a network relays the model's traffic.
    pub harvest: PathBuf,
    /// Without a network: the model proxy's socket, bound into the jail so the agent
    /// still reaches its model (see `harvest-proxy`).
    pub model_link: Option<ModelLink>,
    /// Host files and folders shown read-only in the agent's HOME (relative paths there):
    /// the user's own Claude Code configuration.
    pub home_binds: Vec<(PathBuf, String)>,
    /// A folder with the jail's own `passwd` and `group`, shown over the host's.
    pub identity: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ModelLink {
    pub socket: PathBuf,
    /// Under an allow-list: the egress proxy's socket, and the hosts it lets through.
    pub egress: Option<(PathBuf, Vec<String>)>,
}

/// Where the forwarder (`harvest`) and, without a network, the proxy socket appear, and
/// the address the forwarder listens on (the jail's own loopback).
pub const FORWARDER: &str = "/harvest/bin/harvest";
pub const MODEL_SOCKET: &str = "/harvest/run/model.sock";
pub const MODEL_ADDR: &str = "127.0.0.1:8719";
/// Under an allow-list: the egress proxy, as the jail sees it.
pub const EGRESS_SOCKET: &str = "/harvest/run/egress.sock";
pub const EGRESS_ADDR: &str = "127.0.0.1:8720";

/// How one system folder exists on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEntry {
    Dir(PathBuf),
    Symlink { path: PathBuf, target: PathBuf },
}

/// Look at the host's system folders (the only I/O, kept out of [`bwrap_args`]).
pub fn host_system_entries() -> Vec<HostEntry> {
    SYSTEM_DIRS
        .iter()
        .filter_map(|d| {
            let path = PathBuf::from(d);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).ok()?;
                Some(HostEntry::Symlink { path, target })
            } else if meta.is_dir() {
                Some(HostEntry::Dir(path))
            } else {
                None
            }
        })
        .collect()
}

/// The bwrap options (everything before `--` and the command).
pub fn bwrap_args(policy: &JailPolicy, system: &[HostEntry]) -> Vec<OsString> {
    let mut a = Args::default();
    a.flag("--unshare-user");
    a.pair("--uid", SANDBOX_UID.to_string());
    a.pair("--gid", SANDBOX_UID.to_string());
    // Own PID namespace: the agent cannot see host processes, and killing the namespace's
    // init ends everything in it, including tool commands in their own sessions.
    a.flag("--unshare-pid");
    a.flag("--unshare-ipc");
    a.flag("--unshare-uts");
    a.flag("--unshare-cgroup-try");
    if !policy.network {
        a.flag("--unshare-net");
    }
    // A new session keeps the agent from injecting input into a terminal. No
    // --die-with-parent: the agent must outlive the daemon.
    a.flag("--new-session");
    // No process in the jail may ptrace, take descriptors from or write the memory of
    // another (the CLI's stdio are what a forger wants): see `seccomp.rs`. The program
    // is handed over by the supervisor at this descriptor.
    a.pair("--seccomp", harvest_supervisor::SECCOMP_FD.to_string());
    a.pair("--hostname", "harvest");

    let mut bound: Vec<&Path> = Vec::new();
    for entry in system {
        match entry {
            HostEntry::Dir(p) => {
                a.triple("--ro-bind", p, p);
                bound.push(p);
            }
            HostEntry::Symlink { path, target } => a.triple("--symlink", target, path),
        }
    }
    if let Some(dir) = &policy.identity {
        for file in ["passwd", "group"] {
            a.triple("--ro-bind", dir.join(file), Path::new("/etc").join(file));
        }
    }
    a.pair("--proc", "/proc");
    a.pair("--dev", "/dev");
    a.pair("--tmpfs", "/tmp");
    a.pair("--tmpfs", "/var/tmp");
    a.pair("--tmpfs", "/run");
    a.triple(
        "--ro-bind",
        &policy.agent_binary,
        Path::new(AGENT_BIN_DIR).join("claude"),
    );
    a.triple("--ro-bind", &policy.harvest, FORWARDER);
    if let Some(link) = &policy.model_link {
        a.triple("--bind", &link.socket, MODEL_SOCKET);
        if let Some((egress, _)) = &link.egress {
            a.triple("--bind", egress, EGRESS_SOCKET);
        }
    }
    a.triple("--bind", &policy.home, AGENT_HOME);
    for (host, rel) in &policy.home_binds {
        a.triple("--ro-bind", host, Path::new(AGENT_HOME).join(rel));
    }
    a.triple("--bind", &policy.workspace, &policy.workspace_in_jail);
    // Hidden paths are covered after *every* bind, the workspace's included: a later mount
    // goes on top of an earlier one, so a cover made before the workspace was bound would
    // be buried under it (a workspace that contains Harvest's folders showed them). A
    // hidden path inside the workspace is covered where the jail shows the workspace.
    for hidden in &policy.hidden {
        if let Ok(rel) = hidden.strip_prefix(&policy.workspace) {
            a.pair("--tmpfs", policy.workspace_in_jail.join(rel));
        } else if bound.iter().any(|b| hidden.starts_with(b)) {
            a.pair("--tmpfs", hidden);
        }
    }
    a.pair("--chdir", &policy.workspace_in_jail);
    a.0
}

/// A one-shot jail that copies the tree `from` into `to` (`cp -a`) seeing nothing else of
/// the host: a tree the agent controls may hold links to the user's files, or swap a
/// folder for a link mid-copy; inside this jail such a link leads only to the two trees
/// and the read-only system folders. `from` is read-only.
pub fn copy_args(from: &Path, to: &Path, system: &[HostEntry]) -> Vec<OsString> {
    let mut a = Args::default();
    a.flag("--unshare-user");
    a.pair("--uid", SANDBOX_UID.to_string());
    a.pair("--gid", SANDBOX_UID.to_string());
    a.flag("--unshare-pid");
    a.flag("--unshare-net");
    a.flag("--unshare-ipc");
    a.flag("--new-session");
    a.flag("--die-with-parent");
    for entry in system {
        match entry {
            HostEntry::Dir(p) => a.triple("--ro-bind", p, p),
            HostEntry::Symlink { path, target } => a.triple("--symlink", target, path),
        }
    }
    a.pair("--proc", "/proc");
    a.pair("--dev", "/dev");
    a.pair("--tmpfs", "/tmp");
    a.triple("--ro-bind", from, "/harvest/from");
    a.triple("--bind", to, "/harvest/to");
    a.flag("--");
    for w in ["/usr/bin/cp", "-a", "--", "/harvest/from/.", "/harvest/to/"] {
        a.flag(w);
    }
    a.0
}

/// The jail's environment: fixed, so nothing from the daemon's own environment leaks in.
pub fn base_env() -> Vec<(&'static str, String)> {
    vec![
        ("HOME", AGENT_HOME.to_owned()),
        ("USER", "agent".to_owned()),
        ("LOGNAME", "agent".to_owned()),
        ("SHELL", "/bin/bash".to_owned()),
        ("TERM", "dumb".to_owned()),
        ("LANG", "C.UTF-8".to_owned()),
        (
            "PATH",
            format!("{AGENT_BIN_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ),
        ("TMPDIR", "/tmp".to_owned()),
    ]
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, f: &str) {
        self.0.push(f.into());
    }
    fn pair(&mut self, f: &str, v: impl AsRef<std::ffi::OsStr>) {
        self.0.push(f.into());
        self.0.push(v.as_ref().to_owned());
    }
    fn triple(&mut self, f: &str, a: impl AsRef<std::ffi::OsStr>, b: impl AsRef<std::ffi::OsStr>) {
        self.pair(f, a);
        self.0.push(b.as_ref().to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> JailPolicy {
        JailPolicy {
            workspace: "/home/u/proj".into(),
            workspace_in_jail: "/home/u/proj".into(),
            home: "/home/u/.local/state/harvest/sessions/s1/home".into(),
            agent_binary: "/home/u/.cache/claude".into(),
            hidden: vec![
                "/opt/harvest-data".into(),
                "/home/u/.local/share/harvest".into(),
            ],
            network: true,
            harvest: "/usr/local/bin/harvest".into(),
            model_link: None,
            home_binds: vec![],
            identity: None,
        }
    }

    fn system() -> Vec<HostEntry> {
        vec![
            HostEntry::Dir("/usr".into()),
            HostEntry::Dir("/etc".into()),
            HostEntry::Dir("/opt".into()),
            HostEntry::Symlink {
                path: "/bin".into(),
                target: "usr/bin".into(),
            },
        ]
    }

    fn argv() -> Vec<String> {
        bwrap_args(&policy(), &system())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    fn position(args: &[String], window: &[&str]) -> usize {
        args.windows(window.len())
            .position(|w| w == window)
            .unwrap_or_else(|| panic!("{window:?} not in {args:?}"))
    }

    #[test]
    fn isolation_flags_are_present_and_the_agent_may_outlive_its_parent() {
        let args = argv();
        for f in ["--unshare-user", "--unshare-pid", "--new-session"] {
            assert!(args.contains(&f.to_owned()), "{f} missing: {args:?}");
        }
        assert!(!args.contains(&"--die-with-parent".to_owned()));
        position(&args, &["--seccomp", "6"]);
        position(&args, &["--ro-bind", "/usr/local/bin/harvest", FORWARDER]);
        assert!(
            !args.contains(&"--unshare-net".to_owned()),
            "host network by default"
        );
        position(&args, &["--uid", "1000"]);
    }

    #[test]
    fn system_is_read_only_and_workspace_and_home_are_writable_on_top() {
        let args = argv();
        let usr = position(&args, &["--ro-bind", "/usr", "/usr"]);
        position(&args, &["--symlink", "usr/bin", "/bin"]);
        let ws = position(&args, &["--bind", "/home/u/proj", "/home/u/proj"]);
        let home = position(
            &args,
            &[
                "--bind",
                "/home/u/.local/state/harvest/sessions/s1/home",
                AGENT_HOME,
            ],
        );
        assert!(usr < ws && usr < home, "writable mounts must come last");
        // The real HOME itself is never mounted.
        assert!(!args.iter().any(|a| a == "/home/u"), "{args:?}");
    }

    #[test]
    fn hidden_paths_under_a_system_mount_are_covered() {
        let args = argv();
        let opt = position(&args, &["--ro-bind", "/opt", "/opt"]);
        let cover = position(&args, &["--tmpfs", "/opt/harvest-data"]);
        assert!(cover > opt);
        // Not under any mount: absent already, nothing to cover.
        assert!(!args.contains(&"/home/u/.local/share/harvest".to_owned()));
    }

    #[test]
    fn hidden_paths_inside_the_workspace_are_covered_after_it_is_bound() {
        let mut p = policy();
        p.hidden.push("/home/u/proj/.harvest-state".into());
        let args: Vec<String> = bwrap_args(&p, &system())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let ws = position(&args, &["--bind", "/home/u/proj", "/home/u/proj"]);
        let cover = position(&args, &["--tmpfs", "/home/u/proj/.harvest-state"]);
        assert!(
            cover > ws,
            "the cover must lie on top of the workspace: {args:?}"
        );
    }

    #[test]
    fn a_confined_copy_sees_only_the_two_trees() {
        let args: Vec<String> = copy_args(Path::new("/s/ws"), Path::new("/d/ws"), &system())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        position(&args, &["--ro-bind", "/s/ws", "/harvest/from"]);
        position(&args, &["--bind", "/d/ws", "/harvest/to"]);
        assert!(!args.iter().any(|a| a == "/home/u" || a == "/"), "{args:?}");
        let sep = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(args[sep + 1..sep + 3], ["/usr/bin/cp", "-a"]);
    }

    #[test]
    fn no_network_unshares_it() {
        let mut p = policy();
        p.network = false;
        let args: Vec<_> = bwrap_args(&p, &system());
        assert!(args.contains(&OsString::from("--unshare-net")));
    }
}
