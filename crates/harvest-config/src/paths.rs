//! The folders and files of a Harvest installation.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error(
        "cannot tell where to keep Harvest's files: HOME is not set; set HOME or the XDG_*_HOME variables"
    )]
    NoHome,
}

#[derive(Debug, Clone)]
pub struct Paths {
    /// The daemon's socket; its folder is private (0700).
    pub socket: PathBuf,
    /// `$XDG_DATA_HOME/harvest`: the store and cloned workspaces.
    pub data_dir: PathBuf,
    /// `$XDG_STATE_HOME/harvest`: daemon logs and each session's state folder.
    pub state_dir: PathBuf,
    /// `$XDG_CONFIG_HOME/harvest`: `harvest.toml`.
    pub config_dir: PathBuf,
}

impl Paths {
    /// Resolve from the environment: `HARVEST_SOCKET` overrides the socket; otherwise
    /// `$XDG_RUNTIME_DIR/harvest/harvestd.sock`, or `/tmp/harvest-<uid>/harvestd.sock`
    /// when there is no runtime dir (a plain SSH login, a container).
    pub fn from_env() -> Result<Paths, PathsError> {
        let dirs = directories::ProjectDirs::from("", "", "harvest").ok_or(PathsError::NoHome)?;
        let data_dir = dirs.data_dir().to_owned();
        // state_dir() is Linux-only in `directories`; fall back beside the data.
        let state_dir = dirs
            .state_dir()
            .map(Path::to_owned)
            .unwrap_or_else(|| data_dir.join("state"));
        let socket = match std::env::var_os("HARVEST_SOCKET") {
            Some(s) if !s.is_empty() => PathBuf::from(s),
            _ => match dirs.runtime_dir() {
                Some(run) => run.join("harvestd.sock"),
                None => {
                    // SAFETY: getuid(2) cannot fail and touches no memory.
                    let uid = unsafe { libc::getuid() };
                    PathBuf::from(format!("/tmp/harvest-{uid}/harvestd.sock"))
                }
            },
        };
        Ok(Paths {
            socket,
            data_dir,
            state_dir,
            config_dir: dirs.config_dir().to_owned(),
        })
    }

    pub fn socket_dir(&self) -> &Path {
        self.socket.parent().unwrap_or(Path::new("/"))
    }
    /// The lock that makes one daemon per socket.
    pub fn lock_file(&self) -> PathBuf {
        let mut name = self.socket.file_name().unwrap_or_default().to_owned();
        name.push(".lock");
        self.socket_dir().join(name)
    }
    pub fn store(&self) -> PathBuf {
        self.data_dir.join("harvest.db")
    }
    pub fn workspaces_dir(&self) -> PathBuf {
        self.data_dir.join("workspaces")
    }
    pub fn sessions_dir(&self) -> PathBuf {
        self.state_dir.join("sessions")
    }
    /// Repositories' setups kept for the next container session (see `[setup] cache`).
    pub fn kept_setups_dir(&self) -> PathBuf {
        self.data_dir.join("kept-setups")
    }
    /// A short name for this store, carried by the docker provider's containers, so two
    /// daemons (two users, two tests, two machines sharing an engine) never take each
    /// other's containers for their own: random, made once and kept in the data folder
    /// (`instance`), so it is the same across restarts and upgrades.
    pub fn instance(&self) -> String {
        let path = self.data_dir.join("instance");
        let valid = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Ok(text) = std::fs::read_to_string(&path)
            && valid(text.trim())
        {
            return text.trim().to_owned();
        }
        let mut bytes = [0u8; 8];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            use std::io::Read;
            let _ = f.read_exact(&mut bytes);
        }
        let made: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let _ = std::fs::create_dir_all(&self.data_dir);
        // Only the first writer's id counts: a second reads it back.
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, made.as_bytes()));
        match (created, std::fs::read_to_string(&path)) {
            (_, Ok(text)) if valid(text.trim()) => text.trim().to_owned(),
            _ => made,
        }
    }
    pub fn session_state_dir(&self, id: &str) -> PathBuf {
        self.sessions_dir().join(id)
    }
    /// The session this user last attached to or sent to (`harvest` with no arguments
    /// opens it).
    pub fn last_session_file(&self) -> PathBuf {
        self.state_dir.join("last-session")
    }

    pub fn remember_session(&self, id: &str) {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::create_dir_all(&self.state_dir);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(self.last_session_file())
        {
            let _ = std::io::Write::write_all(&mut f, id.as_bytes());
        }
    }

    pub fn last_session(&self) -> Option<String> {
        let id = std::fs::read_to_string(self.last_session_file()).ok()?;
        let id = id.trim();
        (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric())).then(|| id.to_owned())
    }

    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("harvest.toml")
    }
}
