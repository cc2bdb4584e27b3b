//! Azure credentials, in Litestream's order: a SAS token (`sas-token`, then
//! `LITESTREAM_AZURE_SAS_TOKEN`) wins over a Shared Key (`account-key`, then
//! `LITESTREAM_AZURE_ACCOUNT_KEY`, then `AZURE_STORAGE_KEY`) with the account name
//! (`account-name`, the URL's user, then `AZURE_STORAGE_ACCOUNT`).
//!
//! Shared Key signing follows "Authorize with Shared Key" of the Blob service REST reference
//! (version 2015-02-21 and later: an empty Content-Length for empty bodies).

use base64::Engine;
use http::Method;

use crate::config::AbsConfig;
use crate::replica::http::{Request, Sign};
use crate::replica::ReplicaError;

/// The Blob service REST version we speak: Put Blob up to 5000 MiB, conditional headers, list
/// with metadata. Azurite and Azure both accept it.
pub const API_VERSION: &str = "2021-12-02";

/// How requests are authorized. Deliberately without `Debug`: it holds secrets.
pub enum Credentials {
    /// Query parameters appended to every URL (without the leading `?`).
    Sas(String),
    SharedKey {
        account: String,
        key: Vec<u8>,
    },
}

impl Credentials {
    pub fn name(&self) -> &'static str {
        match self {
            Credentials::Sas(_) => "sas-token",
            Credentials::SharedKey { .. } => "shared-key",
        }
    }
}

/// The account name: `account-name` or the URL's user, else `AZURE_STORAGE_ACCOUNT`.
pub fn account_name(cfg: &AbsConfig, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    cfg.account_name
        .clone()
        .or_else(|| env("AZURE_STORAGE_ACCOUNT").filter(|v| !v.is_empty()))
}

/// Picks the credentials for `cfg`; `env` reads the environment.
pub fn resolve(
    cfg: &AbsConfig,
    env: &dyn Fn(&str) -> Option<String>,
    shown: &str,
) -> Result<Credentials, ReplicaError> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let sas = cfg
        .sas_token
        .clone()
        .or_else(|| var("LITESTREAM_AZURE_SAS_TOKEN"));
    if let Some(sas) = sas {
        return Ok(Credentials::Sas(sas.trim_start_matches('?').to_string()));
    }
    let key = cfg
        .account_key
        .clone()
        .or_else(|| var("LITESTREAM_AZURE_ACCOUNT_KEY"))
        .or_else(|| var("AZURE_STORAGE_KEY"));
    let fatal = |reason: &str| ReplicaError::Fatal {
        key: shown.to_string(),
        reason: reason.to_string(),
    };
    match (key, account_name(cfg, env)) {
        (Some(key), Some(account)) => {
            let key = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| {
                    fatal("the account key is not valid base64: copy it from the storage account's access keys")
                })?;
            Ok(Credentials::SharedKey { account, key })
        }
        (Some(_), None) => Err(fatal(
            "an account key needs the account name: set `account-name` (or abs://ACCOUNT@CONTAINER/…)",
        )),
        (None, _) => Err(fatal(
            "no Azure credentials: set `account-key` (or LITESTREAM_AZURE_ACCOUNT_KEY) with \
             `account-name`, or `sas-token` (or LITESTREAM_AZURE_SAS_TOKEN); Azure AD / managed \
             identity credentials are not supported by liblitestream",
        )),
    }
}

/// Signs requests with the resolved credentials.
pub struct Signer {
    pub creds: Credentials,
}

impl Sign for Signer {
    fn sign(&self, req: &mut Request) -> Result<(), ReplicaError> {
        let date = crate::replica::http::http_date_now();
        *req = std::mem::replace(req, Request::new(Method::GET, String::new()))
            .header("x-ms-date", &date)
            .header("x-ms-version", API_VERSION);
        match &self.creds {
            Credentials::Sas(token) => {
                let sep = if req.url.contains('?') { '&' } else { '?' };
                req.url = format!("{}{sep}{token}", req.url);
            }
            Credentials::SharedKey { account, key } => {
                let to_sign = string_to_sign(req, account);
                let mac = ring::hmac::sign(
                    &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
                    to_sign.as_bytes(),
                );
                let sig = base64::engine::general_purpose::STANDARD.encode(mac.as_ref());
                *req = std::mem::replace(req, Request::new(Method::GET, String::new()))
                    .header("authorization", &format!("SharedKey {account}:{sig}"));
            }
        }
        Ok(())
    }
}

fn header<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The Shared Key string-to-sign of `req` for `account`.
pub fn string_to_sign(req: &Request, account: &str) -> String {
    let len = if req.body.is_empty() {
        String::new()
    } else {
        req.body.len().to_string()
    };
    let mut s = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n",
        req.method.as_str(),
        header(req, "content-encoding"),
        header(req, "content-language"),
        len,
        header(req, "content-md5"),
        header(req, "content-type"),
        header(req, "if-modified-since"),
        header(req, "if-match"),
        header(req, "if-none-match"),
        header(req, "if-unmodified-since"),
        header(req, "range"),
    );
    let mut ms: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-ms-"))
        .map(|(k, v)| {
            let v = v.to_str().unwrap_or("");
            (
                k.as_str().to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    ms.sort();
    for (k, v) in ms {
        s.push_str(&format!("{k}:{v}\n"));
    }
    let after_scheme = req.url.split_once("://").map_or("", |(_, r)| r);
    let path_and_query = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    s.push_str(&format!("/{account}{path}"));
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_ascii_lowercase(), decode(v))
        })
        .collect();
    params.sort();
    let mut i = 0;
    while i < params.len() {
        let name = params[i].0.clone();
        let mut values = Vec::new();
        while i < params.len() && params[i].0 == name {
            values.push(params[i].1.clone());
            i += 1;
        }
        s.push_str(&format!("\n{name}:{}", values.join(",")));
    }
    s
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn string_to_sign_has_every_field_in_order() {
        let req = Request::new(
            Method::PUT,
            "http://127.0.0.1:10000/acct/box/a%20b/ltx/0/x.ltx?comp=block&blockid=QUJD%3D".into(),
        )
        .header("content-type", "application/octet-stream")
        .header("if-none-match", "*")
        .header("x-ms-version", API_VERSION)
        .header("x-ms-date", "Wed, 09 Sep 2009 09:20:02 GMT")
        .header("x-ms-meta-litestreamtimestamp", "2009-09-09T09:20:02.000Z")
        .body(&b"abc"[..]);
        assert_eq!(
            string_to_sign(&req, "acct"),
            "PUT\n\n\n3\n\napplication/octet-stream\n\n\n\n*\n\n\n\
             x-ms-date:Wed, 09 Sep 2009 09:20:02 GMT\n\
             x-ms-meta-litestreamtimestamp:2009-09-09T09:20:02.000Z\n\
             x-ms-version:2021-12-02\n\
             /acct/acct/box/a%20b/ltx/0/x.ltx\nblockid:QUJD=\ncomp:block"
        );
        let empty = Request::new(Method::GET, "https://acct.blob.core.windows.net/box".into());
        assert!(string_to_sign(&empty, "acct").starts_with("GET\n\n\n\n"));
        assert!(string_to_sign(&empty, "acct").ends_with("\n/acct/box"));
    }

    #[test]
    fn credentials_order() {
        let cfg = AbsConfig {
            account_name: Some("acct".into()),
            account_key: Some("a2V5".into()),
            ..Default::default()
        };
        let c = resolve(
            &cfg,
            &env_of(&[("LITESTREAM_AZURE_SAS_TOKEN", "?sv=1&sig=x")]),
            "k",
        )
        .unwrap();
        assert!(matches!(&c, Credentials::Sas(t) if t == "sv=1&sig=x"));
        let c = resolve(&cfg, &env_of(&[]), "k").unwrap();
        assert!(matches!(&c, Credentials::SharedKey { key, .. } if key == b"key"));
        let bare = AbsConfig::default();
        let c = resolve(
            &bare,
            &env_of(&[
                ("AZURE_STORAGE_ACCOUNT", "a"),
                ("AZURE_STORAGE_KEY", "a2V5"),
            ]),
            "k",
        )
        .unwrap();
        assert!(matches!(&c, Credentials::SharedKey { account, .. } if account == "a"));
        let err = resolve(&bare, &env_of(&[]), "k")
            .err()
            .expect("an error")
            .to_string();
        assert!(err.contains("account-key"), "{err}");
    }

    #[test]
    fn a_bad_key_is_refused_without_showing_it() {
        let cfg = AbsConfig {
            account_name: Some("acct".into()),
            account_key: Some("not base64 !!secret".into()),
            ..Default::default()
        };
        let err = resolve(&cfg, &env_of(&[]), "k")
            .err()
            .expect("an error")
            .to_string();
        assert!(err.contains("base64") && !err.contains("secret"), "{err}");
    }
}
