//! The fake's memory: sandboxes with a stored and a desired state (the shown state is
//! derived from both, reference §2.5), their sessions, the faults asked for, and every
//! request it was sent (for the tests that check what reached the "service").

use crate::jail::Jail;
use crate::session::Session;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How the fake was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub api_key: String,
    /// Where each sandbox's files live: `<root>/<id>/`.
    pub root: PathBuf,
    /// The `claude` binary each sandbox shows at /usr/local/bin/claude (the snapshot's).
    pub claude: Option<PathBuf>,
    /// How long each lifecycle transition takes.
    pub transition: Duration,
    /// How long a finished command's log WebSocket stays open (the real one: about 1 s).
    pub close_after: Duration,
    /// The longest binary frame of a log WebSocket (the real daemon: 1024).
    pub frame_bytes: usize,
    /// How long one "minute" of auto-stop is (tests shorten it).
    pub minute: Duration,
    /// The address the fake serves on, for the URLs it hands out.
    pub base: String,
}

/// A state as Daytona names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Creating,
    Started,
    Stopped,
    Archived,
    Destroyed,
    Error,
    BuildFailed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Started => "started",
            State::Stopped => "stopped",
            State::Archived => "archived",
            State::Destroyed => "destroyed",
            State::Error => "error",
            State::BuildFailed => "build_failed",
        }
    }
}

pub struct Lifecycle {
    pub stored: State,
    pub desired: State,
    pub error_reason: Option<String>,
    pub preview_token: String,
    pub last_activity: Instant,
    pub updated_at: String,
}

impl Lifecycle {
    /// The state the API shows (§2.5).
    pub fn shown(&self) -> &'static str {
        use State::*;
        match (self.stored, self.desired) {
            (Started, Stopped) => "stopping",
            (Started, Destroyed) | (Stopped, Destroyed) | (Archived, Destroyed) => "destroying",
            (Creating, Destroyed) | (Error, Destroyed) | (BuildFailed, Destroyed) => "destroying",
            (Stopped, Started) => "starting",
            (Archived, Started) => "restoring",
            (Stopped, Archived) => "archiving",
            (s, _) => s.name(),
        }
    }

    pub fn in_transition(&self) -> bool {
        self.stored != self.desired && !matches!(self.stored, State::Error | State::BuildFailed)
    }
}

pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub snapshot: String,
    pub target: String,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub public: bool,
    pub network_block_all: bool,
    pub domain_allow_list: Option<String>,
    pub auto_stop: i64,
    pub auto_archive: i64,
    pub auto_delete: i64,
    pub created_at: String,
    pub seq: u64,
    pub life: Mutex<Lifecycle>,
    pub sessions: Mutex<HashMap<String, Arc<Session>>>,
    pub jail: Jail,
}

impl Sandbox {
    pub fn life(&self) -> MutexGuard<'_, Lifecycle> {
        lock(&self.life)
    }

    pub fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        lock(&self.sessions)
    }

    /// The Sandbox object of the API (§2.1); a list item leaves out env and network fields.
    pub fn to_json(&self, toolbox_proxy_url: &str, list_item: bool) -> Value {
        let life = self.life();
        let mut v = json!({
            "id": self.id, "organizationId": "fake-org", "name": self.name,
            "snapshot": self.snapshot, "user": "daytona", "labels": self.labels,
            "public": self.public, "target": self.target,
            "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
            "state": life.shown(), "desiredState": life.desired.name(),
            "errorReason": life.error_reason, "recoverable": false, "backupState": "None",
            "autoStopInterval": self.auto_stop, "autoArchiveInterval": self.auto_archive,
            "autoDeleteInterval": self.auto_delete, "sandboxClass": "container",
            "createdAt": self.created_at, "updatedAt": life.updated_at,
            "daemonVersion": "fake", "runnerId": "fake-runner",
            "toolboxProxyUrl": toolbox_proxy_url,
        });
        if !list_item {
            v["env"] = json!(self.env);
            v["networkBlockAll"] = json!(self.network_block_all);
            v["networkAllowList"] = Value::Null;
            v["domainAllowList"] = json!(self.domain_allow_list);
            v["volumes"] = json!([]);
            v["buildInfo"] = Value::Null;
        } else {
            v["networkBlockAll"] = json!(self.network_block_all);
        }
        v
    }
}

/// A fault the tests asked for.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// The next `count` calls under a throttler answer 429 with its headers.
    RateLimit {
        throttler: String,
        count: u32,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// The next `count` calls whose path contains `path` answer 500 (or `status`).
    ServerError {
        #[serde(default)]
        path: String,
        count: u32,
        #[serde(default)]
        status: Option<u16>,
    },
    /// The next `count` log WebSockets are dropped (no close frame) once they have sent
    /// `after_bytes` bytes.
    DropWs { count: u32, after_bytes: usize },
    /// A sandbox (or, without an id, the next one created) goes to `error`.
    SandboxError {
        #[serde(default)]
        id: Option<String>,
        reason: String,
    },
    /// Lifecycle transitions take this long from now on.
    Transition { ms: u64 },
    /// For `ms` from now the service is out of reach: every call answers 503 and open log
    /// WebSockets are cut (a network or proxy outage).
    Outage { ms: u64 },
}

#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// When it arrived, in milliseconds since the Unix epoch (a benchmark lines requests
    /// up with what it saw happen).
    pub at_ms: u64,
    pub method: String,
    pub uri: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

#[derive(Default)]
pub struct Faults {
    pub list: Vec<Fault>,
    pub error_next_create: Option<String>,
    pub outage_until: Option<Instant>,
}

pub struct Fake {
    pub opts: Mutex<Options>,
    pub sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
    pub faults: Mutex<Faults>,
    pub requests: Mutex<Vec<Recorded>>,
    pub seq: std::sync::atomic::AtomicU64,
}

pub type Shared = Arc<Fake>;

impl Fake {
    pub fn new(opts: Options) -> Shared {
        Arc::new(Fake {
            opts: Mutex::new(opts),
            sandboxes: Mutex::new(HashMap::new()),
            faults: Mutex::new(Faults::default()),
            requests: Mutex::new(Vec::new()),
            seq: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn opts(&self) -> Options {
        lock(&self.opts).clone()
    }

    pub fn toolbox_proxy_url(&self) -> String {
        format!("{}/toolbox", self.opts().base)
    }

    /// A sandbox by id, then by name; a destroyed one is unknown.
    pub fn find(&self, id_or_name: &str) -> Option<Arc<Sandbox>> {
        let all = lock(&self.sandboxes);
        let found = all
            .get(id_or_name)
            .or_else(|| all.values().find(|s| s.name == id_or_name))?;
        (found.life().stored != State::Destroyed).then(|| found.clone())
    }

    /// Whether an outage is on.
    pub fn out(&self) -> bool {
        lock(&self.faults)
            .outage_until
            .is_some_and(|t| Instant::now() < t)
    }

    /// Take one use of a matching fault.
    pub fn take_fault(&self, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let i = faults.list.iter().position(&matches)?;
        let f = faults.list[i].clone();
        let left = match &mut faults.list[i] {
            Fault::RateLimit { count, .. }
            | Fault::ServerError { count, .. }
            | Fault::DropWs { count, .. } => {
                *count = count.saturating_sub(1);
                *count
            }
            _ => 0,
        };
        if left == 0 {
            faults.list.remove(i);
        }
        Some(f)
    }
}

pub use crate::locking::lock;
