//! Real git for the tests: a repository served by `git daemon` on loopback (what a
//! sandbox clones by URL), and small helpers to look at a checkout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `git ARGS` in `dir`, which must succeed; its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with `files` committed on `main`, at `dir`.
pub fn repo_with(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("repo dir");
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("repo folder");
        }
        std::fs::write(path, text).expect("repo file");
    }
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "init"]);
}

/// A git daemon on loopback serving one repository (the fake's sandboxes share this
/// machine's network, as a Daytona sandbox reaches a forge).
pub struct GitServer {
    child: std::process::Child,
    /// `git://127.0.0.1:PORT/origin.git`
    pub url: String,
    /// The repository as its user has it: `main`, one commit, the files given.
    pub work: PathBuf,
}

impl GitServer {
    /// Serves `base/origin.git`, a bare clone of `base/origin-work`, made of `files`.
    pub fn start(base: &std::path::Path, files: &[(&str, &str)]) -> GitServer {
        let work = base.join("origin-work");
        repo_with(&work, files);
        git(&work, &["clone", "-q", "--bare", ".", "../origin.git"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("git")
            .args([
                "daemon",
                "--export-all",
                "--reuseaddr",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        GitServer {
            child,
            url: format!("git://127.0.0.1:{port}/origin.git"),
            work,
        }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
