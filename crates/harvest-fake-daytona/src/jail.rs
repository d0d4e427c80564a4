//! Each fake sandbox is real: its files live in `<root>/<id>/` and every command, file
//! and git call runs in bubblewrap as uid 1000 (`daytona`) with HOME /home/daytona, so
//! paths are the sandbox's and a link the agent planted never leads to the fake's host.
//! The network is the host's (the scripted model and test servers are on loopback).

use harvest_sandbox::local::bwrap::{HostEntry, host_system_entries};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

pub const HOME: &str = "/home/daytona";
pub const CLAUDE: &str = "/usr/local/bin/claude";

#[derive(Debug, Clone)]
pub struct Jail {
    pub dir: PathBuf,
    pub claude: Option<PathBuf>,
    pub hostname: String,
}

/// What a one-shot call printed.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Jail {
    pub fn create(
        dir: PathBuf,
        claude: Option<PathBuf>,
        hostname: String,
    ) -> std::io::Result<Jail> {
        for sub in ["home", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        Ok(Jail {
            dir,
            claude,
            hostname,
        })
    }

    fn args(&self, cwd: &str) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |xs: &[&dyn AsRef<std::ffi::OsStr>]| {
            a.extend(xs.iter().map(|x| x.as_ref().to_os_string()));
        };
        push(&[&"--unshare-user", &"--uid", &"1000", &"--gid", &"1000"]);
        push(&[
            &"--unshare-pid",
            &"--unshare-ipc",
            &"--unshare-uts",
            &"--new-session",
        ]);
        push(&[&"--die-with-parent", &"--hostname", &self.hostname]);
        for e in host_system_entries() {
            match e {
                HostEntry::Dir(p) => push(&[&"--ro-bind", &p, &p]),
                HostEntry::Symlink { path, target } => push(&[&"--symlink", &target, &path]),
            }
        }
        push(&[&"--proc", &"/proc", &"--dev", &"/dev", &"--tmpfs", &"/run"]);
        push(&[&"--bind", &self.dir.join("tmp"), &"/tmp"]);
        if let Some(claude) = &self.claude {
            push(&[&"--tmpfs", &"/usr/local/bin", &"--ro-bind", claude, &CLAUDE]);
        }
        push(&[&"--bind", &self.dir.join("home"), &HOME]);
        push(&[&"--chdir", &cwd]);
        a.push("--".into());
        a
    }

    /// Start `sh -c script` in the sandbox with stdio piped.
    pub fn spawn(
        &self,
        cwd: &str,
        script: &str,
        argv: &[&str],
        envs: &BTreeMap<String, String>,
    ) -> std::io::Result<Child> {
        let cwd = if cwd.is_empty() { HOME } else { cwd };
        let mut cmd = Command::new("bwrap");
        cmd.args(self.args(cwd))
            .arg("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(argv)
            .env_clear()
            .env("HOME", HOME)
            .env("USER", "daytona")
            .env("LANG", "C.UTF-8")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .envs(envs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd.spawn()
    }

    /// Run a script to its end with `input` on stdin.
    pub async fn run(
        &self,
        cwd: &str,
        script: &str,
        argv: &[&str],
        input: &[u8],
    ) -> std::io::Result<Output> {
        let mut child = self.spawn(cwd, script, argv, &BTreeMap::new())?;
        let mut stdin = child.stdin.take();
        let input = input.to_vec();
        let feed = async move {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(&input).await;
            }
            drop(stdin);
        };
        let (out, ()) = tokio::join!(child.wait_with_output(), feed);
        let out = out?;
        Ok(Output {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A sandbox path made absolute: relative paths are the work dir's (HOME).
pub fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else if path.is_empty() || path == "." {
        HOME.to_owned()
    } else {
        format!("{HOME}/{path}")
    }
}
