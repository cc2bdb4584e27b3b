//! Replica URLs: `file:///abs/path` and `s3://bucket/prefix?endpoint=…` (spec §5), parsed
//! into their parts, plus percent-coding helpers and secret-free rendering.
use std::path::PathBuf;

use thiserror::Error;

use super::expand::clean;

/// A `%XX` escape that is not one, or escapes that do not decode to text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum PercentError {
    #[error("invalid escape {0:?}")]
    BadEscape(String),
    #[error("escapes do not form UTF-8 text")]
    NotUtf8,
}

/// A query parameter of an S3 URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum QueryError {
    #[error("query: ';' is not a separator; use '&'")]
    Semicolon,
    #[error("query: {0}")]
    KeyEscape(PercentError),
    #[error("query {key}: {source}")]
    ValueEscape { key: String, source: PercentError },
    #[error("query {key}: {value:?} is not a boolean (use true or false)")]
    NotBool { key: String, value: String },
    #[error("query {key}: {value:?} is not a positive integer")]
    NotPositive { key: String, value: String },
}

/// Why a replica URL was refused. `url` is the URL without its user-info ([`redact`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum UrlError {
    #[error("replica url {url:?} has no scheme: use file:///absolute/path or s3://bucket/path")]
    NoScheme { url: String },
    #[error(
        "replica url {url:?}: a file url must be file:///absolute/path (host {host:?} is not \
         allowed; official Litestream would silently drop it); for a relative directory use \
         `path:` instead of `url:`"
    )]
    FileHost { url: String, host: String },
    #[error(
        "replica url {url:?}: the path must be absolute (file:///absolute/path); for a relative \
         directory use `path:` instead of `url:`"
    )]
    FileNotAbsolute { url: String },
    #[error(
        "replica url {url:?}: the path contains '#', spaces or control characters, which \
         Litestream would mangle; use `path:` instead of `url:`"
    )]
    FileBadChars { url: String },
    #[error("replica url {url:?}: unknown scheme {scheme:?} (supported: {SUPPORTED})")]
    UnknownScheme { url: String, scheme: String },
    #[error("replica url {url:?}: invalid S3 access point ARN")]
    BadArn { url: String },
    #[error("replica url {url:?}: bucket required (s3://BUCKET/path)")]
    NoBucket { url: String },
    #[error("replica url {url:?}: path: {source}")]
    PathEscape { url: String, source: PercentError },
    #[error("replica url {url:?}: {source}")]
    Escape { url: String, source: PercentError },
    #[error("replica url {url:?}: {source}")]
    Query { url: String, source: QueryError },
    /// `scheme://` without the part that names the store (`what`: container, bucket, …).
    #[error("replica url {url:?}: missing the {what} after {scheme}://")]
    MissingHost {
        url: String,
        scheme: String,
        what: &'static str,
    },
}

/// What a replica URL says, before it is merged with YAML keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlParts {
    File(PathBuf),
    S3(S3UrlParts),
    /// `abs://`, `gs://`: see [`super::cloud`].
    Generic(super::cloud::GenericUrl),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct S3UrlParts {
    pub bucket: String,
    pub path: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// Path style implied by the URL: an `endpoint` query parameter, or a host form that
    /// needs it (`bucket.host:port`, Backblaze). An explicit `forcePathStyle` wins.
    pub implied_path_style: bool,
    pub force_path_style: Option<bool>,
    pub skip_verify: Option<bool>,
    pub sign_payload: Option<bool>,
    pub require_content_md5: Option<bool>,
    pub storage_class: Option<String>,
    pub part_size: Option<u64>,
    pub concurrency: Option<usize>,
}

/// Every replica type this library implements, for messages.
pub(crate) const SUPPORTED: &str = "file, s3, abs, gs, webdav, nats, sftp, oss";

/// The scheme of `url` in lower case (`s3`, `file`, …), or `None` when it has no `scheme://`.
pub(crate) fn scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_');
    ok.then(|| scheme.to_ascii_lowercase())
}

/// Parses a replica URL. Errors are plain messages without the URL's user-info.
pub(crate) fn parse(url: &str) -> Result<UrlParts, UrlError> {
    let shown = redact(url);
    let Some(scheme) = scheme(url) else {
        if let Some(rest) = url.strip_prefix("file:") {
            return parse_file_path(rest, &shown);
        }
        return Err(UrlError::NoScheme { url: shown });
    };
    let rest = &url[scheme.len() + 3..];
    match scheme.as_str() {
        "file" => {
            let rest = rest.split('?').next().unwrap_or_default();
            if !rest.starts_with('/') {
                let host = rest.split('/').next().unwrap_or_default();
                return Err(UrlError::FileHost {
                    url: shown,
                    host: host.to_string(),
                });
            }
            parse_file_path(rest, &shown)
        }
        "s3" => parse_s3(rest, &shown).map(UrlParts::S3),
        "abs" | "gs" | "webdav" | "webdavs" | "nats" | "sftp" | "oss" => {
            super::cloud::parse_generic(&scheme, rest, &shown).map(UrlParts::Generic)
        }
        s => Err(UrlError::UnknownScheme {
            url: shown,
            scheme: s.to_string(),
        }),
    }
}

fn parse_file_path(rest: &str, shown: &str) -> Result<UrlParts, UrlError> {
    let path = rest.split('?').next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(UrlError::FileNotAbsolute { url: shown.into() });
    }
    if path.contains(|c: char| c == '#' || c.is_whitespace() || c.is_control()) {
        return Err(UrlError::FileBadChars { url: shown.into() });
    }
    // Like Litestream, percent-escapes in file URLs are kept as written.
    Ok(UrlParts::File(clean(&PathBuf::from(path))))
}

fn parse_s3(rest: &str, shown: &str) -> Result<S3UrlParts, UrlError> {
    let rest = rest.split('#').next().unwrap_or_default();
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, q),
        None => (rest, ""),
    };
    let mut out = S3UrlParts::default();
    let raw_path;
    if before_query.to_ascii_lowercase().starts_with("arn:") {
        // s3://arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME/prefix
        let lower = before_query.to_ascii_lowercase();
        let marker = ":accesspoint/";
        let idx = lower
            .find(marker)
            .filter(|i| i + marker.len() < before_query.len())
            .ok_or_else(|| UrlError::BadArn { url: shown.into() })?;
        let name_start = idx + marker.len();
        let (bucket, key) = match before_query[name_start..].find('/') {
            Some(n) => (
                &before_query[..name_start + n],
                &before_query[name_start + n + 1..],
            ),
            None => (before_query, ""),
        };
        out.bucket = bucket.to_string();
        out.region = bucket
            .split(':')
            .nth(3)
            .filter(|r| !r.is_empty())
            .map(String::from);
        raw_path = key.to_string();
    } else {
        let (authority, path) = match before_query.find('/') {
            Some(n) => before_query.split_at(n),
            None => (before_query, ""),
        };
        let host = authority.rsplit('@').next().unwrap_or_default();
        parse_s3_host(host, &mut out);
        raw_path = path.to_string();
    }
    if out.bucket.is_empty() {
        return Err(UrlError::NoBucket { url: shown.into() });
    }
    let decoded = percent_decode(&raw_path, false).map_err(|source| UrlError::PathEscape {
        url: shown.into(),
        source,
    })?;
    out.path = clean_key(&decoded);
    apply_query(query, &mut out).map_err(|source| UrlError::Query {
        url: shown.into(),
        source,
    })?;
    Ok(out)
}

/// `a//b/./c/` → `a/b/c`; `/` or empty → `` (bucket root; official Litestream would use `.`).
pub(crate) fn clean_key(p: &str) -> String {
    let cleaned = clean(&PathBuf::from(format!("/{p}")));
    cleaned
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string()
}

/// Bucket, region and endpoint implied by the host (like Litestream's `s3.ParseHost`).
fn parse_s3_host(host: &str, out: &mut S3UrlParts) {
    if host.contains(':') && !host.contains(".com") {
        // MinIO style: bucket.host:port
        if let Some((bucket, endpoint)) = host.split_once('.') {
            out.bucket = bucket.to_string();
            out.endpoint = Some(format!("http://{endpoint}"));
            out.region = Some("us-east-1".to_string());
        } else {
            out.endpoint = Some(format!("http://{host}"));
        }
        out.implied_path_style = true;
        return;
    }
    if let Some(prefix) = host.strip_suffix(".amazonaws.com") {
        // BUCKET.s3.amazonaws.com or BUCKET.s3.REGION.amazonaws.com
        if let Some(b) = prefix.strip_suffix(".s3").filter(|b| !b.is_empty()) {
            out.bucket = b.to_string();
            return;
        }
        if let Some((b, region)) = prefix.rsplit_once('.') {
            if let Some(b) = b.strip_suffix(".s3").filter(|b| !b.is_empty()) {
                out.bucket = b.to_string();
                out.region = Some(region.to_string());
                return;
            }
        }
    }
    if let Some(prefix) = host.strip_suffix(".digitaloceanspaces.com") {
        let (bucket, region) = prefix.rsplit_once('.').unwrap_or(("", prefix));
        out.bucket = bucket.to_string();
        out.region = Some(region.to_string());
        out.endpoint = Some(format!("https://{region}.digitaloceanspaces.com"));
        return;
    }
    if let Some((bucket, region)) = provider_host(host, ".backblazeb2.com") {
        out.endpoint = Some(format!("https://s3.{region}.backblazeb2.com"));
        (out.bucket, out.region, out.implied_path_style) = (bucket, Some(region), true);
        return;
    }
    if let Some((bucket, region)) = provider_host(host, ".scw.cloud") {
        out.endpoint = Some(format!("https://s3.{region}.scw.cloud"));
        (out.bucket, out.region) = (bucket, Some(region));
        return;
    }
    if let Some(bucket) = host
        .strip_suffix("s3.filebase.com")
        .filter(|b| b.is_empty() || b.ends_with('.'))
    {
        out.bucket = bucket.trim_end_matches('.').to_string();
        out.endpoint = Some("https://s3.filebase.com".to_string());
        return;
    }
    out.bucket = host.to_string();
}

/// `[BUCKET.]s3.REGION<suffix>` → (bucket, region).
fn provider_host(host: &str, suffix: &str) -> Option<(String, String)> {
    let prefix = host.strip_suffix(suffix)?;
    let (before, region) = prefix.rsplit_once('.')?;
    let bucket = before.strip_suffix("s3")?;
    if !(bucket.is_empty() || bucket.ends_with('.')) || region.is_empty() {
        return None;
    }
    Some((bucket.trim_end_matches('.').to_string(), region.to_string()))
}

fn apply_query(query: &str, out: &mut S3UrlParts) -> Result<(), QueryError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if pair.contains(';') {
            return Err(QueryError::Semicolon);
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k, true).map_err(QueryError::KeyEscape)?;
        let value = percent_decode(v, true).map_err(|source| QueryError::ValueEscape {
            key: key.clone(),
            source,
        })?;
        if value.is_empty() {
            continue;
        }
        let bool_value = || {
            parse_bool(&value).ok_or_else(|| QueryError::NotBool {
                key: key.clone(),
                value: value.clone(),
            })
        };
        match key.as_str() {
            "endpoint" => {
                out.endpoint = Some(ensure_scheme(&value));
                out.implied_path_style = true;
            }
            "region" => out.region = Some(value),
            "forcePathStyle" | "force-path-style" => out.force_path_style = Some(bool_value()?),
            "skipVerify" | "skip-verify" => out.skip_verify = Some(bool_value()?),
            "signPayload" | "sign-payload" => out.sign_payload = Some(bool_value()?),
            "requireContentMD5" | "require-content-md5" => {
                out.require_content_md5 = Some(bool_value()?)
            }
            "storageClass" | "storage-class" => out.storage_class = Some(value),
            "partSize" | "part-size" => out.part_size = Some(positive(&key, &value)?),
            "concurrency" => out.concurrency = Some(positive(&key, &value)? as usize),
            _ => {} // unknown parameters are ignored, as in Litestream
        }
    }
    Ok(())
}

fn positive(key: &str, value: &str) -> Result<u64, QueryError> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 && n <= i64::MAX as u64 => Ok(n),
        _ => Err(QueryError::NotPositive {
            key: key.to_string(),
            value: value.to_string(),
        }),
    }
}

/// A boolean query value as Go's `strconv.ParseBool` reads it (plus `yes`/`no`).
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "yes" => Some(true),
        "false" | "0" | "f" | "no" => Some(false),
        _ => None,
    }
}

/// Adds `http://` to local endpoints and `https://` to others, like Litestream.
pub(crate) fn ensure_scheme(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        return endpoint.to_string();
    }
    let host = endpoint.split(['/', ':']).next().unwrap_or_default();
    let local = host == "localhost"
        || host == "127.0.0.1"
        || host.starts_with("192.168.")
        || host.starts_with("10.")
        || (host.starts_with("172.")
            && host
                .split('.')
                .nth(1)
                .and_then(|o| o.parse::<u8>().ok())
                .is_some_and(|o| (16..=31).contains(&o)));
    let scheme = if local { "http" } else { "https" };
    format!("{scheme}://{endpoint}")
}

/// Decodes `%XX` (and `+` as space in query components).
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, PercentError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        let bad = String::from_utf8_lossy(&b[i..(i + 3).min(b.len())]);
                        PercentError::BadEscape(bad.into_owned())
                    })?;
                out.push(byte);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| PercentError::NotUtf8)
}

/// Percent-encodes everything but unreserved characters (and `/` when `keep_slash`).
pub(crate) fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) || (keep_slash && c == b'/') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// `url` with any `user:password@` removed, safe for messages and logs. Secrets often contain
/// `/` (AWS secret keys are base64), so everything up to the last `@` before the query is
/// taken as credentials and hidden (a path holding an `@` is shown shortened: safety first).
/// A raw `?` or `#` ends the user-info, as in any URL (secrets holding them must be
/// percent-encoded).
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL we can take apart (a mistyped scheme): hide anything up to an `@`.
        let end = url.find(['?', '#']).unwrap_or(url.len());
        return match url[..end].rfind('@') {
            Some(at) => format!("…@{}", &url[at + 1..]),
            None => url.to_string(),
        };
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
