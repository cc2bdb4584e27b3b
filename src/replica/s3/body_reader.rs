//! A blocking [`Read`] over a downloaded object body: each refill asks the S3 runtime for the next
//! chunk, so a restore streams a file of any size through a small buffer.

use std::io::{self, Read};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;

use super::runtime;

pub(crate) struct BodyReader {
    stream: Option<ByteStream>,
    chunk: Vec<u8>,
    pos: usize,
    key: String,
    chunk_timeout: Duration,
}

impl BodyReader {
    pub(crate) fn new(stream: ByteStream, key: String, chunk_timeout: Duration) -> BodyReader {
        BodyReader {
            stream: Some(stream),
            chunk: Vec::new(),
            pos: 0,
            key,
            chunk_timeout,
        }
    }

    /// Fetches the next chunk; false at the end of the body.
    fn refill(&mut self) -> io::Result<bool> {
        let Some(mut stream) = self.stream.take() else {
            return Ok(false);
        };
        let timeout = self.chunk_timeout;
        let (stream, next) = runtime::block_on(async move {
            let next = tokio::time::timeout(timeout, stream.next()).await;
            (stream, next)
        })
        .map_err(|e| io::Error::other(format!("{}: {e}", self.key)))?;
        match next {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{}: no data for {} s while downloading",
                    self.key,
                    timeout.as_secs()
                ),
            )),
            Ok(None) => Ok(false),
            Ok(Some(Err(e))) => Err(io::Error::other(format!(
                "{}: download interrupted: {}",
                self.key,
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))),
            Ok(Some(Ok(bytes))) => {
                self.chunk.clear();
                self.chunk.extend_from_slice(&bytes);
                self.pos = 0;
                self.stream = Some(stream);
                Ok(true)
            }
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos >= self.chunk.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
