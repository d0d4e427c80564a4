//! Sessions and their commands (reference §3.5): commands of a session run one after
//! another; each writes one log in which every line carries a stream marker (§3.2); an
//! async command's stdin stays open for input until it exits; deleting the session kills
//! what runs and forgets it.

use crate::jail::Jail;
use crate::locking::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::ChildStdin;
use tokio::sync::Notify;

pub const STDOUT: &[u8] = &[1, 1, 1];
pub const STDERR: &[u8] = &[2, 2, 2];

pub struct Session {
    pub id: String,
    pub commands: Mutex<Vec<Arc<Command>>>,
    /// Held by the running command: the next one waits for it.
    turn: tokio::sync::Mutex<()>,
    pub deleted: AtomicBool,
    /// Names the session's saved shell state (the id itself may be any string).
    key: String,
}

pub struct Command {
    pub id: String,
    pub command: String,
    pub suppress_echo: bool,
    pub log: Mutex<Vec<u8>>,
    pub changed: Notify,
    pub exit: Mutex<Option<i32>>,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    pid: Mutex<Option<i32>>,
    /// The command ended (exited or was killed); no more log will come.
    pub finished: AtomicBool,
}

impl Command {
    pub fn exit_code(&self) -> Option<i32> {
        *lock(&self.exit)
    }

    pub fn log_len(&self) -> usize {
        lock(&self.log).len()
    }

    pub fn log_from(&self, from: usize, max: usize) -> Vec<u8> {
        let log = lock(&self.log);
        let end = log.len().min(from.saturating_add(max));
        log.get(from..end).map(<[u8]>::to_vec).unwrap_or_default()
    }

    fn append(&self, marker: &[u8], line: &[u8]) {
        {
            let mut log = lock(&self.log);
            log.extend_from_slice(marker);
            log.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                log.push(b'\n');
            }
        }
        self.changed.notify_waiters();
    }

    /// Write input to the command's stdin: `Err(code)` when it has already completed.
    pub async fn input(&self, data: &str) -> Result<(), Option<i32>> {
        let mut line = data.to_owned();
        if !line.ends_with('\n') {
            line.push('\n');
        }
        // The real command's stdin exists from its exec on; here the process may still be
        // starting (or waiting for the session's previous command).
        let mut stdin = self.stdin.lock().await;
        while stdin.is_none() && !self.finished.load(Ordering::SeqCst) {
            drop(stdin);
            tokio::time::sleep(Duration::from_millis(10)).await;
            stdin = self.stdin.lock().await;
        }
        let Some(pipe) = stdin.as_mut() else {
            return Err(self.exit_code());
        };
        if pipe.write_all(line.as_bytes()).await.is_err() || pipe.flush().await.is_err() {
            return Err(self.exit_code());
        }
        drop(stdin);
        if !self.suppress_echo {
            self.append(STDOUT, line.as_bytes());
        }
        Ok(())
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = *lock(&self.pid) {
            // SAFETY: kill(2) on the process group this command leads.
            unsafe { libc::kill(-pid, sig) };
        }
    }
}

impl Session {
    pub fn new(id: String) -> Session {
        Session {
            id,
            commands: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
            deleted: AtomicBool::new(false),
            key: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    pub fn command(&self, id: &str) -> Option<Arc<Command>> {
        lock(&self.commands).iter().find(|c| c.id == id).cloned()
    }

    /// Queue a command; it starts once the ones before it have ended.
    pub fn exec(
        self: &Arc<Self>,
        jail: Jail,
        command: String,
        suppress_echo: bool,
    ) -> Arc<Command> {
        let cmd = Arc::new(Command {
            id: uuid::Uuid::new_v4().to_string(),
            command: command.clone(),
            suppress_echo,
            log: Mutex::new(Vec::new()),
            changed: Notify::new(),
            exit: Mutex::new(None),
            stdin: tokio::sync::Mutex::new(None),
            pid: Mutex::new(None),
            finished: AtomicBool::new(false),
        });
        lock(&self.commands).push(cmd.clone());
        let (session, c) = (self.clone(), cmd.clone());
        tokio::spawn(async move {
            let _turn = session.turn.lock().await;
            if !session.deleted.load(Ordering::SeqCst) {
                run(&jail, &c, &session).await;
            }
            c.finished.store(true, Ordering::SeqCst);
            c.changed.notify_waiters();
        });
        cmd
    }

    /// SIGTERM to every command, SIGKILL after the grace period (§3.5.2).
    pub async fn kill(&self, grace: Duration) {
        self.deleted.store(true, Ordering::SeqCst);
        let commands: Vec<_> = lock(&self.commands).clone();
        for c in &commands {
            c.signal(libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while commands.iter().any(|c| !c.finished.load(Ordering::SeqCst))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for c in &commands {
            c.signal(libc::SIGKILL);
            c.changed.notify_waiters();
        }
    }
}

/// A session is one shell to its commands (§3.5): `cd` and `export` carry over. Each
/// command here is a process of its own, so the shell's directory and exports are saved
/// after it (in the sandbox's /tmp) and restored before the next. A command that `exec`s
/// or exits early saves nothing, as its shell would have been gone too.
fn with_shell_state(state: &str, command: &str) -> String {
    format!(
        "__s={state}; cd \"$(cat \"$__s/cwd\" 2>/dev/null || echo \"$HOME\")\" 2>/dev/null; \
         [ -f \"$__s/env\" ] && . \"$__s/env\"\n{command}\n\
         __rc=$?; mkdir -p \"$__s\" && pwd > \"$__s/cwd\" && export -p > \"$__s/env\"; exit $__rc"
    )
}

async fn run(jail: &Jail, cmd: &Arc<Command>, session: &Session) {
    let script = with_shell_state(
        &format!("/tmp/.daytona-session-{}", session.key),
        &cmd.command,
    );
    let mut child = match jail.spawn("", &script, &[], &BTreeMap::new()) {
        Ok(c) => c,
        Err(e) => {
            cmd.append(STDERR, format!("cannot start: {e}").as_bytes());
            *lock(&cmd.exit) = Some(-1);
            return;
        }
    };
    *lock(&cmd.pid) = child.id().and_then(|p| i32::try_from(p).ok());
    *cmd.stdin.lock().await = child.stdin.take();
    let out = child.stdout.take().map(|o| pump(o, cmd.clone(), STDOUT));
    let err = child.stderr.take().map(|e| pump(e, cmd.clone(), STDERR));
    let status = child.wait().await;
    for t in [out, err].into_iter().flatten() {
        let _ = t.await;
    }
    *cmd.stdin.lock().await = None;
    // A deleted session records no exit code (§3.5.2).
    if !session.deleted.load(Ordering::SeqCst) {
        let code = status.ok().map(|s| {
            use std::os::unix::process::ExitStatusExt;
            s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
        });
        *lock(&cmd.exit) = Some(code.unwrap_or(-1));
    }
}

fn pump(
    from: impl AsyncRead + Unpin + Send + 'static,
    cmd: Arc<Command>,
    marker: &'static [u8],
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut r = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => cmd.append(marker, &line),
            }
        }
    })
}
