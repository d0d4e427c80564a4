//! The agent's input. A `Write` is taken into a queue and acknowledged at once; one task
//! drains the queue into the agent's stdin. So a request never waits on the agent: an
//! agent that stops reading (a tool in the jail can SIGSTOP it) fills the queue, not the
//! control socket, and past a bound further writes are refused with a reason. The ids of
//! queued lines are remembered, so a retry of a line already taken is not queued twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{Mutex, mpsc};

/// Input bytes taken but not yet read by the agent, at most. Far above what a person
/// types ahead; a bound on what a stuck agent makes the supervisor hold.
const MAX_QUEUED: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub(crate) struct Input {
    queue: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    delivered: Arc<Mutex<HashSet<String>>>,
    /// Whether the agent runs (cleared when it exits).
    pub(crate) running: Arc<AtomicBool>,
}

impl Input {
    /// Start draining into `stdin`, which the caller closes (takes) once the agent ends.
    pub(crate) fn new(stdin: Arc<Mutex<Option<UnixStream>>>) -> Input {
        let (queue, mut lines) = mpsc::unbounded_channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let drained = queued.clone();
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                let mut guard = stdin.lock().await;
                let written = match guard.as_mut() {
                    Some(s) => s.write_all(&line).await.is_ok(),
                    None => false,
                };
                drained.fetch_sub(line.len(), Ordering::SeqCst);
                if !written {
                    // The agent is gone; what is queued can reach no one.
                    guard.take();
                }
            }
        });
        Input {
            queue,
            queued,
            delivered: Arc::default(),
            running: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Take one line for the agent. `Err` says why it cannot be taken.
    pub(crate) async fn write(&self, line: &str, id: Option<String>) -> Result<(), String> {
        if !line.ends_with('\n') || line[..line.len() - 1].contains('\n') {
            return Err("an input line must be exactly one line ending in a newline".into());
        }
        // The id check and the enqueue under one lock, so two daemons' retries (or a retry
        // racing the original) queue a line once.
        let mut delivered = self.delivered.lock().await;
        if id.as_ref().is_some_and(|id| delivered.contains(id)) {
            return Ok(());
        }
        if !self.running.load(Ordering::SeqCst) {
            return Err("the agent has exited".into());
        }
        let waiting = self.queued.load(Ordering::SeqCst);
        if waiting + line.len() > MAX_QUEUED {
            return Err(format!(
                "the agent has not read its input ({waiting} bytes wait): is it stopped? \
                 `harvest stop` ends it"
            ));
        }
        self.queued.fetch_add(line.len(), Ordering::SeqCst);
        if self.queue.send(line.as_bytes().to_vec()).is_err() {
            return Err("the agent's input is closed".into());
        }
        if let Some(id) = id {
            delivered.insert(id);
        }
        Ok(())
    }
}
