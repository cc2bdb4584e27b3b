//! A blocking [`Read`] over a downloaded body: each refill asks the runtime for the next frame,
//! so a restore streams a file of any size through one frame's worth of memory.

use std::io::{self, Read};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::runtime;

pub struct BodyReader {
    body: Option<Incoming>,
    chunk: Bytes,
    key: String,
    chunk_timeout: Duration,
}

impl BodyReader {
    pub fn new(body: Incoming, key: String, chunk_timeout: Duration) -> BodyReader {
        BodyReader {
            body: Some(body),
            chunk: Bytes::new(),
            key,
            chunk_timeout,
        }
    }

    /// Fetches the next data frame; false at the end of the body.
    fn refill(&mut self) -> io::Result<bool> {
        loop {
            let Some(mut body) = self.body.take() else {
                return Ok(false);
            };
            let timeout = self.chunk_timeout;
            let (body, next) = runtime::block_on(async move {
                let next = tokio::time::timeout(timeout, body.frame()).await;
                (body, next)
            })
            .map_err(|e| io::Error::other(format!("{}: {e}", self.key)))?;
            match next {
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{}: no data for {} s while downloading",
                            self.key,
                            timeout.as_secs()
                        ),
                    ))
                }
                Ok(None) => return Ok(false),
                Ok(Some(Err(e))) => {
                    return Err(io::Error::other(format!(
                        "{}: download interrupted: {e}",
                        self.key
                    )))
                }
                Ok(Some(Ok(frame))) => {
                    self.body = Some(body);
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            self.chunk = data;
                            return Ok(true);
                        }
                    }
                }
            }
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.chunk.is_empty() && !self.refill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
