//! An SDK interceptor that counts every HTTP request the S3 client sends (retries included) in
//! the metrics, by kind: `LIST`, `GET`, `HEAD`, `PUT`, `DELETE`, `POST` (multipart bookkeeping).

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

const REPLICA_TYPE: &str = "s3";

/// The request kind as the metrics and the benchmark's cost table name it.
pub fn kind(method: &str, uri: &str) -> &'static str {
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    let has = |p: &str| {
        query
            .split('&')
            .any(|kv| kv == p || kv.starts_with(&format!("{p}=")))
    };
    match method {
        "GET" if has("list-type") => "LIST",
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "POST" if has("delete") => "DELETE",
        _ => "POST",
    }
}

#[derive(Debug)]
pub struct CountRequests;

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "litestream-count-requests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        let op = kind(req.method(), req.uri());
        crate::metrics::record_request(REPLICA_TYPE, op);
        if op == "PUT" {
            if let Some(n) = req.body().content_length() {
                crate::metrics::record_request_bytes(REPLICA_TYPE, op, n);
            }
        }
        Ok(())
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context.response().status().as_u16() >= 400 {
            // The request kind is not on the response; count the error under the status class.
            crate::metrics::record_request_error(REPLICA_TYPE, "HTTP");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::kind;

    #[test]
    fn request_kinds() {
        assert_eq!(
            kind("GET", "http://h/b?list-type=2&prefix=p%2F0000%2F"),
            "LIST"
        );
        assert_eq!(kind("GET", "http://h/b/p/0000/a.ltx"), "GET");
        assert_eq!(kind("GET", "http://h/b/p/0000/a.ltx?x-id=GetObject"), "GET");
        assert_eq!(kind("PUT", "http://h/b/k?partNumber=1&uploadId=u"), "PUT");
        assert_eq!(kind("POST", "http://h/b?delete"), "DELETE");
        assert_eq!(kind("POST", "http://h/b?delete="), "DELETE");
        assert_eq!(kind("POST", "http://h/b/k?uploads"), "POST");
        assert_eq!(kind("HEAD", "http://h/b/k"), "HEAD");
        assert_eq!(kind("DELETE", "http://h/b/k"), "DELETE");
    }
}
