//! S3 failures → [`ReplicaError`], naming the bucket, the key and the store's error code, never a
//! credential (only the code, the HTTP status and the store's message are kept; request headers
//! and signing details are not).

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::runtime::RuntimeError;
use crate::replica::ReplicaError;

/// What went wrong, before it is classified: the HTTP status and the store's error code when
/// the store answered, else the transport failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    /// The request never got an answer (connect, timeout, reset): always worth retrying.
    pub transport: bool,
    /// The request could not even be built (bad configuration, no credentials).
    pub construction: bool,
}

impl Failure {
    pub(crate) fn from_sdk<E, R>(err: &SdkError<E, R>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + HasStatus,
    {
        match err {
            SdkError::ServiceError(se) => Failure {
                status: Some(se.raw().status_code()),
                code: se.err().code().map(str::to_string),
                message: se.err().message().unwrap_or_default().to_string(),
                transport: false,
                construction: false,
            },
            SdkError::ConstructionFailure(_) => Failure {
                status: None,
                code: None,
                message: DisplayErrorContext(err).to_string(),
                transport: false,
                construction: true,
            },
            SdkError::ResponseError(e) => Failure {
                status: Some(e.raw().status_code()),
                code: None,
                message: DisplayErrorContext(err).to_string(),
                transport: true,
                construction: false,
            },
            _ => Failure {
                status: None,
                code: None,
                message: DisplayErrorContext(err).to_string(),
                transport: true,
                construction: false,
            },
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        self.status == Some(404) || matches!(self.code.as_deref(), Some("NoSuchKey" | "NotFound"))
    }

    pub(crate) fn is_precondition(&self) -> bool {
        self.status == Some(412) || self.code.as_deref() == Some("PreconditionFailed")
    }

    /// 5xx, throttling, timeouts, a concurrent conditional write (409), and every transport
    /// failure.
    pub(crate) fn is_transient(&self) -> bool {
        if self.transport {
            return true;
        }
        if matches!(
            self.code.as_deref(),
            Some(
                "RequestTimeout"
                    | "RequestTimeTooSkewed"
                    | "SlowDown"
                    | "Throttling"
                    | "ThrottlingException"
                    | "InternalError"
                    | "ServiceUnavailable"
                    | "ConditionalRequestConflict"
                    | "OperationAborted"
            )
        ) {
            return true;
        }
        matches!(self.status, Some(s) if s >= 500 || s == 408 || s == 429 || s == 409)
    }

    /// `503 SlowDown: Please reduce your request rate.`
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(s) = self.status {
            out.push_str(&s.to_string());
        }
        if let Some(c) = &self.code {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(c);
        }
        if !self.message.is_empty() {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&self.message);
        }
        if out.is_empty() {
            out.push_str("unknown error");
        }
        out
    }
}

/// The HTTP status of a raw response (implemented for the SDK's response type).
pub(crate) trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Classifies `f` for the object `key` (`s3://bucket/key`) of operation `op` (`PUT`, `LIST`…).
pub(crate) fn classify(op: &str, key: String, f: &Failure) -> ReplicaError {
    let reason = format!("{op} failed: {}", f.describe());
    if f.is_not_found() && f.code.as_deref() != Some("NoSuchBucket") {
        return ReplicaError::NotFound { key };
    }
    if f.is_precondition() {
        return ReplicaError::Precondition { key, reason };
    }
    if f.construction {
        return ReplicaError::Fatal {
            key,
            reason: format!(
                "{reason} (check the replica's region, endpoint and credentials: \
                 access-key-id/secret-access-key, LITESTREAM_ACCESS_KEY_ID, AWS_ACCESS_KEY_ID \
                 or an AWS profile)"
            ),
        };
    }
    if f.is_transient() {
        return ReplicaError::Transient { key, reason };
    }
    let hint = match f.code.as_deref() {
        Some("NoSuchBucket") => " (create the bucket, or fix `bucket`)",
        Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
            " (check the credentials and the bucket policy)"
        }
        Some("PermanentRedirect" | "AuthorizationHeaderMalformed") => {
            " (set `region` to the bucket's region)"
        }
        _ => "",
    };
    ReplicaError::Fatal {
        key,
        reason: format!("{reason}{hint}"),
    }
}

/// Maps an SDK error of operation `op` on `key`.
pub(crate) fn map_sdk<E, R>(op: &str, key: String, err: &SdkError<E, R>) -> ReplicaError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    classify(op, key, &Failure::from_sdk(err))
}

/// The runtime could not run the request.
pub(crate) fn map_runtime(key: String, err: RuntimeError) -> ReplicaError {
    match err {
        RuntimeError::Stopped => ReplicaError::Transient {
            key,
            reason: err.to_string(),
        },
        _ => ReplicaError::Fatal {
            key,
            reason: err.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(status: u16, code: &str) -> Failure {
        Failure {
            status: Some(status),
            code: Some(code.to_string()),
            message: "msg".to_string(),
            transport: false,
            construction: false,
        }
    }

    #[test]
    fn classification() {
        let k = || "s3://b/k".to_string();
        assert!(matches!(
            classify("GET", k(), &svc(404, "NoSuchKey")),
            ReplicaError::NotFound { .. }
        ));
        assert!(matches!(
            classify("PUT", k(), &svc(412, "PreconditionFailed")),
            ReplicaError::Precondition { .. }
        ));
        for (s, c) in [
            (503, "SlowDown"),
            (500, "InternalError"),
            (409, "ConditionalRequestConflict"),
            (400, "RequestTimeout"),
            (429, "Whatever"),
        ] {
            assert!(classify("PUT", k(), &svc(s, c)).is_transient(), "{s} {c}");
        }
        let e = classify("PUT", k(), &svc(403, "AccessDenied"));
        assert!(matches!(e, ReplicaError::Fatal { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("s3://b/k") && msg.contains("403 AccessDenied"),
            "{msg}"
        );
        // A missing bucket is a configuration problem, not a missing object.
        assert!(matches!(
            classify("GET", k(), &svc(404, "NoSuchBucket")),
            ReplicaError::Fatal { .. }
        ));
        let t = Failure {
            status: None,
            code: None,
            message: "connection reset".into(),
            transport: true,
            construction: false,
        };
        assert!(classify("PUT", k(), &t).is_transient());
    }

    #[test]
    fn describe_forms() {
        assert_eq!(svc(503, "SlowDown").describe(), "503 SlowDown: msg");
        let f = Failure {
            status: None,
            code: None,
            message: String::new(),
            transport: true,
            construction: false,
        };
        assert_eq!(f.describe(), "unknown error");
    }
}
