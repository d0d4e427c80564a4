//! What /proc says about a process: its start time (to tell it from a reused pid), its
//! parent, its children, whether it is alive.

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_field(pid, 19)?.parse().ok()
}

/// Field 4 of /proc/PID/stat: the parent pid.
pub fn parent(pid: i32) -> Option<i32> {
    stat_field(pid, 1)?.parse().ok()
}

/// Alive and not a zombie (a zombie still "exists" for kill(0)).
pub fn alive(pid: i32) -> bool {
    stat_field(pid, 0).is_some_and(|state| state != "Z" && state != "X")
}

/// The same process as when `start` was read: alive, with the same start time.
pub fn same_process(pid: i32, start: u64) -> bool {
    pid > 1 && alive(pid) && start_time(pid) == Some(start)
}

pub fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The fields after the command name (which may hold spaces and parentheses), 0-based
/// from the state field (field 3).
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(n).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        assert!(alive(me));
        let start = start_time(me).unwrap();
        assert!(same_process(me, start));
        assert!(
            !same_process(me, start + 1),
            "another start time is another process"
        );
        assert_eq!(parent(me), Some(unsafe { libc::getppid() }));
    }
}
