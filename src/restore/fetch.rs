//! Sources of the planned files' bytes: opened one by one, or downloaded ahead on a few
//! threads into spool files (for remote backends), always handed out in plan order.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::apply::RestoreError;
use crate::replica::{LtxFileInfo, ReplicaClient};

/// A file on local disk that is removed when dropped.
pub(crate) struct Spooled {
    path: PathBuf,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_file(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot remove spool file");
            }
        }
    }
}

/// One planned file's bytes, ready to decode. Keeps its spool file alive while read.
pub(crate) struct Source {
    pub reader: Box<dyn Read + Send>,
    _spool: Option<Spooled>,
}

pub(crate) fn open_direct(
    client: &dyn ReplicaClient,
    f: &LtxFileInfo,
) -> Result<Source, RestoreError> {
    let reader = client.open(f.level, f.min_txid, f.max_txid)?;
    Ok(Source {
        reader,
        _spool: None,
    })
}

/// Downloads `f` into a new spool file in `dir`.
fn download(
    client: &dyn ReplicaClient,
    f: &LtxFileInfo,
    dir: &Path,
) -> Result<Source, RestoreError> {
    let key = client.key(f.level, f.min_txid, f.max_txid);
    let path = dir.join(format!(
        ".litestream-restore-{:016x}.ltx.part",
        fastrand::u64(..)
    ));
    let mut out = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| RestoreError::Io {
            path: path.clone(),
            op: "create spool file",
            source,
        })?;
    let spool = Spooled { path: path.clone() };
    let input = client.open(f.level, f.min_txid, f.max_txid)?;
    // The spool holds at most what the listing said the file holds: a body that goes on past
    // it (a misbehaving or hostile store) cannot fill the disk.
    let copied = io::copy(&mut input.take(f.size + 1), &mut out).map_err(|source| {
        RestoreError::Download {
            key: key.clone(),
            source,
        }
    })?;
    if copied > f.size {
        return Err(RestoreError::Download {
            key,
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the download is larger than the {} bytes the listing gave; nothing was \
                     restored",
                    f.size
                ),
            ),
        });
    }
    drop(out);
    let reader = File::open(&path).map_err(|source| RestoreError::Io {
        path,
        op: "open spool file",
        source,
    })?;
    Ok(Source {
        reader: Box::new(reader),
        _spool: Some(spool),
    })
}

/// Where a worker hands over the download of one planned file.
type Slot = (
    Sender<Result<Source, RestoreError>>,
    Receiver<Result<Source, RestoreError>>,
);

/// Runs `consume` on every planned file in order while up to `threads` workers download files
/// ahead into `dir`. At most `threads` files are on disk at once beyond the one being applied.
/// When `consume` fails, the workers stop after their current download and every spool file
/// is removed.
pub(crate) fn with_prefetch(
    client: &dyn ReplicaClient,
    files: &[LtxFileInfo],
    threads: usize,
    dir: &Path,
    mut consume: impl FnMut(usize, Source) -> Result<(), RestoreError>,
) -> Result<(), RestoreError> {
    let threads = threads.clamp(1, files.len().max(1));
    let (token_tx, token_rx): (Sender<()>, Receiver<()>) = bounded(threads);
    for _ in 0..threads {
        // Cannot fail: the channel has room for exactly these tokens.
        let _ = token_tx.send(());
    }
    let slots: Vec<Slot> = files.iter().map(|_| bounded(1)).collect();
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);

    std::thread::scope(|scope| {
        for _ in 0..threads {
            let token_rx = token_rx.clone();
            let (slots, next, abort) = (&slots, &next, &abort);
            scope.spawn(move || {
                while token_rx.recv().is_ok() {
                    if abort.load(Ordering::Acquire) {
                        return;
                    }
                    let idx = next.fetch_add(1, Ordering::AcqRel);
                    let Some(f) = files.get(idx) else { return };
                    let res = download(client, f, dir);
                    // A closed slot means the restore stopped: the spool file is dropped here.
                    let _ = slots[idx].0.send(res);
                }
            });
        }
        drop(token_rx);

        let result = (|| {
            for (idx, slot) in slots.iter().enumerate() {
                let src = slot
                    .1
                    .recv()
                    .map_err(|_| RestoreError::Internal("download worker stopped"))??;
                consume(idx, src)?;
                let _ = token_tx.send(());
            }
            Ok(())
        })();
        if result.is_err() {
            abort.store(true, Ordering::Release);
        }
        drop(token_tx);
        result
    })
    // Downloads finished after a failure sit in `slots` and are removed as it drops.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::FileReplica;

    #[test]
    fn a_download_longer_than_listed_is_refused_and_its_spool_removed() {
        let dir = tempfile::tempdir().unwrap();
        let client = FileReplica::new(dir.path().join("replica"));
        let src = dir.path().join("src");
        fs::write(&src, vec![7u8; 4096]).unwrap();
        client.put(0, 1, 1, &src, 0).unwrap();
        let mut f = client.list(0).unwrap().remove(0);
        let spool = dir.path().join("spool");
        fs::create_dir(&spool).unwrap();
        assert!(download(&client, &f, &spool).is_ok());
        f.size = 100; // the listing claimed less than the store sends
        let err = download(&client, &f, &spool).err().expect("refused");
        assert!(
            err.to_string().contains("larger than the 100 bytes"),
            "{err}"
        );
        assert_eq!(
            fs::read_dir(&spool).unwrap().count(),
            0,
            "spool left behind"
        );
    }
}
