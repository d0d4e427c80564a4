//! The unsent message of each session, kept across detach and reattach (and an SSH drop,
//! which detaches): one private file per session in the state folder.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

pub struct Drafts {
    dir: PathBuf,
}

impl Drafts {
    pub fn new(dir: PathBuf) -> Drafts {
        Drafts { dir }
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
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path);
        if let Ok(mut f) = file {
            let _ = f.write_all(text.as_bytes());
        }
    }
}
