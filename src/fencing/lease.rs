//! The writer lease object (`lease.json` at the replica root, outside the level directories
//! that restore reads) and who holds it. Pure data + this process's identity; the protocol is in
//! [`super`].

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// Object name of the lease, at the replica root.
pub const LEASE_OBJECT: &str = "lease.json";

/// The lease as stored (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Unique per process: `<host id>/<pid>/<pid start>/<random>`.
    pub owner: String,
    /// Identity of the machine (hostname and boot id) the holder runs on.
    pub host: String,
    pub pid: u32,
    /// PID namespace of the holder (`/proc/self/ns/pid`, e.g. `pid:[4026531836]`): `pid` means
    /// something only inside it. Containers sharing a hostname (and the boot id) have their own
    /// namespaces. Empty in leases written before this field existed, or without `/proc`.
    #[serde(default)]
    pub pid_ns: String,
    /// Start time of the holder process (clock ticks since boot, `/proc/<pid>/stat` field 22):
    /// tells a live holder from a reused pid.
    pub pid_start: u64,
    /// The database path of the holder, for messages.
    pub db: String,
    pub acquired_ms: i64,
    /// The lease is free once the readers' clock passes this (0: released).
    pub expires_ms: i64,
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("lease serializes");
        v.push(b'\n');
        v
    }

    #[cfg(test)]
    /// `None` for an unreadable lease (treated as free: it cannot name a live holder).
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        Self::parse(bytes).ok()
    }

    /// [`Lease::decode`] with the reason an unreadable lease is not one (for the log).
    pub fn parse(bytes: &[u8]) -> Result<Lease, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_ms <= now_ms
    }

    /// The holder ran on this machine, in this PID namespace, and its process is gone (killed,
    /// crashed): the lease is stale before it expires. Anything unknown (another machine,
    /// another PID namespace such as another container with the same hostname, a lease without
    /// a namespace, no `/proc`): false, and the lease is waited out until it expires.
    pub fn holder_is_dead_here(&self) -> bool {
        let me = identity();
        if self.host != me.host || me.host.is_empty() {
            return false;
        }
        if self.pid_ns != me.pid_ns || me.pid_ns.is_empty() {
            return false;
        }
        match process_start(self.pid) {
            Some(start) => start != self.pid_start,
            None => std::path::Path::new("/proc/self/stat").exists(),
        }
    }

    /// Held by this process for this database.
    pub fn is_mine(&self, db: &str) -> bool {
        self.owner == identity().owner && self.db == db
    }
}

/// This process's identity, computed once.
pub struct Identity {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// See [`Lease::pid_ns`].
    pub pid_ns: String,
    pub pid_start: u64,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), `None` if it does not exist.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after it follow
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub fn identity() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| {
        let hostname = read_trimmed("/proc/sys/kernel/hostname")
            .or_else(|| read_trimmed("/etc/hostname"))
            .unwrap_or_default();
        let boot = read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let host = if hostname.is_empty() && boot.is_empty() {
            String::new()
        } else {
            format!("{hostname}:{boot}")
        };
        let pid = std::process::id();
        // The link's target names the namespace and is unique among live namespaces.
        let pid_ns = std::fs::read_link("/proc/self/ns/pid")
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pid_start = process_start(pid).unwrap_or(0);
        let owner = format!("{host}/{pid}/{pid_start}/{:016x}", fastrand::u64(..));
        Identity {
            owner,
            host,
            pid,
            pid_ns,
            pid_start,
        }
    })
}

/// A new lease for `db` held by this process until `expires_ms`.
pub fn mine(db: &str, now_ms: i64, expires_ms: i64) -> Lease {
    let id = identity();
    Lease {
        owner: id.owner.clone(),
        host: id.host.clone(),
        pid: id.pid,
        pid_ns: id.pid_ns.clone(),
        pid_start: id.pid_start,
        db: db.to_string(),
        acquired_ms: now_ms,
        expires_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_without_a_namespace_still_decodes() {
        let old = br#"{"owner": "h:b/1/2/ff", "host": "h:b", "pid": 1, "pid_start": 2,
            "db": "/d", "acquired_ms": 0, "expires_ms": 5}"#;
        let l = Lease::decode(old).expect("decodes");
        assert_eq!((l.pid_ns.as_str(), l.expires_ms), ("", 5));
    }

    #[test]
    fn round_trip_and_expiry() {
        let l = mine("/d/app.db", 1_000, 31_000);
        assert_eq!(Lease::decode(&l.encode()), Some(l.clone()));
        assert!(!l.expired(30_999));
        assert!(l.expired(31_000));
        assert!(l.is_mine("/d/app.db"));
        assert!(!l.is_mine("/d/other.db"));
        assert_eq!(Lease::decode(b"not json"), None);
    }

    #[test]
    fn liveness_of_holders_on_this_machine() {
        let live = mine("/d/app.db", 0, i64::MAX);
        assert!(!live.holder_is_dead_here(), "this process is alive");
        if std::path::Path::new("/proc/self/stat").exists() {
            // Same pid, other start time: the pid was reused, the holder is gone.
            let reused = Lease {
                pid_start: live.pid_start + 1,
                ..live.clone()
            };
            assert!(reused.holder_is_dead_here());
            // A pid that does not exist.
            let gone = Lease {
                pid: u32::MAX - 7,
                ..live.clone()
            };
            assert!(gone.holder_is_dead_here());
        }
        // Another PID namespace of this machine (a container with the same hostname): its pid
        // means nothing here, so not dead. Nor is a lease that names no namespace.
        for ns in ["pid:[1]", ""] {
            let other_ns = Lease {
                pid: u32::MAX - 7,
                pid_ns: ns.into(),
                ..live.clone()
            };
            assert!(!other_ns.holder_is_dead_here(), "{ns:?}");
        }
        // Another machine: unknown, so not dead.
        let remote = Lease {
            host: "elsewhere:boot".into(),
            pid: u32::MAX - 7,
            ..live
        };
        assert!(!remote.holder_is_dead_here());
    }
}
