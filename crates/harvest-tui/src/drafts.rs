//! The unsent message of each session, kept across detach and reattach (and an SSH drop,
//! which detaches): one private file per session in the state folder.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

pub struct Drafts {
    dir: PathBuf,
    paths: Option<harvest_config::Paths>,
}

impl Drafts {
    pub fn new(dir: PathBuf) -> Drafts {
        Drafts { dir, paths: None }
    }

    /// Also remember which session this user last attached to (`harvest` reopens it).
    pub fn remembering(mut self, paths: harvest_config::Paths) -> Drafts {
        self.paths = Some(paths);
        self
    }

    pub fn remember_session(&self, id: &str) {
        if let Some(p) = &self.paths {
            p.remember_session(id);
        }
    }

    fn path(&self, session: &str) -> PathBuf {
        // Session ids are hex; anything else is not a file name we write.
        let safe: String = session
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        self.dir.join(format!("{safe}.txt"))
    }

    pub fn load(&self, session: &str) -> String {
        std::fs::read_to_string(self.path(session)).unwrap_or_default()
    }

    pub fn save(&self, session: &str, text: &str) {
        let path = self.path(session);
        if text.is_empty() {
            let _ = std::fs::remove_file(path);
            return;
        }
        self.write(&path, text);
    }

    fn write(&self, path: &std::path::Path, text: &str) {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path);
        if let Ok(mut f) = file {
            let _ = f.write_all(text.as_bytes());
        }
    }
}
