//! Multipart upload of one large local file: parts of `part_size` bytes, `concurrency` of them
//! in flight, completed in order; aborted on failure so that no orphan parts are billed.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::task::JoinSet;

use super::error_map::map_sdk;
use super::sdk::{timeouts, Tuning};
use crate::replica::ReplicaError;

/// S3 accepts at most this many parts per upload; larger files get larger parts.
pub const MAX_PARTS: u64 = 10_000;

/// What to upload, and where.
pub(crate) struct Upload {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub key: String,
    pub src: PathBuf,
    pub size: u64,
    pub part_size: u64,
    pub concurrency: usize,
    pub timestamp: String,
    pub sign_payload: bool,
    pub tuning: Tuning,
}

impl Upload {
    fn shown(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Part size actually used: the configured one, grown so that the file fits in
    /// [`MAX_PARTS`] parts.
    pub(crate) fn effective_part_size(&self) -> u64 {
        part_size_for(self.size, self.part_size)
    }
}

/// The configured part size, grown so that `size` bytes fit in [`MAX_PARTS`] parts.
fn part_size_for(size: u64, configured: u64) -> u64 {
    configured.max(size.div_ceil(MAX_PARTS))
}

/// Uploads `u.src` as one object. On failure the upload is aborted (best effort).
pub(crate) async fn upload(u: Upload) -> Result<(), ReplicaError> {
    let created = u
        .client
        .create_multipart_upload()
        .bucket(&u.bucket)
        .key(&u.key)
        .content_type("application/octet-stream")
        .metadata("litestream-timestamp", &u.timestamp)
        .customize()
        .config_override(aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&u.tuning, 0)))
        .send()
        .await
        .map_err(|e| map_sdk("CreateMultipartUpload", u.shown(), &e))?;
    let Some(upload_id) = created.upload_id().map(str::to_string) else {
        return Err(ReplicaError::Fatal {
            key: u.shown(),
            reason: "CreateMultipartUpload returned no upload id".to_string(),
        });
    };
    let u = Arc::new(u);
    match upload_parts(&u, &upload_id).await {
        Ok(parts) => {
            let done = u
                .client
                .complete_multipart_upload()
                .bucket(&u.bucket)
                .key(&u.key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await;
            match done {
                Ok(_) => Ok(()),
                Err(e) => {
                    let err = map_sdk("CompleteMultipartUpload", u.shown(), &e);
                    abort(&u, &upload_id).await;
                    Err(err)
                }
            }
        }
        Err(e) => {
            abort(&u, &upload_id).await;
            Err(e)
        }
    }
}

async fn abort(u: &Upload, upload_id: &str) {
    let r = u
        .client
        .abort_multipart_upload()
        .bucket(&u.bucket)
        .key(&u.key)
        .upload_id(upload_id)
        .send()
        .await;
    if let Err(e) = r {
        let err = map_sdk("AbortMultipartUpload", u.shown(), &e);
        tracing::warn!(error = %err, "cannot abort a failed multipart upload; a lifecycle rule for incomplete uploads cleans it up");
    }
}

/// Uploads every part, `concurrency` at a time; returns them in part order.
async fn upload_parts(
    u: &Arc<Upload>,
    upload_id: &str,
) -> Result<Vec<CompletedPart>, ReplicaError> {
    let part_size = u.effective_part_size();
    let count = u.size.div_ceil(part_size).max(1);
    let file = Arc::new(
        std::fs::File::open(&u.src)
            .map_err(|e| ReplicaError::from_io(u.src.display().to_string(), e))?,
    );
    let mut parts = Vec::with_capacity(count as usize);
    let mut tasks: JoinSet<Result<CompletedPart, ReplicaError>> = JoinSet::new();
    let mut next = 0u64;
    loop {
        while next < count && tasks.len() < u.concurrency.max(1) {
            let (u, file, id) = (Arc::clone(u), Arc::clone(&file), upload_id.to_string());
            let n = next;
            tasks.spawn(async move { upload_part(&u, &file, &id, n, part_size).await });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let part = joined.map_err(|e| ReplicaError::Fatal {
            key: u.shown(),
            reason: format!("part upload task failed: {e}"),
        })??;
        parts.push(part);
    }
    parts.sort_by_key(|p| p.part_number());
    Ok(parts)
}

async fn upload_part(
    u: &Upload,
    file: &std::fs::File,
    upload_id: &str,
    index: u64,
    part_size: u64,
) -> Result<CompletedPart, ReplicaError> {
    let offset = index * part_size;
    let len = part_size.min(u.size - offset);
    // Parts are read into memory (at most `concurrency` × part size) so that the SDK can sign
    // them and replay them on retry. A local read from the page cache is quick enough to do
    // on the runtime thread.
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| ReplicaError::from_io(u.src.display().to_string(), e))?;
    let number = (index + 1) as i32;
    let mut op = u
        .client
        .upload_part()
        .bucket(&u.bucket)
        .key(&u.key)
        .upload_id(upload_id)
        .part_number(number)
        .content_length(len as i64)
        .body(ByteStream::from(buf))
        .customize()
        .config_override(
            aws_sdk_s3::config::Builder::new().timeout_config(timeouts(&u.tuning, len)),
        );
    if !u.sign_payload {
        op = op.disable_payload_signing();
    }
    let out = op
        .send()
        .await
        .map_err(|e| map_sdk(&format!("UploadPart {number}"), u.shown(), &e))?;
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(out.e_tag().map(str::to_string))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_to_fit_the_part_limit() {
        assert_eq!(part_size_for(12 << 20, 5 << 20), 5 << 20);
        assert_eq!(part_size_for(100_000 << 20, 5 << 20), 10 << 20);
        assert_eq!(part_size_for(0, 5 << 20), 5 << 20);
    }
}
