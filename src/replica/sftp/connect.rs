//! Opening the SSH connection and the SFTP subsystem of an `sftp` replica: TCP with a timeout,
//! the server's host key checked as configured ([`HostKeyCheck`]), then `key-path` and
//! `password` authentication, in that order.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;

use crate::config::{HostKeyCheck, SftpConfig};
use crate::replica::ReplicaError;

/// TCP connect, SSH handshake and authentication together: the official binary's 30 s dial
/// timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// One SFTP request: a healthy server answers in milliseconds; a stalled one is given up
/// (the connection is then dropped and opened again by the next call).
pub const REQUEST_TIMEOUT_S: u64 = 30;

/// An open session: the SSH handle must live as long as the SFTP channel.
pub struct Conn {
    pub _ssh: Handle<Checker>,
    pub sftp: SftpSession,
}

/// The SSH client handler: checks the server's key and remembers why it refused one.
pub struct Checker {
    check: HostKeyCheck,
    host: String,
    port: u16,
    refused: Arc<Mutex<Option<String>>>,
}

/// Why the server's host key is refused.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("`host-key` {line:?} is not a public key line (want e.g. `ssh-ed25519 AAAA…`)")]
    NotAKeyLine { line: String },
    #[error("`host-key` is not a usable public key: {reason}")]
    BadKey { reason: String },
    #[error(
        "the server's host key ({algorithm}) is not the configured `host-key`; if the server's \
         key changed on purpose, update `host-key`"
    )]
    NotTheConfiguredKey { algorithm: String },
    #[error("HOME is not set, so ~/.ssh/known_hosts cannot be read")]
    NoHome,
    #[error("host key of {host}:{port} does not match {}: {reason}", path.display())]
    Mismatch {
        host: String,
        port: u16,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(
        "the host key of {host}:{port} is not in {}: add it (ssh-keyscan -p {port} {host}), set \
         `host-key` to the server's public key line, or set `skip-host-key-check: true` to \
         accept any key",
        path.display()
    )]
    Unknown {
        host: String,
        port: u16,
        path: std::path::PathBuf,
    },
}

impl Checker {
    fn verdict(&self, key: &PublicKey) -> Result<(), HostKeyError> {
        match &self.check {
            HostKeyCheck::Skip => Ok(()),
            HostKeyCheck::Fixed(line) => {
                let want = parse_key_line(line)?;
                if want.key_data() == key.key_data() {
                    Ok(())
                } else {
                    Err(HostKeyError::NotTheConfiguredKey {
                        algorithm: key.algorithm().to_string(),
                    })
                }
            }
            HostKeyCheck::KnownHosts(path) => {
                let path = match path {
                    Some(p) => std::path::PathBuf::from(p),
                    None => std::env::var_os("HOME")
                        .map(|h| std::path::PathBuf::from(h).join(".ssh/known_hosts"))
                        .ok_or(HostKeyError::NoHome)?,
                };
                let found = russh::keys::check_known_hosts_path(&self.host, self.port, key, &path)
                    .map_err(|e| HostKeyError::Mismatch {
                        host: self.host.clone(),
                        port: self.port,
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if found {
                    Ok(())
                } else {
                    Err(HostKeyError::Unknown {
                        host: self.host.clone(),
                        port: self.port,
                        path,
                    })
                }
            }
        }
    }
}

/// `ssh-ed25519 AAAA… [comment]` (a `known_hosts` line without the host names also works).
fn parse_key_line(line: &str) -> Result<PublicKey, HostKeyError> {
    let mut words = line.split_whitespace();
    let (Some(_algo), Some(b64)) = (words.next(), words.next()) else {
        return Err(HostKeyError::NotAKeyLine {
            line: line.to_string(),
        });
    };
    russh::keys::parse_public_key_base64(b64).map_err(|e| HostKeyError::BadKey {
        reason: e.to_string(),
    })
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                *self.refused.lock() =
                    Some("the server offered a host certificate, which is not supported".into());
                return Ok(false);
            }
        };
        match self.verdict(key) {
            Ok(()) => Ok(true),
            Err(why) => {
                *self.refused.lock() = Some(why.to_string());
                Ok(false)
            }
        }
    }
}

/// Connects, checks the host key, authenticates and starts the SFTP subsystem. `shown` names
/// the replica in errors (never the password).
pub async fn open(cfg: &SftpConfig, shown: &str) -> Result<Conn, ReplicaError> {
    let fatal = |reason: String| ReplicaError::Fatal {
        key: shown.to_string(),
        reason,
    };
    let transient = |reason: String| ReplicaError::Transient {
        key: shown.to_string(),
        reason,
    };
    if cfg.host_key == HostKeyCheck::Skip {
        tracing::warn!(
            replica = %shown,
            "skip-host-key-check is set: the SFTP server's host key is NOT verified"
        );
    }
    let refused = Arc::new(Mutex::new(None));
    let checker = Checker {
        check: cfg.host_key.clone(),
        host: cfg.host.clone(),
        port: cfg.port,
        refused: refused.clone(),
    };
    let config = Arc::new(client::Config {
        nodelay: true,
        ..Default::default()
    });
    let mut ssh = client::connect(config, (cfg.host.as_str(), cfg.port), checker)
        .await
        .map_err(|e| match refused.lock().take() {
            Some(why) => fatal(why),
            None => transient(format!("cannot connect: {e}")),
        })?;
    let mut tried = Vec::new();
    let mut ok = false;
    if let Some(path) = &cfg.key_path {
        tried.push("key-path");
        let key = russh::keys::load_secret_key(path, None).map_err(|e| {
            fatal(format!(
                "`key-path` {path}: cannot read the private key: {e}"
            ))
        })?;
        let hash = if key.algorithm().is_rsa() {
            ssh.best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten()
                .or(Some(HashAlg::Sha256))
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        ok = ssh
            .authenticate_publickey(cfg.user.as_str(), key)
            .await
            .map_err(|e| transient(format!("authentication: {e}")))?
            .success();
    }
    if !ok {
        if let Some(pw) = &cfg.password {
            tried.push("password");
            ok = ssh
                .authenticate_password(cfg.user.as_str(), pw.as_str())
                .await
                .map_err(|e| transient(format!("authentication: {e}")))?
                .success();
        }
    }
    if !ok {
        return Err(fatal(if tried.is_empty() {
            "no credentials: set `key-path` or `password`".to_string()
        } else {
            format!(
                "user {:?} was refused ({} tried); check the credentials",
                cfg.user,
                tried.join(", ")
            )
        }));
    }
    let channel = ssh
        .channel_open_session()
        .await
        .map_err(|e| transient(format!("cannot open an SSH channel: {e}")))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| transient(format!("cannot start the sftp subsystem: {e}")))?;
    let sftp = SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| fatal(format!("the server's sftp subsystem is not usable: {e}")))?;
    sftp.set_timeout(REQUEST_TIMEOUT_S);
    Ok(Conn { _ssh: ssh, sftp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_lines_are_parsed_or_refused_with_a_message() {
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x";
        assert!(parse_key_line(line).is_ok());
        assert!(parse_key_line("ssh-ed25519")
            .unwrap_err()
            .to_string()
            .contains("not a public key line"));
        assert!(parse_key_line("ssh-ed25519 !!!")
            .unwrap_err()
            .to_string()
            .contains("not a usable"));
    }
}
