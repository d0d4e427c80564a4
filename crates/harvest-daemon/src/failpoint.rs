//! Test hooks: `HARVEST_TEST_CRASH_AT=<point>` in the daemon's environment makes it die
//! at that point, as a `kill -9` would, so the tests can prove that a crash exactly there
//! loses nothing and leaves nothing behind. Points: `after_spawn` (a sandbox and agent
//! exist, nothing about them is recorded), `before_delivery` (a message is stored, not yet
//! written to the agent), `after_delivery` (written, not yet recorded as written).

pub fn crash(point: &str) {
    if std::env::var("HARVEST_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        tracing::warn!(point, "crashing on purpose (HARVEST_TEST_CRASH_AT)");
        std::process::abort();
    }
}

/// `HARVEST_TEST_STORE_FULL=<file>`: while that file exists, the store behaves as on a
/// full disk (every append fails), so tests can watch a session stall and recover.
pub fn store_full() -> bool {
    std::env::var_os("HARVEST_TEST_STORE_FULL").is_some_and(|p| std::path::Path::new(&p).exists())
}
