//! Watches replica level directories with inotify and timestamps each LTX file the moment it
//! becomes visible under its final name (rename into place, or close after writing in place).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Context, Result};
use crate::sys::{self, Inotify};

/// How long the watcher thread blocks in `poll` before checking its stop flag: short enough
/// that `stop` returns promptly, long enough to cost nothing.
const POLL_SLICE: Duration = Duration::from_millis(50);

/// What happened to an LTX file in a watched directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Deleted,
}

#[derive(Debug, Clone)]
pub struct FileEvent {
    pub t_ns: u64,
    pub change: Change,
    pub path: PathBuf,
}

pub struct DirWatcher {
    events: Arc<Mutex<Vec<FileEvent>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The LTX name pattern of replicas: `^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$`.
pub fn is_ltx_name(name: &str) -> bool {
    let b = name.as_bytes();
    let hex = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    b.len() == 37 && hex(&b[..16]) && b[16] == b'-' && hex(&b[17..33]) && &b[33..] == b".ltx"
}

impl DirWatcher {
    /// Creates the directories `dirs` (if missing) and starts watching them.
    pub fn start(dirs: &[PathBuf]) -> Result<DirWatcher> {
        let ino = Inotify::new().ctx(|| "inotify_init1".to_string())?;
        let mut wds: HashMap<i32, PathBuf> = HashMap::new();
        for d in dirs {
            std::fs::create_dir_all(d).ctx(|| format!("create {}", d.display()))?;
            let mask = sys::IN_CLOSE_WRITE | sys::IN_MOVED_TO | sys::IN_MOVED_FROM | sys::IN_DELETE;
            let wd = ino
                .add_watch(d, mask)
                .ctx(|| format!("inotify watch {}", d.display()))?;
            wds.insert(wd, d.clone());
        }
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ev, st) = (Arc::clone(&events), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("bench-watch".into())
            .spawn(move || watch_loop(ino, wds, ev, st))
            .ctx(|| "spawn the watcher thread".to_string())?;
        Ok(DirWatcher {
            events,
            stop,
            thread: Some(thread),
        })
    }

    /// Everything seen so far, in arrival order.
    pub fn events(&self) -> Vec<FileEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    pub fn stop(mut self) -> Vec<FileEvent> {
        self.halt();
        self.events()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DirWatcher {
    fn drop(&mut self) {
        self.halt();
    }
}

fn watch_loop(
    ino: Inotify,
    wds: HashMap<i32, PathBuf>,
    events: Arc<Mutex<Vec<FileEvent>>>,
    stop: Arc<AtomicBool>,
) {
    let mut seen: HashSet<PathBuf> = HashSet::new();
    while !stop.load(Ordering::Acquire) {
        let Ok(batch) = ino.read(POLL_SLICE) else {
            return;
        };
        if batch.is_empty() {
            continue;
        }
        let t_ns = sys::mono_ns();
        let mut out = Vec::new();
        for e in batch {
            if !is_ltx_name(&e.name) {
                continue;
            }
            let Some(dir) = wds.get(&e.wd) else { continue };
            let path = dir.join(&e.name);
            let change = if e.mask & (sys::IN_MOVED_TO | sys::IN_CLOSE_WRITE) != 0 {
                if !seen.insert(path.clone()) {
                    continue; // a second close of the same file
                }
                Change::Created
            } else {
                seen.remove(&path);
                Change::Deleted
            };
            out.push(FileEvent { t_ns, change, path });
        }
        if let Ok(mut ev) = events.lock() {
            ev.extend(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ltx_names_are_lowercase_hex_pairs() {
        assert!(is_ltx_name("0000000000000001-00000000000000ff.ltx"));
        assert!(!is_ltx_name("0000000000000001-00000000000000FF.ltx"));
        assert!(!is_ltx_name(".0000000000000001-0000000000000001.ltx.tmp-1"));
    }

    #[test]
    fn sees_a_file_renamed_into_place() {
        let dir = std::env::temp_dir().join(format!("bench-watch-{}", std::process::id()));
        let lvl = dir.join("0");
        let w = DirWatcher::start(std::slice::from_ref(&lvl)).unwrap();
        let name = "0000000000000001-0000000000000001.ltx";
        std::fs::write(lvl.join("tmp"), b"x").unwrap();
        std::fs::rename(lvl.join("tmp"), lvl.join(name)).unwrap();
        std::fs::remove_file(lvl.join(name)).unwrap();
        let deadline = sys::mono_ns() + 5_000_000_000;
        while w.events().len() < 2 && sys::mono_ns() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let ev = w.stop();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(ev[0].change, Change::Created);
        assert_eq!(ev[0].path, lvl.join(name));
        assert_eq!(ev[1].change, Change::Deleted);
    }
}
