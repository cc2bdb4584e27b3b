//! The tokio runtime that drives every S3 request: one current-thread runtime owned by a
//! background thread (`litestream-s3`), started on first use and never stopped.
//!
//! Callers (the uploader and restore threads, never SQLite's commit path) block on a future with
//! [`block_on`]: the future is spawned on the runtime and its result comes back over a channel.
//! At process exit the thread simply ends with the process; the uploader's `atexit` flush runs
//! before that, while the runtime is still alive, so a pending upload completes. The runtime is
//! never dropped (dropping it from `atexit` or a forked child can hang).

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Handle;

/// The runtime handle and the pid of the process that started it.
struct Owned {
    handle: Handle,
    pid: u32,
}

static RUNTIME: OnceLock<Result<Owned, RuntimeError>> = OnceLock::new();

/// Why a future could not run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot start the S3 runtime thread: {0}")]
    Start(String),
    #[error(
        "the S3 runtime belongs to the parent process (this is a forked child); \
         S3 requests work only in the process that started them"
    )]
    Forked,
    #[error("the S3 runtime stopped before the request finished")]
    Stopped,
}

fn start() -> Result<Owned, RuntimeError> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("litestream-s3".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = tx.send(Ok(rt.handle().clone()));
            // Drive spawned requests for the life of the process.
            rt.block_on(std::future::pending::<()>());
        })
        .map_err(|e| RuntimeError::Start(e.to_string()))?;
    let handle = rx
        .recv()
        .map_err(|_| RuntimeError::Start("the runtime thread exited during start-up".into()))?
        .map_err(RuntimeError::Start)?;
    tracing::debug!("S3 runtime thread started");
    Ok(Owned {
        handle,
        pid: std::process::id(),
    })
}

fn handle() -> Result<&'static Handle, RuntimeError> {
    let owned = RUNTIME.get_or_init(start).as_ref().map_err(Clone::clone)?;
    if owned.pid != std::process::id() {
        return Err(RuntimeError::Forked);
    }
    Ok(&owned.handle)
}

/// Runs `fut` on the S3 runtime and waits for its result. Must not be called from the runtime
/// thread itself (it would wait for itself).
pub fn block_on<F, T>(fut: F) -> Result<T, RuntimeError>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handle = handle()?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| RuntimeError::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_futures_from_many_threads() {
        let results: Vec<u32> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8u32)
                .map(|i| {
                    s.spawn(move || {
                        block_on(async move {
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                            i * 2
                        })
                        .expect("runtime")
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("join")).collect()
        });
        assert_eq!(results, (0..8).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_future_reports_stopped_and_the_runtime_survives() {
        let r: Result<(), _> = block_on(async { panic!("boom") });
        assert!(matches!(r, Err(RuntimeError::Stopped)));
        assert_eq!(block_on(async { 7 }).expect("runtime still works"), 7);
    }
}
