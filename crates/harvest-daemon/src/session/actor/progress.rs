//! A running command's output, live: when the CLI starts a Bash command
//! (`system/task_started`, not backgrounded) the actor reads the command's output file in
//! the sandbox's temporary folder (`harvest_sandbox::task_output`) once a second and tells
//! clients how long it has run, how many lines it printed and its last lines
//! (`tool_progress` events), until its result comes. Bounded: at most one event a second
//! per command (one every ten after the first two minutes), at most [`TAIL_LINES`] lines
//! of at most [`LINE_CHARS`] characters each, and at most [`READ_PER_TICK`] bytes read a
//! second (a faster command's lines are counted from what was read, the rest skipped).

use super::Actor;
use harvest_protocol::EventBody;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

const TAIL_LINES: usize = 8;
const LINE_CHARS: usize = 300;
const READ_PER_TICK: usize = 4 << 20;
/// After this many reports a command is reported every ten seconds.
const FAST_REPORTS: u32 = 120;

#[derive(Debug)]
pub(super) struct LiveTask {
    task_id: String,
    started: Instant,
    /// The output file, relative to the sandbox's folder, once found.
    file: Option<PathBuf>,
    offset: u64,
    lines: u64,
    /// Bytes skipped unread (a command printing faster than is read).
    skipped: u64,
    partial: String,
    tail: VecDeque<String>,
    reports: u32,
    next_report: Instant,
    changed: bool,
}

/// The commands running now, by tool call, and when each Bash call was made (a command's
/// time runs from there: the CLI says it started a task a few seconds in).
#[derive(Debug, Default)]
pub(super) struct LiveTasks {
    tasks: BTreeMap<String, LiveTask>,
    calls: BTreeMap<String, Instant>,
}

impl LiveTasks {
    pub(super) fn clear(&mut self) {
        self.tasks.clear();
        self.calls.clear();
    }
}

impl Actor {
    /// A Bash call the model made: its command's time starts now.
    pub(super) fn bash_called(&mut self, tool_use_id: &str) {
        if self.live_tasks.calls.len() < 64 {
            self.live_tasks
                .calls
                .insert(tool_use_id.to_owned(), Instant::now());
        }
    }

    /// Follow a command the CLI just started (its `system/task_started` line).
    pub(super) fn task_started(&mut self, raw: &serde_json::Value) {
        let str_at = |k: &str| raw[k].as_str().unwrap_or("");
        if str_at("type") != "system"
            || str_at("subtype") != "task_started"
            || str_at("task_type") != "local_bash"
            || raw["is_backgrounded"].as_bool() == Some(true)
        {
            return;
        }
        let (task_id, tool_use_id) = (str_at("task_id"), str_at("tool_use_id"));
        if task_id.is_empty() || tool_use_id.is_empty() || self.live_tasks.tasks.len() >= 16 {
            return;
        }
        let now = Instant::now();
        let started = self
            .live_tasks
            .calls
            .get(tool_use_id)
            .copied()
            .unwrap_or(now);
        self.live_tasks.tasks.insert(
            tool_use_id.to_owned(),
            LiveTask {
                task_id: task_id.to_owned(),
                started,
                file: None,
                offset: 0,
                lines: 0,
                skipped: 0,
                partial: String::new(),
                tail: VecDeque::new(),
                reports: 0,
                next_report: now + Duration::from_secs(1),
                changed: true,
            },
        );
    }

    /// A command's result came (or its turn ended): no more reports for it.
    pub(super) fn task_done(&mut self, tool_use_id: &str) {
        self.live_tasks.tasks.remove(tool_use_id);
        self.live_tasks.calls.remove(tool_use_id);
    }

    /// When to look at the running commands again.
    pub(super) fn progress_at(&self) -> Option<Instant> {
        self.live_tasks.tasks.values().map(|t| t.next_report).min()
    }

    /// Read what the running commands printed since the last look and report those due.
    pub(super) async fn report_progress(&mut self) {
        let Some((root, tmpdir)) = self.sandbox.as_ref().and_then(|s| s.task_outputs()) else {
            self.live_tasks.clear();
            return;
        };
        let now = Instant::now();
        let due: Vec<String> = self
            .live_tasks
            .tasks
            .iter()
            .filter(|(_, t)| t.next_report <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut events = Vec::new();
        for id in due {
            let Some(task) = self.live_tasks.tasks.get_mut(&id) else {
                continue;
            };
            let (root, tmpdir) = (root.clone(), tmpdir.clone());
            let (task_id, file, offset) = (task.task_id.clone(), task.file.clone(), task.offset);
            let read = tokio::task::spawn_blocking(move || {
                let file =
                    file.or_else(|| harvest_sandbox::task_output::find(&root, &tmpdir, &task_id))?;
                let (bytes, size) =
                    harvest_sandbox::task_output::read_from(&root, &file, offset, READ_PER_TICK)
                        .ok()?;
                Some((file, bytes, size))
            })
            .await
            .ok()
            .flatten();
            if let Some((file, bytes, size)) = read {
                task.file = Some(file);
                task.take(&bytes, size);
            }
            task.reports += 1;
            if task.file.is_none() && task.reports > 30 {
                // Its output is nowhere this machine sees: stop looking.
                self.live_tasks.tasks.remove(&id);
                continue;
            }
            let every = if task.reports > FAST_REPORTS { 10 } else { 1 };
            task.next_report = now + Duration::from_secs(every);
            if task.changed || task.reports % 5 == 0 {
                task.changed = false;
                events.push(EventBody::ToolProgress {
                    tool_use_id: id.clone(),
                    elapsed_secs: task.started.elapsed().as_secs(),
                    lines: task.lines,
                    bytes: task.offset,
                    tail: task.tail.iter().cloned().collect(),
                });
            }
        }
        if !events.is_empty() {
            self.emit(events).await;
        }
    }
}

impl LiveTask {
    /// Take what was read from `offset` on; `size` is the file's whole size.
    fn take(&mut self, bytes: &[u8], size: u64) {
        if bytes.is_empty() {
            return;
        }
        self.changed = true;
        self.offset += bytes.len() as u64;
        let text = String::from_utf8_lossy(bytes);
        let mut pieces = text.split('\n').peekable();
        while let Some(piece) = pieces.next() {
            if pieces.peek().is_none() {
                // No newline after it yet: the start of a line still being written.
                self.partial.push_str(piece);
                break;
            }
            self.lines += 1;
            let mut line = std::mem::take(&mut self.partial);
            line.push_str(piece);
            let line = harvest_termsafe::text(&line, harvest_termsafe::Sgr::Drop);
            self.tail.push_back(line.chars().take(LINE_CHARS).collect());
            if self.tail.len() > TAIL_LINES {
                self.tail.pop_front();
            }
        }
        if self.partial.len() > 64 * 1024 {
            // A line without end: what is shown of it is bounded.
            self.partial.truncate(LINE_CHARS);
        }
        // A command printing faster than is read: the rest is skipped, not read later.
        if size > self.offset + READ_PER_TICK as u64 {
            self.skipped += size - self.offset;
            self.offset = size;
            self.partial.clear();
        }
    }
}
