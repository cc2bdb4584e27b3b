//! Request bodies: bytes held in memory, or a local file streamed from disk in pieces, so that an
//! upload of any size needs one piece of memory. The file is read on the runtime thread: reads
//! of [`FILE_PIECE`] bytes from a staged file on local disk take far less than a network write.

use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// Bytes read from a file body per frame: large enough for few frames, small enough to keep
/// memory flat.
const FILE_PIECE: u64 = 256 * 1024;

/// What a [`super::Request`] sends.
#[derive(Clone, Debug)]
pub enum Body {
    Bytes(Bytes),
    /// The first `len` bytes of a local file, read again for every attempt.
    File {
        path: PathBuf,
        len: u64,
    },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body of one attempt (opens the file).
    pub(super) fn open(&self) -> std::io::Result<ReqBody> {
        Ok(match self {
            Body::Bytes(b) => ReqBody::Bytes(Some(b.clone())),
            Body::File { path, len } => ReqBody::File {
                file: std::fs::File::open(path)?,
                remaining: *len,
            },
        })
    }
}

/// The hyper body of one attempt.
pub enum ReqBody {
    Bytes(Option<Bytes>),
    File { file: std::fs::File, remaining: u64 },
}

impl HttpBody for ReqBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ReqBody::Bytes(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ReqBody::File { file, remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let mut buf = vec![0u8; (*remaining).min(FILE_PIECE) as usize];
                match file.read(&mut buf) {
                    Ok(0) => Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was uploaded",
                    )))),
                    Ok(n) => {
                        buf.truncate(n);
                        *remaining -= n as u64;
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
                    }
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Bytes(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            ReqBody::File { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
