//! The agent log as a file: the agent's stdout is the file itself (it was opened with
//! O_APPEND and handed to the process), and the daemon reads it by offset, woken by
//! inotify. A poll interval backs inotify up, so a missed wake-up costs latency, never
//! data.

use crate::{AgentLog, Result, SandboxError};
use async_trait::async_trait;
use inotify::{Inotify, WatchMask};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// The largest chunk returned at once; a backlog (after a daemon restart) is ingested in
/// pieces so that other sessions keep their turn.
const MAX_CHUNK: usize = 1024 * 1024;

pub struct FileLog {
    path: PathBuf,
    file: std::fs::File,
    offset: u64,
    watch: Option<AsyncFd<Inotify>>,
}

impl FileLog {
    pub fn open(path: &Path, offset: u64) -> Result<FileLog> {
        let io = |source| SandboxError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // Without inotify (out of watches) the log is still read, by polling.
        let watch = Inotify::init()
            .and_then(|ino| {
                ino.watches().add(path, WatchMask::MODIFY | WatchMask::CLOSE_WRITE)?;
                // SAFETY: `Inotify` owns its descriptor for its whole life and always
                // returns the same one; the AsyncFd owns the Inotify.
                unsafe { AsyncFd::register(ino) }.map_err(std::io::Error::from)
            })
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "inotify unavailable; polling the agent log"))
            .ok();
        Ok(FileLog {
            path: path.to_owned(),
            file,
            offset,
            watch,
        })
    }

    fn read_available(&mut self) -> Result<Vec<u8>> {
        let io = |source| SandboxError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut buf = Vec::new();
        (&mut self.file)
            .take(MAX_CHUNK as u64)
            .read_to_end(&mut buf)
            .map_err(|source| SandboxError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.offset += buf.len() as u64;
        Ok(buf)
    }

    async fn wait_for_change(&mut self, timeout: Duration) {
        let Some(watch) = self.watch.as_mut() else {
            tokio::time::sleep(timeout.min(Duration::from_millis(20))).await;
            return;
        };
        let wait = async {
            if let Ok(mut guard) = watch.readable_mut().await {
                let mut buf = [0u8; 4096];
                // Drain the queued notifications; their content does not matter.
                let _ = guard.try_io(|inner| inner.get_mut().read_events(&mut buf).map(|_| ()));
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
    }
}

#[async_trait]
impl AgentLog for FileLog {
    async fn next_chunk(&mut self, idle_poll: Duration) -> Result<Vec<u8>> {
        loop {
            let chunk = self.read_available()?;
            if !chunk.is_empty() {
                return Ok(chunk);
            }
            let before = tokio::time::Instant::now();
            self.wait_for_change(idle_poll).await;
            if before.elapsed() >= idle_poll {
                // One last look, then report idleness.
                return self.read_available();
            }
        }
    }

    fn offset(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn reads_appended_bytes_from_the_offset_and_wakes_on_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        let mut w = std::fs::File::create(&path).unwrap();
        w.write_all(b"one\n").unwrap();
        let mut log = FileLog::open(&path, 0).unwrap();
        assert_eq!(
            log.next_chunk(Duration::from_secs(1)).await.unwrap(),
            b"one\n"
        );
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            w.write_all(b"two\n").unwrap();
        });
        let t = std::time::Instant::now();
        assert_eq!(
            log.next_chunk(Duration::from_secs(5)).await.unwrap(),
            b"two\n"
        );
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "woken by the write, not the timeout"
        );
        writer.await.unwrap();
        assert_eq!(log.offset(), 8);
        // Reopening at an offset skips what was ingested.
        let mut again = FileLog::open(&path, 4).unwrap();
        assert_eq!(
            again.next_chunk(Duration::from_millis(10)).await.unwrap(),
            b"two\n"
        );
        assert!(
            again
                .next_chunk(Duration::from_millis(10))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
