//! One agent process's log as a file, written by its supervisor and read here by offset,
//! woken by inotify (a poll interval backs it up, so a missed wake-up costs latency,
//! never data). The log ends when the supervisor has written the exit record (it does so
//! after the last byte) or is gone, and everything up to EOF has been read.

use crate::{AgentLog, LogRead, Result, SandboxError};
use async_trait::async_trait;
use inotify::{Inotify, WatchMask};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// The largest chunk returned at once; a backlog (after a daemon restart) is ingested in
/// pieces so that other sessions keep their turn.
const MAX_CHUNK: usize = 1024 * 1024;

/// Whether the process writing the log has finished (no byte will be added).
pub type Finished = Box<dyn Fn() -> bool + Send + Sync>;

pub struct FileLog {
    path: PathBuf,
    file: Option<std::fs::File>,
    offset: u64,
    watch: Option<AsyncFd<Inotify>>,
    finished: Finished,
}

impl FileLog {
    pub fn open(path: &Path, offset: u64, finished: Finished) -> Result<FileLog> {
        // Without inotify (out of watches) the log is still read, by polling. The folder is
        // watched as well, for the exit record that ends the log.
        let watch = Inotify::init()
            .and_then(|ino| {
                if let Some(dir) = path.parent() {
                    ino.watches()
                        .add(dir, WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::MODIFY)?;
                }
                // SAFETY: `Inotify` owns its descriptor for its whole life and always
                // returns the same one; the AsyncFd owns the Inotify.
                unsafe { AsyncFd::register(ino) }.map_err(std::io::Error::from)
            })
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "inotify unavailable; polling the agent log"))
            .ok();
        let mut log = FileLog {
            path: path.to_owned(),
            file: None,
            offset,
            watch,
            finished,
        };
        log.open_file()?;
        Ok(log)
    }

    /// The file may not exist yet (a supervisor just starting); that is not an error.
    fn open_file(&mut self) -> Result<()> {
        if self.file.is_none() {
            match std::fs::File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(SandboxError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn read_available(&mut self) -> Result<Vec<u8>> {
        self.open_file()?;
        let Some(file) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        let io = |source| SandboxError::Io {
            path: self.path.clone(),
            source,
        };
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut buf = Vec::new();
        file.take(MAX_CHUNK as u64)
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

/// Free the disk blocks of a log's committed prefix. The file keeps its length, so every
/// offset means what it meant; the freed part reads as zeros, and nobody reads it again
/// (ingestion goes on from the committed offset). A long session's log then costs the
/// disk what is not yet committed, not its whole history.
pub fn punch_hole(path: &Path, committed: u64) -> Result<()> {
    use std::os::fd::AsRawFd;
    // Whole 1 MiB blocks only: cheap to repeat, and the tail being written is untouched.
    let end = committed / (1024 * 1024) * (1024 * 1024);
    if end == 0 {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| SandboxError::Io {
            path: path.to_owned(),
            source,
        })?;
    let len = libc::off_t::try_from(end).unwrap_or(libc::off_t::MAX);
    // SAFETY: fallocate(2) on a descriptor we own; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            len,
        )
    };
    if rc != 0 {
        return Err(SandboxError::Io {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[async_trait]
impl AgentLog for FileLog {
    async fn next(&mut self, idle_poll: Duration) -> Result<LogRead> {
        let deadline = tokio::time::Instant::now() + idle_poll;
        loop {
            let chunk = self.read_available()?;
            if !chunk.is_empty() {
                return Ok(LogRead::Data(chunk));
            }
            if (self.finished)() {
                // Finished is recorded after the last byte: one more read settles it.
                let chunk = self.read_available()?;
                return Ok(if chunk.is_empty() {
                    LogRead::End
                } else {
                    LogRead::Data(chunk)
                });
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(LogRead::Idle);
            }
            self.wait_for_change(deadline - now).await;
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
    async fn a_compacted_log_frees_its_committed_prefix_and_reads_on_from_the_offset() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let line = format!("{}\n", "x".repeat(1023));
        let mut w = std::fs::File::create(&path).unwrap();
        for _ in 0..(8 * 1024) {
            w.write_all(line.as_bytes()).unwrap();
        }
        w.write_all(b"tail\n").unwrap();
        w.sync_all().unwrap();
        let before = std::fs::metadata(&path).unwrap();
        let committed = 8 * 1024 * 1024;
        punch_hole(&path, committed).unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(after.len(), before.len(), "offsets keep their meaning");
        assert!(
            after.blocks() * 512 < before.blocks() * 512 / 4,
            "the committed prefix still takes {} of {} bytes",
            after.blocks() * 512,
            before.blocks() * 512
        );
        let mut log = FileLog::open(&path, committed, Box::new(|| true)).unwrap();
        assert_eq!(
            log.next(Duration::from_millis(10)).await.unwrap(),
            LogRead::Data(b"tail\n".to_vec())
        );
    }
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn reads_from_the_offset_wakes_on_writes_and_ends_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut w = std::fs::File::create(&path).unwrap();
        w.write_all(b"one\n").unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let mut log =
            FileLog::open(&path, 0, Box::new(move || flag.load(Ordering::SeqCst))).unwrap();
        assert_eq!(
            log.next(Duration::from_secs(1)).await.unwrap(),
            LogRead::Data(b"one\n".to_vec())
        );
        assert_eq!(
            log.next(Duration::from_millis(20)).await.unwrap(),
            LogRead::Idle
        );
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            w.write_all(b"two\n").unwrap();
            w
        });
        let t = std::time::Instant::now();
        assert_eq!(
            log.next(Duration::from_secs(5)).await.unwrap(),
            LogRead::Data(b"two\n".to_vec())
        );
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "woken by the write, not the timeout"
        );
        let mut w = writer.await.unwrap();
        // The last line lands, then the process is recorded as finished: the reader gets
        // the line before the end, never the end first.
        w.write_all(b"last\n").unwrap();
        done.store(true, Ordering::SeqCst);
        assert_eq!(
            log.next(Duration::from_secs(1)).await.unwrap(),
            LogRead::Data(b"last\n".to_vec())
        );
        assert_eq!(
            log.next(Duration::from_secs(1)).await.unwrap(),
            LogRead::End
        );
        assert_eq!(log.offset(), 13);
        // Reopening at an offset skips what was ingested.
        let mut again = FileLog::open(&path, 4, Box::new(|| true)).unwrap();
        assert_eq!(
            again.next(Duration::from_millis(10)).await.unwrap(),
            LogRead::Data(b"two\nlast\n".to_vec())
        );
        assert_eq!(
            again.next(Duration::from_millis(10)).await.unwrap(),
            LogRead::End
        );
    }
}
