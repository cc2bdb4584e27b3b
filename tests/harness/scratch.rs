//! A temporary directory per test, kept (and its path printed) when the test panics.

use std::path::{Path, PathBuf};

/// A scratch directory under the system temp dir. Removed on drop, unless the thread is
/// panicking (a failing test) or `LITESTREAM_KEEP_SCRATCH` is set: then it is kept and its
/// path printed so the databases, replica and logs can be inspected.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Scratch {
    /// Creates a fresh directory whose name starts with `litestream-<name>-`.
    pub fn new(name: &str) -> Scratch {
        Self::new_in(name, &std::env::temp_dir())
    }

    /// Like [`Scratch::new`], but in memory (`/dev/shm`, a tmpfs, where it exists): for tests
    /// of many databases whose subject is not the disk, where thousands of fsyncs on a shared
    /// machine's disk would dominate the run time.
    pub fn in_memory(name: &str) -> Scratch {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            Self::new_in(name, shm)
        } else {
            Self::new(name)
        }
    }

    fn new_in(name: &str, base: &Path) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("litestream-{name}-"))
            .tempdir_in(base)
            .unwrap_or_else(|e| panic!("create a scratch directory in {}: {e}", base.display()));
        // Canonical: the extension and the CLIs may compare or print absolute paths.
        let path = dir
            .path()
            .canonicalize()
            .expect("canonicalize the scratch dir");
        Scratch {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(rel)`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Writes `text` to `rel` and returns the full path.
    pub fn write(&self, rel: impl AsRef<Path>, text: &str) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir in scratch");
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let keep =
            std::thread::panicking() || std::env::var_os("LITESTREAM_KEEP_SCRATCH").is_some();
        if let Some(dir) = self.dir.take() {
            if keep {
                let kept = dir.keep();
                eprintln!("scratch dir kept for inspection: {}", kept.display());
            }
        }
    }
}
