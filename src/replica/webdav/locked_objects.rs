//! Small versioned objects (the writer lease) on WebDAV: `<path>/<name>`.
//!
//! WebDAV has no compare-and-swap on content, so conditional writes run under an exclusive
//! write LOCK (RFC 4918 §9.10, class 2 servers) on a companion resource `<path>/.<name>.lock`:
//! LOCK, read the object, compare, store the new content (temp + MOVE, so readers, who take no
//! lock, see the old or the new object), UNLOCK. The version tag is the content's CRC-64 and
//! length, as for the `file` backend.
//!
//! What this guarantees: two writers that both go through this code never both win, as long
//! as the server implements exclusive locks (WsgiDAV, Apache mod_dav, nginx-dav-ext do). What
//! it does not: a server without LOCK (405/501) cannot fence, and says so in the error; a
//! lock whose holder died is released only by its timeout ([`LOCK_TIMEOUT_S`]); a holder
//! paused longer than that timeout may complete a write after another writer took the lock.
//! A LOCK whose answer was lost (a cut connection) may still have been granted: each LOCK
//! names a fresh owner, and after such a loss the lock's `lockdiscovery` tells whether it is
//! ours, so that it is used and released instead of blocking every writer until it expires.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use super::{method, WebdavReplica};
use crate::replica::http::Request;
use crate::replica::objects::version_of;
use crate::replica::{ReplicaError, VersionedObject, WriteCondition};

/// Lifetime the LOCK asks for: longer than one read-compare-write (milliseconds to seconds),
/// short enough that a lock left by a killed process frees the lease object soon.
pub const LOCK_TIMEOUT_S: u64 = 30;
/// How long to wait for a lock another writer holds before giving up (transient): a little
/// longer than a left-over lock can live.
const LOCK_WAIT: Duration = Duration::from_secs(LOCK_TIMEOUT_S + 5);
/// First pause between LOCK attempts; doubled up to [`LOCK_RETRY_MAX`].
const LOCK_RETRY_FIRST: Duration = Duration::from_millis(10);
const LOCK_RETRY_MAX: Duration = Duration::from_millis(500);

/// The LOCK body, owned by `owner` (unique per attempt, see [`own_lock`]).
fn lockinfo(owner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>{owner}</D:owner></D:lockinfo>"#
    )
}

/// PROPFIND body asking for the active locks of a resource.
const LOCKDISCOVERY: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>"#;

/// The token (with angle brackets) of the active lock on `path` whose owner is `owner`, if
/// any: a LOCK of ours that the server granted although its answer never reached us.
fn own_lock(r: &WebdavReplica, path: &str, owner: &str) -> Option<String> {
    let req = Request::new(method("PROPFIND"), r.url(path))
        .header("depth", "0")
        .header("content-type", "application/xml; charset=utf-8")
        .body(LOCKDISCOVERY);
    let resp = r.send("PROPFIND", path, req).ok()?;
    if !resp.status.is_success() {
        return None;
    }
    let leaves = crate::replica::http::xml::leaves(&resp.body_text()).ok()?;
    let (mut cur_owner, mut token) = (None, None);
    for (p, text) in leaves {
        if p.ends_with("activelock/owner") {
            cur_owner = Some(text.trim().to_string());
        } else if p.ends_with("activelock/locktoken/href") {
            token = Some(text.trim().to_string());
        }
        if let (Some(o), Some(t)) = (&cur_owner, &token) {
            if o == owner {
                return Some(format!("<{t}>"));
            }
            (cur_owner, token) = (None, None);
        }
    }
    None
}

fn object_path(r: &WebdavReplica, name: &str) -> Result<String, ReplicaError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') || name == "ltx" {
        return Err(ReplicaError::Fatal {
            key: name.to_string(),
            reason: "object names must be plain file names (no '/', not starting with '.', \
                     not 'ltx')"
                .to_string(),
        });
    }
    Ok(super::join(&r.cfg.path, name))
}

fn lock_path(r: &WebdavReplica, name: &str) -> String {
    super::join(&r.cfg.path, &format!(".{name}.lock"))
}

/// Takes the exclusive lock of `name`; returns its token (with the angle brackets).
fn lock(r: &WebdavReplica, name: &str) -> Result<String, ReplicaError> {
    let path = lock_path(r, name);
    let started = Instant::now();
    let mut pause = LOCK_RETRY_FIRST;
    let mut created_parents = false;
    loop {
        let owner = format!("litestream-{:016x}", fastrand::u64(..));
        let req = Request::new(method("LOCK"), r.url(&path))
            .header("timeout", &format!("Second-{LOCK_TIMEOUT_S}"))
            .header("depth", "0")
            .header("content-type", "application/xml; charset=utf-8")
            .body(lockinfo(&owner));
        let resp = match r.send("LOCK", &path, req) {
            Ok(resp) => resp,
            Err(e) if e.is_transient() => {
                // The server may have granted it: then it is ours to use (and release).
                if let Some(token) = own_lock(r, &path, &owner) {
                    tracing::debug!(key = %r.shown(&path), "LOCK answer lost; found the lock granted to us");
                    return Ok(token);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match resp.status {
            s if s.is_success() => {
                return resp
                    .header("lock-token")
                    .map(|t| t.trim().to_string())
                    .ok_or_else(|| r.error("LOCK (no Lock-Token in the answer)", &path, &resp));
            }
            StatusCode::LOCKED => {}
            StatusCode::CONFLICT | StatusCode::NOT_FOUND if !created_parents => {
                r.make_collections(&r.cfg.path)?;
                created_parents = true;
                continue;
            }
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => {
                return Err(ReplicaError::Fatal {
                    key: r.shown(&path),
                    reason: format!(
                        "LOCK: HTTP {}: the server does not support WebDAV locks, which writer \
                         fencing needs (use a class 2 server: WsgiDAV, Apache mod_dav, nginx with \
                         dav-ext)",
                        resp.status
                    ),
                });
            }
            _ => return Err(r.error("LOCK", &path, &resp)),
        }
        if started.elapsed() >= LOCK_WAIT {
            return Err(ReplicaError::Transient {
                key: r.shown(&path),
                reason: format!(
                    "locked by another writer for over {} s",
                    LOCK_WAIT.as_secs()
                ),
            });
        }
        std::thread::sleep(pause + Duration::from_millis(fastrand::u64(..10)));
        pause = (pause * 2).min(LOCK_RETRY_MAX);
    }
}

fn unlock(r: &WebdavReplica, name: &str, token: &str) {
    let path = lock_path(r, name);
    let req = Request::new(method("UNLOCK"), r.url(&path)).header("lock-token", token);
    match r.send("UNLOCK", &path, req) {
        Ok(resp) if resp.status.is_success() => {}
        Ok(resp) => {
            tracing::warn!(key = %r.shown(&path), status = %resp.status, "UNLOCK refused; the lock expires on its own")
        }
        Err(e) => {
            tracing::warn!(key = %r.shown(&path), error = %e, "UNLOCK failed; the lock expires on its own")
        }
    }
}

/// Runs `f` holding the lock of `name`, and releases it whatever `f` returned.
fn locked<T>(
    r: &WebdavReplica,
    name: &str,
    f: impl FnOnce() -> Result<T, ReplicaError>,
) -> Result<T, ReplicaError> {
    let token = lock(r, name)?;
    let out = f();
    unlock(r, name, &token);
    out
}

fn current(r: &WebdavReplica, path: &str) -> Result<Option<Vec<u8>>, ReplicaError> {
    let resp = r.send("GET", path, Request::new(Method::GET, r.url(path)))?;
    match resp.status {
        StatusCode::OK => Ok(Some(resp.body.to_vec())),
        StatusCode::NOT_FOUND => Ok(None),
        _ => Err(r.error("GET", path, &resp)),
    }
}

pub(super) fn read(r: &WebdavReplica, name: &str) -> Result<VersionedObject, ReplicaError> {
    let path = object_path(r, name)?;
    match current(r, &path)? {
        Some(data) => Ok(VersionedObject {
            version: version_of(&data),
            data,
        }),
        None => Err(ReplicaError::NotFound {
            key: r.shown(&path),
        }),
    }
}

pub(super) fn write(
    r: &WebdavReplica,
    name: &str,
    data: &[u8],
    cond: WriteCondition,
) -> Result<String, ReplicaError> {
    let path = object_path(r, name)?;
    let key = r.shown(&path);
    locked(r, name, || {
        if cond != WriteCondition::Always {
            match (&cond, current(r, &path)?) {
                (WriteCondition::IfAbsent, Some(_)) => {
                    return Err(ReplicaError::AlreadyExists { key })
                }
                (WriteCondition::IfMatch(_), None) => return Err(ReplicaError::NotFound { key }),
                (WriteCondition::IfMatch(want), Some(cur)) if &version_of(&cur) != want => {
                    return Err(ReplicaError::Precondition {
                        key,
                        reason: format!("version is {}, not {want}", version_of(&cur)),
                    })
                }
                _ => {}
            }
        }
        let req = Request::new(Method::PUT, String::new())
            .header("content-type", "application/octet-stream")
            .body(data.to_vec());
        r.store(&path, req, None)?;
        Ok(version_of(data))
    })
}

#[cfg(test)]
pub(super) fn delete(r: &WebdavReplica, name: &str) -> Result<(), ReplicaError> {
    let path = object_path(r, name)?;
    locked(r, name, || r.delete_path(&path))
}

/// The lock itself, for tests that play another client holding it.
#[cfg(test)]
pub(super) mod tests_support {
    use super::WebdavReplica;

    pub fn lock(r: &WebdavReplica, name: &str) -> String {
        super::lock(r, name).expect("lock")
    }

    /// Sends a LOCK owned by `owner` and drops its answer, as a cut connection would; then
    /// looks the lock up as the recovery does.
    pub fn lock_and_lose_the_answer(r: &WebdavReplica, name: &str, owner: &str) -> Option<String> {
        use crate::replica::http::Request;
        let path = super::lock_path(r, name);
        let req = Request::new(super::method("LOCK"), r.url(&path))
            .header("timeout", "Second-30")
            .header("depth", "0")
            .header("content-type", "application/xml; charset=utf-8")
            .body(super::lockinfo(owner));
        let _ = r.send("LOCK", &path, req).expect("LOCK sent");
        assert!(
            super::own_lock(r, &path, "litestream-someone-else").is_none(),
            "another owner's lock must not be taken"
        );
        super::own_lock(r, &path, owner)
    }

    /// The token of the active lock of `name` owned by `owner`, if any.
    pub fn active_lock(r: &WebdavReplica, name: &str, owner: &str) -> Option<String> {
        super::own_lock(r, &super::lock_path(r, name), owner)
    }

    pub fn unlock(r: &WebdavReplica, name: &str, token: &str) {
        super::unlock(r, name, token)
    }
}
