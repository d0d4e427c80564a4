//! The supervisor process itself (`harvest supervise`): read the launch spec from stdin,
//! start the jail with socket-pair stdio, answer "ready" on stdout, then pump the agent's
//! output into the log and serve requests until the jail ends.

use crate::input::Input;
use crate::lines::LineCap;
use crate::pidfd::{PidFd, signal_children};
use crate::{
    ExitRecord, LaunchSpec, MAX_LINE, MAX_REQUEST, MAX_STDERR, Record, Request, Response,
    SignalKind, exit_path, log_path, proc, stderr_path, write_atomic,
};
use harvest_proxy::Listener;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

/// Entry point of `harvest supervise`. Returns the process exit code.
pub fn main() -> i32 {
    let mut input = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(
        &mut std::io::Read::take(std::io::stdin(), MAX_REQUEST as u64),
        &mut input,
    ) {
        answer(&Err(format!("cannot read the launch spec: {e}")));
        return 2;
    }
    let spec: LaunchSpec = match serde_json::from_slice(&input) {
        Ok(s) => s,
        Err(e) => {
            answer(&Err(format!("bad launch spec: {e}")));
            return 2;
        }
    };
    drop(input);
    // Our own session: a Ctrl-C or hang-up aimed at the daemon's terminal or process group
    // never reaches the supervisor or the agent.
    // SAFETY: setsid(2) has no memory effects; it fails only if we lead a group already.
    unsafe { libc::setsid() };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            answer(&Err(format!("cannot start: {e}")));
            return 2;
        }
    };
    rt.block_on(supervise(spec))
}

/// The one line the daemon waits for on our stdout: the record, or why the jail did not
/// start. Afterwards stdout is closed so the daemon's pipe never fills.
fn answer(result: &Result<Record, String>) {
    let line = match result {
        Ok(r) => serde_json::json!({"ok": true, "record": r}),
        Err(e) => serde_json::json!({"ok": false, "error": e}),
    };
    println!("{line}");
    // SAFETY: replacing fd 1 with /dev/null; both descriptors are valid or the call fails.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
}

async fn supervise(spec: LaunchSpec) -> i32 {
    let state_dir = spec.state_dir.clone();
    let spec_direct = spec.direct;
    let started = match start(&spec).await {
        Ok(s) => s,
        Err(e) => {
            answer(&Err(e));
            return 1;
        }
    };
    answer(&Ok(started.record));
    let Started {
        record,
        mut child,
        init,
        listener,
        stdin,
        stdout,
        stderr,
        jail_stderr,
        log,
        stderr_file,
        proxy,
        egress,
        mcp,
    } = started;
    let started = Proxy { proxy };
    let init = Arc::new(init);
    let stdin = Arc::new(Mutex::new(Some(stdin)));
    let log = Arc::new(std::sync::Mutex::new(log));
    if let Some((listener, upstream)) = started.proxy {
        let notify = proxy_notices(log.clone());
        tokio::spawn(async move {
            if let Err(e) = harvest_proxy::serve_on(listener, upstream, notify).await {
                eprintln!("the model proxy stopped: {e}");
            }
        });
    }
    for (listener, relay) in mcp {
        let notify = proxy_notices(log.clone());
        tokio::spawn(async move {
            if let Err(e) = harvest_proxy::mcp::serve(listener, relay, notify).await {
                eprintln!("an MCP relay stopped: {e}");
            }
        });
    }
    if let Some((listener, allow)) = egress {
        tokio::spawn(crate::egress::serve(listener, Arc::new(allow), log.clone()));
    }
    let pump = tokio::spawn(pump_log(stdout, log));
    if let Some(jail_stderr) = jail_stderr
        && let Ok(file) = stderr_file.try_clone()
    {
        tokio::spawn(pump_stderr(jail_stderr, file));
    }
    let errs = tokio::spawn(pump_stderr(stderr, stderr_file));
    let input = Input::new(stdin.clone());
    let running = input.running.clone();
    let server = tokio::spawn(serve(listener, input, init.clone(), spec_direct));

    let status = child.wait().await;
    let exit = match status {
        Ok(s) => ExitRecord {
            code: s.code(),
            signal: s.signal(),
        },
        Err(_) => ExitRecord {
            code: None,
            signal: None,
        },
    };
    // Whatever the agent left running in its jail (tool commands in their own sessions)
    // has no one to report to: SIGKILL to the namespace's init ends all of it.
    let _ = init.signal(libc::SIGKILL);
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    stdin.lock().await.take();
    // Every writer of stdout was in the jail, so EOF follows; the bound guards against a
    // kernel that keeps a descriptor alive longer than we expect.
    let _ = tokio::time::timeout(Duration::from_secs(10), pump).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), errs).await;
    server.abort();
    let _ = std::fs::remove_file(state_dir.join(crate::SOCKET_FILE));
    // Last: the exit record says the log is complete.
    if let Ok(json) = serde_json::to_vec(&exit)
        && let Err(e) = write_atomic(&exit_path(&state_dir, record.log_id), &json)
    {
        eprintln!("cannot write the exit record: {e}");
    }
    0
}

/// How many refusals of the model proxy are reported: a tool that sends thousands must
/// not flood the log and the session's history.
const MAX_PROXY_NOTICES: u32 = 20;

/// The model proxy's notices, as marker lines in the agent's log (the daemon makes them
/// error events the user sees).
fn proxy_notices(log: Arc<std::sync::Mutex<std::fs::File>>) -> harvest_proxy::Notify {
    let told = std::sync::atomic::AtomicU32::new(0);
    Arc::new(move |notice| {
        let n = told.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n > MAX_PROXY_NOTICES {
            return;
        }
        let mut line = match (&notice, n == MAX_PROXY_NOTICES) {
            (_, true) => serde_json::json!({"type": "harvest_proxy_quiet", "after": n}),
            (harvest_proxy::Notice::Refused { method, path }, _) => {
                serde_json::json!({"type": "harvest_proxy_refused", "method": method, "path": path})
            }
            (harvest_proxy::Notice::BudgetReached { spent_usd, allowance_usd }, _) => {
                serde_json::json!({"type": "harvest_budget_reached", "spent_usd": spent_usd, "allowance_usd": allowance_usd})
            }
        }
        .to_string();
        line.push('\n');
        let mut f = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = std::io::Write::write_all(&mut *f, line.as_bytes());
    })
}

struct Proxy {
    proxy: Option<(Listener, harvest_proxy::Upstream)>,
}

struct Started {
    record: Record,
    proxy: Option<(Listener, harvest_proxy::Upstream)>,
    egress: Option<(UnixListener, Vec<String>)>,
    mcp: Vec<(Listener, harvest_proxy::mcp::Relay)>,
    child: tokio::process::Child,
    init: PidFd,
    listener: UnixListener,
    stdin: UnixStream,
    stdout: UnixStream,
    stderr: UnixStream,
    /// The jail program's own stderr, when it is not the agent's (`stdio_as_fds`).
    jail_stderr: Option<UnixStream>,
    log: std::fs::File,
    stderr_file: std::fs::File,
}

async fn start(spec: &LaunchSpec) -> Result<Started, String> {
    let dir = &spec.state_dir;
    let logs = dir.join(crate::LOGS_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&logs)
        .map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let listener = bind(&dir.join(crate::SOCKET_FILE))?;
    let append = |path: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    };
    let log = append(&log_path(dir, spec.log_id))?;
    let stderr_file = append(&stderr_path(dir, spec.log_id))?;

    let pair = || std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"));
    let (stdin_ours, stdin_theirs) = pair()?;
    let (stdout_ours, stdout_theirs) = pair()?;
    let (stderr_ours, stderr_theirs) = pair()?;
    // The agent only reads its stdin and only writes its stdout and stderr.
    let _ = stdin_theirs.shutdown(std::net::Shutdown::Write);
    let _ = stdout_theirs.shutdown(std::net::Shutdown::Read);
    let _ = stderr_theirs.shutdown(std::net::Shutdown::Read);

    // The model proxy listens before the jail starts, so the agent's environment can name
    // it. On the host's loopback: the jail shares the host's network.
    let mut env = spec.env.clone();
    let proxy = match (spec.proxy.clone(), &spec.proxy_socket, &spec.proxy_url) {
        (Some(upstream), Some(socket), Some(url)) => {
            let l = bind_replacing(socket, socket_umask(spec.direct)).map_err(|e| {
                format!("cannot start the model proxy on {}: {e}", socket.display())
            })?;
            env.retain(|(k, _)| k != harvest_proxy::BASE_URL_VAR);
            env.push((harvest_proxy::BASE_URL_VAR.into(), url.clone()));
            Some((Listener::Unix(l), upstream))
        }
        (Some(upstream), _, _) => {
            let (l, addr) =
                loopback_listener().map_err(|e| format!("cannot start the model proxy: {e}"))?;
            env.retain(|(k, _)| k != harvest_proxy::BASE_URL_VAR);
            env.push((harvest_proxy::BASE_URL_VAR.into(), format!("http://{addr}")));
            Some((Listener::Tcp(l), upstream))
        }
        (None, _, _) => None,
    };
    let mut mcp = Vec::new();
    for (index, link) in spec.mcp.iter().enumerate() {
        let var = harvest_protocol::mcp::relay_address_var(index);
        let (listener, url) = match (&link.socket, &link.url) {
            (Some(socket), Some(url)) => {
                let l = bind_replacing(socket, socket_umask(spec.direct)).map_err(|e| {
                    format!("cannot start the MCP relay on {}: {e}", socket.display())
                })?;
                (Listener::Unix(l), url.clone())
            }
            _ => {
                let (l, addr) = loopback_listener()?;
                (Listener::Tcp(l), format!("http://{addr}"))
            }
        };
        env.retain(|(k, _)| *k != var);
        env.push((var, url));
        mcp.push((listener, link.relay.clone()));
    }
    let egress = match &spec.egress {
        Some(e) => {
            let l = bind_with(&e.socket, socket_umask(spec.direct))?;
            Some((l, e.allow.clone()))
        }
        None => None,
    };
    let program = OsString::from_vec(spec.program.clone());
    let mut command = tokio::process::Command::new(&program);
    command
        .args(spec.args.iter().map(|a| OsString::from_vec(a.clone())))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(false);
    let theirs = [stdin_theirs, stdout_theirs, stderr_theirs].map(std::os::fd::OwnedFd::from);
    // Kept until the spawn: the child's copies are made from these.
    let mut handed: Vec<(std::os::fd::OwnedFd, i32)> = Vec::new();
    let mut jail_stderr = None;
    if spec.stdio_as_fds {
        // bwrap's own complaints go to the stderr file too, through a socket (which the
        // agent cannot reopen through /proc/1/fd/2, as it could a file) and the same
        // bounded pump.
        let (ours, jails) = pair()?;
        let _ = jails.shutdown(std::net::Shutdown::Read);
        jail_stderr = Some(ours);
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(std::os::fd::OwnedFd::from(jails)));
        for (fd, to) in theirs.into_iter().zip(crate::AGENT_STDIO_FDS) {
            handed.push((crate::fds::high_copy(&fd)?, to));
        }
    } else {
        let [i, o, e] = theirs;
        command
            .stdin(std::process::Stdio::from(i))
            .stdout(std::process::Stdio::from(o))
            .stderr(std::process::Stdio::from(e));
    }
    if let Some(program) = &spec.seccomp {
        handed.push((crate::fds::memory_file(program)?, crate::SECCOMP_FD));
    }
    crate::fds::hand_over(command.as_std_mut(), &handed);
    let child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&program).display()))?;
    drop(handed);
    let jail_pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or("the jail exited at once")?;
    let init_pid = if spec.direct {
        jail_pid
    } else {
        find_init(jail_pid).ok_or_else(|| {
            let text = std::fs::read_to_string(stderr_path(dir, spec.log_id)).unwrap_or_default();
            format!("the jail did not start: {}", text.trim())
        })?
    };
    let init = PidFd::open(init_pid).map_err(|e| format!("pidfd_open: {e}"))?;
    let me = std::process::id() as i32;
    let record = Record {
        log_id: spec.log_id,
        supervisor_pid: me,
        supervisor_start: proc::start_time(me).unwrap_or(0),
        jail_pid,
        init_pid,
        init_start: proc::start_time(init_pid).unwrap_or(0),
    };
    let json = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    write_atomic(&dir.join(crate::RECORD_FILE), &json)
        .map_err(|e| format!("cannot write the supervisor record: {e}"))?;
    let tokio_stream = |s: std::os::unix::net::UnixStream| {
        s.set_nonblocking(true)
            .and_then(|()| UnixStream::from_std(s))
            .map_err(|e| e.to_string())
    };
    Ok(Started {
        record,
        proxy,
        egress,
        mcp,
        child,
        init,
        listener,
        stdin: tokio_stream(stdin_ours)?,
        stdout: tokio_stream(stdout_ours)?,
        stderr: tokio_stream(stderr_ours)?,
        jail_stderr: jail_stderr.map(tokio_stream).transpose()?,
        log,
        stderr_file,
    })
}

/// Bind the control socket 0600. A socket file left by a supervisor that died is stale
/// and removed; one that answers means a supervisor is alive here, which is refused.
fn bind(path: &Path) -> Result<UnixListener, String> {
    bind_with(path, 0o177)
}

fn bind_with(path: &Path, umask: libc::mode_t) -> Result<UnixListener, String> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!("a supervisor already runs at {}", path.display()));
    }
    let _ = std::fs::remove_file(path);
    // SAFETY: umask(2) only changes this process's creation mask (0600 by default).
    let old = unsafe { libc::umask(umask) };
    let bound = bind_by_name(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    bound.map_err(|e| format!("cannot listen on {}: {e}", path.display()))
}

/// Bind a socket by its file name from within its folder: the kernel shows the path a
/// socket was bound with in /proc/net/unix, which a sandbox the socket is bound into
/// can read, and the host path of Harvest's state folder is not the agent's to know.
/// The supervisor is single-threaded, so the working folder is ours to change; it is
/// left at `/`.
fn bind_by_name(path: &Path) -> std::io::Result<UnixListener> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return UnixListener::bind(path);
    };
    std::env::set_current_dir(dir)?;
    let bound = std::os::unix::net::UnixListener::bind(name);
    let _ = std::env::set_current_dir("/");
    let bound = bound?;
    bound.set_nonblocking(true)?;
    UnixListener::from_std(bound)
}

/// Listen on `path`, replacing what a previous agent process left there. The socket is
/// made 0600, or 0666 for a container whose user may have another uid (set at creation
/// through the umask: a chmod afterwards would follow whatever the path then names).
fn bind_replacing(path: &Path, umask: libc::mode_t) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    // SAFETY: umask(2) only changes this process's creation mask.
    let old = unsafe { libc::umask(umask) };
    let bound = bind_by_name(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    bound
}

/// A listener on the host's loopback, at a port of the kernel's choosing.
fn loopback_listener() -> Result<(tokio::net::TcpListener, std::net::SocketAddr), String> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let l = tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?;
    Ok((l, addr))
}

/// A container's user may have another uid than ours (uid 1000 when we are root): the
/// proxy sockets, in a folder only that container (read-only) and our user reach, are
/// open to it. Without a container (`direct` false) they are 0600.
fn socket_umask(direct: bool) -> libc::mode_t {
    if direct { 0o111 } else { 0o177 }
}

/// bwrap forks the namespace's init right after it starts; wait briefly for it.
fn find_init(jail_pid: i32) -> Option<i32> {
    for _ in 0..1000 {
        if let Some(pid) = proc::children(jail_pid).into_iter().next() {
            return Some(pid);
        }
        if !proc::alive(jail_pid) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// How often the agent's log is flushed to the disk while it grows.
const SYNC_EVERY: Duration = Duration::from_secs(1);

async fn pump_log(mut stdout: UnixStream, log: Arc<std::sync::Mutex<std::fs::File>>) {
    use std::io::Write;
    // Every write is whole lines under the log's lock, which the egress proxy's markers
    // take too: no line is ever split by another.
    let lock = || {
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut cap = LineCap::new(MAX_LINE);
    let mut buf = vec![0u8; 256 * 1024];
    // The log reaches the disk within a second of being written (not per line: a
    // per-line fsync would slow every agent). A power cut costs at most that second of
    // output; everything before it replays into the store (docs/architecture.md).
    let mut synced = tokio::time::Instant::now();
    let mut dirty = false;
    loop {
        let read = tokio::time::timeout(SYNC_EVERY, stdout.read(&mut buf)).await;
        let n = match read {
            Err(_) => 0,
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        if n > 0 {
            let out = cap.push(&buf[..n]);
            if !out.is_empty() {
                let written = write_retrying(&mut lock(), &out);
                if let Err(e) = written {
                    eprintln!("cannot write the agent log: {e}");
                }
                dirty = true;
            }
        }
        if dirty && synced.elapsed() >= SYNC_EVERY {
            let file = lock().try_clone();
            if let Ok(f) = file {
                // Off the lock and the loop: a slow disk delays nothing but this.
                let _ = tokio::task::spawn_blocking(move || f.sync_data()).await;
            }
            synced = tokio::time::Instant::now();
            dirty = false;
        }
    }
    let tail = cap.finish();
    if !tail.is_empty() {
        let _ = write_retrying(&mut lock(), &tail);
    }
    let mut file = lock();
    let _ = file.flush();
    let _ = file.sync_all();
}

/// A full disk must not tear a line: retry the whole write until it fits. The agent waits
/// meanwhile (its stdout fills), which is what the user wants over losing output.
fn write_retrying(log: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut warned = false;
    loop {
        let before = log.metadata().map(|m| m.len()).unwrap_or(0);
        match log.write_all(bytes) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                // Undo a partial append, so the log never holds half a line.
                let _ = log.set_len(before);
                if !warned {
                    eprintln!("disk full writing the agent log; waiting for space");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn pump_stderr(mut stderr: UnixStream, mut file: std::fs::File) {
    use std::io::Write;
    let mut kept = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = MAX_STDERR.saturating_sub(kept) as usize;
        let take = n.min(room);
        if take > 0 && file.write_all(&buf[..take]).is_ok() {
            kept += take as u64;
        }
    }
}

async fn serve(listener: UnixListener, input: Input, init: Arc<PidFd>, direct: bool) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Only our own user may talk to us (the folder is 0700 too).
        // SAFETY: getuid(2) cannot fail.
        let me = unsafe { libc::getuid() };
        if stream.peer_cred().map(|c| c.uid()).ok() != Some(me) {
            continue;
        }
        tokio::spawn(connection(stream, input.clone(), init.clone(), direct));
    }
}

async fn connection(stream: UnixStream, input: Input, init: Arc<PidFd>, direct: bool) {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read.take(u64::MAX));
    loop {
        let mut line = Vec::new();
        reader.get_mut().set_limit(MAX_REQUEST as u64 + 1);
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(n) if n > MAX_REQUEST => {
                let _ = reply(&mut write, error("request too long")).await;
                return;
            }
            Ok(_) => {}
        }
        let response = match serde_json::from_slice::<Request>(&line) {
            Ok(req) => handle(req, &input, &init, direct).await,
            Err(e) => error(&format!("bad request: {e}")),
        };
        if reply(&mut write, response).await.is_err() {
            return;
        }
    }
}

async fn handle(req: Request, input: &Input, init: &PidFd, direct: bool) -> Response {
    match req {
        Request::Write { line, id } => match input.write(&line, id).await {
            Ok(()) => ok(),
            Err(e) => error(&e),
        },
        Request::Signal { signal } => {
            let sig = match signal {
                SignalKind::Interrupt => libc::SIGINT,
                SignalKind::Terminate => libc::SIGTERM,
            };
            if direct {
                // The agent's stand-in passes the signal on to the agent.
                if let Err(e) = init.signal(sig) {
                    return error(&format!("cannot signal the agent: {e}"));
                }
            } else {
                // The CLI is the namespace init's child (the init is bwrap's reaper).
                signal_children(init, sig);
            }
            ok()
        }
        Request::Kill => match init.signal(libc::SIGKILL) {
            Ok(()) => ok(),
            Err(e) => error(&format!("cannot kill the sandbox: {e}")),
        },
        Request::Status => Response {
            ok: true,
            error: None,
            running: Some(input.running.load(std::sync::atomic::Ordering::SeqCst)),
        },
    }
}

fn ok() -> Response {
    Response {
        ok: true,
        error: None,
        running: None,
    }
}

fn error(message: &str) -> Response {
    Response {
        ok: false,
        error: Some(message.to_owned()),
        running: None,
    }
}

async fn reply(w: &mut tokio::net::unix::OwnedWriteHalf, r: Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(&r).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    line.push(b'\n');
    w.write_all(&line).await
}
