//! The panic guard and the supervision of background threads. Every `extern "C"` function of
//! [`crate::ffi`] runs inside [`guard`], so that no panic unwinds into SQLite; every background
//! loop (uploader, compactor, follower, metrics, monitor) runs its steps inside [`catch`] or
//! [`supervise`], so that a panic is logged with its message and the work restarts instead of
//! the thread ending silently. A leaf module: any layer may use it.
//!
//! Restart policy ([`Supervision`]): a unit of work (one database's sync, one database's
//! compaction round, one follower's poll) that panics is restarted after [`RESTART_DELAY`]; if
//! it panics again in its first run after that restart, it panics "at once" and is stopped
//! (its caller reports a named error). A whole loop ([`supervise`]) restarts with a delay that
//! doubles up to [`MAX_RESTART_DELAY`] while it keeps panicking.

use std::any::Any;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Pause before a unit of work runs again after a panic: long enough that a fault that
/// repeats does not spin a core and flood the log, short enough that replication resumes
/// within about one default `sync-interval` (1 s) after a one-off fault.
pub(crate) const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Longest pause between restarts of a whole background loop that keeps panicking: the loop
/// serves every database, so it is never given up, but a persistent fault logs at most about
/// once a minute.
pub(crate) const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// The message of a caught panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A caught panic: its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Panicked(pub String);

/// Runs `f`; a panic becomes `Err` with its message.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| Panicked(panic_message(p.as_ref())))
}

/// Runs `f`, turning a panic into `on_panic` (and a log line) instead of unwinding into C.
pub(crate) fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch(f) {
        Ok(v) => v,
        Err(msg) => {
            tracing::error!(panic = %msg, "internal error in liblitestream (caught; please report)");
            on_panic
        }
    }
}

/// What a supervised unit of work does after a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterPanic {
    /// Run it again after this delay.
    Restart(Duration),
    /// It panicked again at once after a restart: stop it.
    Stop,
}

/// The restart state of one unit of work (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Supervision {
    /// The previous run panicked (so the current one is the first after a restart).
    restarted: bool,
}

impl Supervision {
    /// A run finished without panicking (successfully or with an ordinary error).
    pub(crate) fn finished(&mut self) {
        self.restarted = false;
    }

    /// A run panicked: restart it, or stop it if it was the first run after a restart.
    pub(crate) fn panicked(&mut self) -> AfterPanic {
        if std::mem::replace(&mut self.restarted, true) {
            AfterPanic::Stop
        } else {
            AfterPanic::Restart(RESTART_DELAY)
        }
    }
}

/// The delay before the `n`th consecutive restart (1-based) of a whole loop.
fn loop_restart_delay(n: u32) -> Duration {
    RESTART_DELAY
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(MAX_RESTART_DELAY)
}

/// Runs `step` until it returns `Break`. A panicking step is logged with the thread's name and
/// the panic message, and the loop goes on after a delay that doubles while steps keep
/// panicking (state kept outside `step` survives the restart).
pub(crate) fn supervise(thread: &str, mut step: impl FnMut() -> ControlFlow<()>) {
    let mut consecutive = 0u32;
    loop {
        match catch(&mut step) {
            Ok(ControlFlow::Break(())) => return,
            Ok(ControlFlow::Continue(())) => consecutive = 0,
            Err(msg) => {
                consecutive = consecutive.saturating_add(1);
                let delay = loop_restart_delay(consecutive);
                tracing::error!(thread, panic = %msg, restart_in_ms = delay.as_millis() as u64, "background thread panicked; restarting it (please report)");
                std::thread::sleep(delay);
            }
        }
    }
}

/// The environment variable of test-only fault injection: `<point>=<count>` makes the first
/// `count` arrivals at [`inject`]`(point)` panic; `<point>=abort` makes the first arrival
/// abort the process (a crash at that exact point, as a `kill -9` there would be).
/// Integration tests set it to check that a panic in a background thread is survived and that
/// a crash at a given point loses nothing; it is never set in production.
#[doc(hidden)]
pub const FAULT_ENV: &str = "LITESTREAM_TEST_FAULT";

struct Fault {
    point: String,
    remaining: AtomicU32,
    abort: bool,
}

fn fault() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT
        .get_or_init(|| parse_fault(&std::env::var(FAULT_ENV).ok()?))
        .as_ref()
}

fn parse_fault(spec: &str) -> Option<Fault> {
    let (point, count) = spec.split_once('=')?;
    let abort = count == "abort";
    Some(Fault {
        point: point.to_string(),
        remaining: AtomicU32::new(if abort { 1 } else { count.parse().ok()? }),
        abort,
    })
}

/// A fault-injection point (see [`FAULT_ENV`]): panics while the configured count for `point`
/// lasts; otherwise does nothing.
pub(crate) fn inject(point: &str) {
    let Some(f) = fault().filter(|f| f.point == point) else {
        return;
    };
    let took = f
        .remaining
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    if took.is_ok() && f.abort {
        tracing::error!(point, "aborting the process: injected crash ({FAULT_ENV})");
        std::process::abort();
    }
    if took.is_ok() {
        panic!("injected fault at {point} ({FAULT_ENV})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_returns_the_panic_message() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(
            catch(|| -> () { panic!("boom") }),
            Err(Panicked("boom".to_string()))
        );
        let n = 3;
        assert_eq!(
            catch(|| -> () { panic!("boom {n}") }),
            Err(Panicked("boom 3".to_string()))
        );
    }

    #[test]
    fn a_panic_right_after_a_restart_stops_the_unit() {
        let mut s = Supervision::default();
        assert_eq!(s.panicked(), AfterPanic::Restart(RESTART_DELAY));
        assert_eq!(s.panicked(), AfterPanic::Stop);
        let mut s = Supervision::default();
        assert_eq!(s.panicked(), AfterPanic::Restart(RESTART_DELAY));
        s.finished();
        assert_eq!(s.panicked(), AfterPanic::Restart(RESTART_DELAY));
    }

    #[test]
    fn loop_restarts_back_off_up_to_the_maximum() {
        assert_eq!(loop_restart_delay(1), RESTART_DELAY);
        assert_eq!(loop_restart_delay(2), RESTART_DELAY * 2);
        assert!(loop_restart_delay(3) > loop_restart_delay(2));
        assert_eq!(loop_restart_delay(40), MAX_RESTART_DELAY);
    }

    #[test]
    fn supervise_survives_a_panicking_step_and_keeps_state() {
        let mut runs = 0;
        supervise("test", || {
            runs += 1;
            if runs == 1 {
                panic!("first step fails");
            }
            if runs == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(runs, 3);
    }

    #[test]
    fn fault_specs_parse() {
        let f = parse_fault("uploader=2").expect("valid");
        assert_eq!(f.point, "uploader");
        assert_eq!(f.remaining.load(Ordering::Relaxed), 2);
        assert!(parse_fault("uploader").is_none());
        assert!(parse_fault("uploader=x").is_none());
    }
}
