//! A plain TCP relay on loopback that counts the bytes it carries, to put in front of a server
//! whose protocol is not HTTP (SSH): a test sees whether a client sent anything at all.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// Relays 127.0.0.1:[`TcpRelay::port`] to an upstream port until dropped.
pub struct TcpRelay {
    pub port: u16,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl TcpRelay {
    pub fn start(upstream: u16) -> TcpRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay listen");
        let port = listener.local_addr().expect("relay addr").port();
        let bytes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, st) = (bytes.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(down) = conn else { continue };
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = down.shutdown(Shutdown::Both);
                    continue;
                };
                for (from, to) in [(&down, &up), (&up, &down)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let b = b.clone();
                    thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            b.fetch_add(n as u64, Ordering::SeqCst);
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        TcpRelay { port, bytes, stop }
    }

    /// Bytes carried so far, both ways.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
