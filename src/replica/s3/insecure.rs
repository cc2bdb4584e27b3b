//! The HTTP client for `skip-verify`.

use aws_sdk_s3::config::SharedHttpClient;

/// Placeholder until a non-verifying TLS client is wired in: certificates are still verified.
pub(crate) fn http_client() -> SharedHttpClient {
    tracing::warn!("s3 skip-verify is not implemented yet; certificates are verified");
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}
