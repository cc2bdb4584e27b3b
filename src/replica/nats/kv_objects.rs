//! Small versioned objects (the writer lease) in the object store, written with JetStream's
//! compare-and-set.
//!
//! An object store object is a metadata message on `$O.<bucket>.M.<base64url(name)>` (the
//! latest one wins) pointing at chunk messages on `$O.<bucket>.C.<nuid>`. The object store API
//! has no conditional put, so a conditional write here does what its put does, with one
//! addition: the metadata message is published with `Nats-Expected-Last-Subject-Sequence`, so the
//! server stores it only if the metadata subject is still at the sequence that was read (0: no
//! message yet). The version tag is that sequence. The objects stay readable by any object store
//! client (the metadata is the same JSON the clients write).

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::object_store::{ObjectInfo, ObjectOptions};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use base64::Engine;
use bytes::Bytes;

use super::{transient_err, Conn, NatsReplica};
use crate::replica::{ReplicaError, VersionedObject, WriteCondition};

/// Lease objects are tiny; anything larger is not ours and is refused rather than buffered.
const MAX_OBJECT_BYTES: usize = 1024 * 1024;

pub(super) fn check_name(name: &str) -> Result<(), ReplicaError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') || name == "ltx" {
        return Err(ReplicaError::Fatal {
            key: name.to_string(),
            reason: "object names must be plain file names (no '/', not starting with '.', \
                     not 'ltx')"
                .to_string(),
        });
    }
    Ok(())
}

fn meta_subject(bucket: &str, name: &str) -> String {
    format!(
        "$O.{bucket}.M.{}",
        base64::engine::general_purpose::URL_SAFE.encode(name)
    )
}

fn chunk_subject(bucket: &str, nuid: &str) -> String {
    format!("$O.{bucket}.C.{nuid}")
}

/// A fresh chunk id: 22 random alphanumerics, like a NUID.
fn new_nuid() -> String {
    (0..22).map(|_| fastrand::alphanumeric()).collect()
}

/// The current metadata of `name` and its sequence; `None` if there is none.
async fn current(
    conn: &Conn,
    bucket: &str,
    name: &str,
    shown: &str,
) -> Result<Option<(ObjectInfo, u64)>, ReplicaError> {
    match conn
        .stream
        .get_last_raw_message_by_subject(&meta_subject(bucket, name))
        .await
    {
        Ok(m) => {
            let info: ObjectInfo =
                serde_json::from_slice(&m.payload).map_err(|e| ReplicaError::Fatal {
                    key: shown.to_string(),
                    reason: format!("object metadata is not valid JSON: {e}"),
                })?;
            Ok(Some((info, m.sequence)))
        }
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(transient_err(shown, format!("GET metadata: {e}"))),
    }
}

pub(super) fn read(
    r: &NatsReplica,
    conn: &Conn,
    name: &str,
) -> Result<VersionedObject, ReplicaError> {
    let (conn, bucket, name_owned, shown) = (
        conn.clone(),
        r.cfg.bucket.clone(),
        name.to_string(),
        r.shown(name),
    );
    crate::metrics::record_request("nats", "GET");
    r.run(name, async move {
        let Some((info, seq)) = current(&conn, &bucket, &name_owned, &shown).await? else {
            return Err(ReplicaError::NotFound { key: shown });
        };
        if info.deleted {
            return Err(ReplicaError::NotFound { key: shown });
        }
        if info.size > MAX_OBJECT_BYTES {
            return Err(ReplicaError::Fatal {
                key: shown,
                reason: format!("{} bytes is too large for a lease object", info.size),
            });
        }
        let data = if info.chunks == 0 {
            Vec::new()
        } else if info.chunks == 1 {
            conn.stream
                .get_last_raw_message_by_subject(&chunk_subject(&bucket, &info.nuid))
                .await
                .map_err(|e| transient_err(&shown, format!("GET chunk: {e}")))?
                .payload
                .to_vec()
        } else {
            use tokio::io::AsyncReadExt;
            let mut obj = conn
                .store
                .get(&name_owned)
                .await
                .map_err(|e| transient_err(&shown, format!("GET: {e}")))?;
            let mut buf = Vec::with_capacity(info.size);
            obj.read_to_end(&mut buf)
                .await
                .map_err(|e| transient_err(&shown, format!("GET: {e}")))?;
            buf
        };
        Ok(VersionedObject {
            data,
            version: seq.to_string(),
        })
    })
}

pub(super) fn write(
    r: &NatsReplica,
    conn: &Conn,
    name: &str,
    data: &[u8],
    cond: WriteCondition,
) -> Result<String, ReplicaError> {
    let (conn, bucket, name_owned, shown) = (
        conn.clone(),
        r.cfg.bucket.clone(),
        name.to_string(),
        r.shown(name),
    );
    let data = Bytes::copy_from_slice(data);
    crate::metrics::record_request("nats", "PUT");
    r.run(name, async move {
        let cur = current(&conn, &bucket, &name_owned, &shown).await?;
        let live = cur.as_ref().filter(|(info, _)| !info.deleted);
        // The sequence the metadata subject must still be at (0: no message at all); none for
        // an unconditional write.
        let expected = match (&cond, live) {
            (WriteCondition::IfAbsent, Some(_)) => {
                return Err(ReplicaError::AlreadyExists { key: shown })
            }
            (WriteCondition::IfMatch(_), None) => {
                return Err(ReplicaError::NotFound { key: shown })
            }
            (WriteCondition::IfMatch(want), Some((_, seq))) => {
                if want != &seq.to_string() {
                    return Err(ReplicaError::Precondition {
                        key: shown,
                        reason: format!("sequence is {seq}, not {want}"),
                    });
                }
                Some(*seq)
            }
            (WriteCondition::Always, _) => None,
            _ => Some(cur.as_ref().map_or(0, |(_, seq)| *seq)),
        };
        let nuid = new_nuid();
        let chunks = if data.is_empty() {
            0
        } else {
            conn.js
                .publish(chunk_subject(&bucket, &nuid), data.clone())
                .await
                .map_err(|e| transient_err(&shown, format!("PUT chunk: {e}")))?
                .await
                .map_err(|e| transient_err(&shown, format!("PUT chunk: {e}")))?;
            1
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, &data);
        let info = ObjectInfo {
            name: name_owned.clone(),
            description: None,
            metadata: Default::default(),
            headers: None,
            options: Some(ObjectOptions {
                link: None,
                max_chunk_size: Some(data.len().max(1)),
            }),
            bucket: bucket.clone(),
            nuid: nuid.clone(),
            size: data.len(),
            chunks,
            modified: Some(time::OffsetDateTime::now_utc()),
            digest: Some(format!(
                "SHA-256={}",
                base64::engine::general_purpose::URL_SAFE.encode(digest.as_ref())
            )),
            deleted: false,
        };
        let payload = serde_json::to_vec(&info).map_err(|e| ReplicaError::Fatal {
            key: shown.clone(),
            reason: format!("encoding object metadata: {e}"),
        })?;
        let mut msg = PublishMessage::build()
            .payload(payload.into())
            .header("Nats-Rollup", "sub");
        if let Some(seq) = expected {
            msg = msg.expected_last_subject_sequence(seq);
        }
        let published = match conn
            .js
            .send_publish(meta_subject(&bucket, &name_owned), msg)
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        let ack = match published {
            Ok(ack) => ack,
            Err(e) => {
                // Our chunk is orphaned either way: remove it.
                let _ = conn
                    .stream
                    .purge()
                    .filter(chunk_subject(&bucket, &nuid))
                    .await;
                return Err(if e.kind() == PublishErrorKind::WrongLastSequence {
                    match cond {
                        WriteCondition::IfAbsent => ReplicaError::AlreadyExists { key: shown },
                        _ => ReplicaError::Precondition {
                            key: shown,
                            reason: "the object changed since it was read".to_string(),
                        },
                    }
                } else {
                    transient_err(&shown, format!("PUT metadata: {e}"))
                });
            }
        };
        if let Some((old, _)) = cur {
            if !old.nuid.is_empty() {
                let _ = conn
                    .stream
                    .purge()
                    .filter(chunk_subject(&bucket, &old.nuid))
                    .await;
            }
        }
        Ok(ack.sequence.to_string())
    })
}
