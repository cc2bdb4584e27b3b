//! A blocking [`Read`] over an async reader driven by the runtime thread (a NATS object being
//! downloaded, an open SFTP file): each `read` hands the reader to the runtime for one read,
//! so a restore streams a file of any size through one buffer's worth of memory.

use std::io::{self, Read};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::s3::runtime;

pub(crate) struct BlockingReader<R> {
    /// `None` once the end was reached.
    inner: Option<R>,
    /// Names the file in errors.
    key: String,
    /// Longest wait for the next bytes.
    timeout: Duration,
}

impl<R> BlockingReader<R> {
    pub(crate) fn new(inner: R, key: String, timeout: Duration) -> BlockingReader<R> {
        BlockingReader {
            inner: Some(inner),
            key,
            timeout,
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> Read for BlockingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(mut inner) = self.inner.take() else {
            return Ok(0);
        };
        let (want, timeout) = (buf.len(), self.timeout);
        let (inner, got) = runtime::block_on(async move {
            let mut tmp = vec![0u8; want];
            let r = tokio::time::timeout(timeout, inner.read(&mut tmp)).await;
            (inner, r.map(|r| r.map(|n| (tmp, n))))
        })
        .map_err(|e| io::Error::other(format!("{}: {e}", self.key)))?;
        match got {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{}: no data for {} s", self.key, timeout.as_secs()),
            )),
            Ok(Err(e)) => Err(io::Error::other(format!(
                "{}: download interrupted: {e}",
                self.key
            ))),
            Ok(Ok((tmp, n))) => {
                buf[..n].copy_from_slice(&tmp[..n]);
                if n > 0 {
                    self.inner = Some(inner);
                }
                Ok(n)
            }
        }
    }
}
