//! Bounded waits: let background work (uploads, child processes) finish without ever asserting
//! on how long it took. Callers assert on the outcome after the wait.

use std::time::{Duration, Instant};

/// Polls `cond` until it returns true or `timeout` has passed; returns the last result.
/// The poll interval starts at 20 ms and grows to 500 ms.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Polls `get` until it returns `want` (or `timeout` passes) and returns the last value, so the
/// caller can `assert_eq!` it with a useful diff.
pub fn wait_until_eq<T: PartialEq>(timeout: Duration, want: &T, mut get: impl FnMut() -> T) -> T {
    let mut last = get();
    wait_until(timeout, || {
        if &last == want {
            return true;
        }
        last = get();
        &last == want
    });
    last
}
