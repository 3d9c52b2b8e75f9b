//! An S3-compatible bucket through aws-sdk-s3, with our own bounded retry loop.
//!
//! The SDK's own retries are switched off: each operation is retried here, for transient failures
//! only, until the section's `retry_for_secs` budget is spent, so one policy (and one log line per
//! retry) covers every call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_smithy_http_client::tls;
use lucid_proto::spec::{ChecksumMode, StorageSection, validate_bucket};

use crate::ObjectInfo;
use crate::credentials::Credentials;
use crate::error::StorageError;
use crate::key::{validate_key, validate_prefix};
use crate::retry::{Failure, GaveUp, retry};

/// The environment variable naming a CA bundle when `storage.ca_file` is unset.
pub const CA_FILE_ENV: &str = "LUCID_CA_FILE";

/// How long to wait for a TCP (and TLS) connection before counting the attempt as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one request may take, body included; a stuck request is then retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Objects per listing page (the S3 maximum).
const LIST_PAGE: i32 = 1000;

/// One S3 bucket. Cheap to clone: clones share the client and its connection pool.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

/// Shows bucket, region and retry budget only: the client's configuration holds the credentials.
impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.inner.bucket)
            .field("region", &self.inner.region)
            .field("retry_for", &self.inner.retry_for)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: aws_sdk_s3::Client,
    bucket: String,
    region: String,
    retry_for: Duration,
}

/// A failed request, classified.
struct Attempt {
    /// HTTP status, when the store answered.
    status: Option<u16>,
    /// The store's error code (`NoSuchKey`, `SignatureDoesNotMatch`), when it sent one.
    code: Option<String>,
    failure: Failure,
}

/// Whether `endpoint` (none: AWS itself) is spoken to over TLS; refuses any other scheme.
fn endpoint_is_https(endpoint: Option<&str>) -> Result<bool, StorageError> {
    match endpoint {
        None => Ok(true),
        Some(e) if e.starts_with("https://") => Ok(true),
        Some(e) if e.starts_with("http://") => Ok(false),
        Some(e) => Err(StorageError::config(
            "storage.endpoint",
            format!("must start with http:// or https://, got {e:?}"),
        )),
    }
}

/// The CA bundle an `https://` endpoint is verified against, with the setting that named it:
/// `storage.ca_file`, else env [`CA_FILE_ENV`]; `None` for the platform's roots.
fn trusted_ca_file(section: &StorageSection) -> Option<(String, PathBuf)> {
    match &section.ca_file {
        Some(path) => Some(("storage.ca_file".to_owned(), path.clone())),
        None => std::env::var_os(CA_FILE_ENV)
            .filter(|v| !v.is_empty())
            .map(|v| (CA_FILE_ENV.to_owned(), PathBuf::from(v))),
    }
}

impl S3Store {
    /// Builds a client for `section` (which must have `kind = "s3"` fields filled in) with
    /// `credentials`. Does no network I/O: a wrong endpoint or key shows on the first request.
    ///
    /// For an `https://` endpoint (or AWS itself) with `section.ca_file` or env `LUCID_CA_FILE` set,
    /// the server certificate is verified against that PEM bundle instead of the platform's roots; for
    /// `http://` endpoints the bundle is not used.
    pub fn new(section: &StorageSection, credentials: Credentials) -> Result<Self, StorageError> {
        let bucket = section
            .bucket
            .clone()
            .ok_or_else(|| StorageError::config("storage.bucket", "required for s3 storage"))?;
        validate_bucket(&bucket).map_err(|r| StorageError::config("storage.bucket", r))?;
        if section.region.trim().is_empty() {
            return Err(StorageError::config("storage.region", "must not be empty"));
        }
        if section.retry_for_secs == 0 {
            return Err(StorageError::config(
                "storage.retry_for_secs",
                "must be at least 1",
            ));
        }
        let https = endpoint_is_https(section.endpoint.as_deref())?;

        let (request_checksums, response_checksums) = match section.checksum {
            ChecksumMode::WhenRequired => (
                RequestChecksumCalculation::WhenRequired,
                ResponseChecksumValidation::WhenRequired,
            ),
            ChecksumMode::WhenSupported => (
                RequestChecksumCalculation::WhenSupported,
                ResponseChecksumValidation::WhenSupported,
            ),
        };
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(section.region.clone()))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                credentials.access_key_id,
                credentials.secret_access_key,
                None,
                None,
                "lucid-storage",
            ))
            .force_path_style(section.path_style)
            .request_checksum_calculation(request_checksums)
            .response_checksum_validation(response_checksums)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(endpoint) = &section.endpoint {
            config = config.endpoint_url(endpoint.trim_end_matches('/'));
        }
        if https && let Some((field, path)) = trusted_ca_file(section) {
            config = config.http_client(https_client_trusting(&field, &path)?);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client: aws_sdk_s3::Client::from_conf(config.build()),
                bucket,
                region: section.region.clone(),
                retry_for: Duration::from_secs(section.retry_for_secs),
            }),
        })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// How long each operation keeps retrying transient failures.
    pub fn retry_for(&self) -> Duration {
        self.inner.retry_for
    }

    /// The underlying SDK client, for operations this type does not wrap.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.inner.client
    }

    /// Creates the bucket unless it exists (and is ours); idempotent, also under races.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        let inner = &self.inner;
        let exists = self
            .retrying("head bucket", "", || async {
                match inner
                    .client
                    .head_bucket()
                    .bucket(&inner.bucket)
                    .send()
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) => match classify(e) {
                        a if a.status == Some(404) => Ok(false),
                        a => Err(a.failure),
                    },
                }
            })
            .await?;
        if exists {
            return Ok(());
        }
        self.retrying("create bucket", "", || async {
            let mut request = inner.client.create_bucket().bucket(&inner.bucket);
            if inner.region != "us-east-1" {
                request = request.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(inner.region.as_str()))
                        .build(),
                );
            }
            match request.send().await {
                Ok(_) => Ok(()),
                Err(e) => match classify(e) {
                    // another process won the race, or the store does not treat re-creation as a no-op
                    a if matches!(
                        a.code.as_deref(),
                        Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                    ) =>
                    {
                        Ok(())
                    }
                    a => Err(a.failure),
                },
            }
        })
        .await
    }

    /// Stores `bytes` under `key` with `content_type` (PutObject), retrying transient failures.
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        validate_key(key)?;
        let inner = &self.inner;
        // one shared buffer: each attempt's ByteStream is a cheap clone of it
        let body = bytes::Bytes::from(bytes);
        self.retrying("put", key, || async {
            inner
                .client
                .put_object()
                .bucket(&inner.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(e).failure)
        })
        .await
    }

    /// The object's bytes, or `None` if there is no such key (GetObject).
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        validate_key(key)?;
        let inner = &self.inner;
        self.retrying("get", key, || async {
            let output = match inner
                .client
                .get_object()
                .bucket(&inner.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(output) => output,
                Err(e) => {
                    let a = classify(e);
                    return if a.status == Some(404) && a.code.as_deref() != Some("NoSuchBucket") {
                        Ok(None)
                    } else {
                        Err(a.failure)
                    };
                }
            };
            match output.body.collect().await {
                Ok(data) => Ok(Some(data.into_bytes().to_vec())),
                // the connection broke mid-body: fetch the whole object again
                Err(e) => Err(Failure {
                    message: format!("reading the body: {}", error_chain(&e)),
                    transient: true,
                }),
            }
        })
        .await
    }

    /// Size and content type of the object, or `None` if there is no such key (HeadObject). A HEAD
    /// answer has no body, so a missing bucket also reads as `None`.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        validate_key(key)?;
        let inner = &self.inner;
        self.retrying("head", key, || async {
            match inner
                .client
                .head_object()
                .bucket(&inner.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(output) => Ok(Some(ObjectInfo {
                    size: output.content_length().unwrap_or(0).max(0) as u64,
                    content_type: output.content_type().map(str::to_owned),
                })),
                Err(e) => match classify(e) {
                    a if a.status == Some(404) => Ok(None),
                    a => Err(a.failure),
                },
            }
        })
        .await
    }

    /// Every key under `prefix`, sorted: ListObjectsV2 pages of 1000, each page retried on its own.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        validate_prefix(prefix)?;
        let inner = &self.inner;
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retrying("list", prefix, || async {
                    inner
                        .client
                        .list_objects_v2()
                        .bucket(&inner.bucket)
                        .prefix(prefix)
                        .max_keys(LIST_PAGE)
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| classify(e).failure)
                })
                .await?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => {
                    if token.as_deref() == Some(next) {
                        return Err(self.error(
                            "list",
                            prefix,
                            "the store returned the same continuation token twice".into(),
                            false,
                            1,
                        ));
                    }
                    token = Some(next.to_owned());
                }
                _ => break,
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Deletes the object (DeleteObject); succeeds if there is none.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        let inner = &self.inner;
        self.retrying("delete", key, || async {
            match inner
                .client
                .delete_object()
                .bucket(&inner.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => match classify(e) {
                    a if a.status == Some(404) && a.code.as_deref() != Some("NoSuchBucket") => {
                        Ok(())
                    }
                    a => Err(a.failure),
                },
            }
        })
        .await
    }

    async fn retrying<T, Fut>(
        &self,
        op: &'static str,
        key: &str,
        attempt: impl FnMut() -> Fut,
    ) -> Result<T, StorageError>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        let bucket = &self.inner.bucket;
        retry(
            self.inner.retry_for,
            || format!("s3 {op} s3://{bucket}/{key}"),
            attempt,
        )
        .await
        .map_err(|GaveUp { failure, attempts }| {
            self.error(op, key, failure.message, failure.transient, attempts)
        })
    }

    fn error(
        &self,
        op: &'static str,
        key: &str,
        message: String,
        transient: bool,
        attempts: u32,
    ) -> StorageError {
        StorageError::S3 {
            op,
            bucket: self.inner.bucket.clone(),
            key: key.to_owned(),
            message,
            transient,
            attempts,
        }
    }
}

/// Sorts an SDK error into transient (worth retrying) or not, keeping status and code for callers that
/// treat 404 as an answer.
fn classify<E>(err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Attempt
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (status, code, transient, message) = match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let meta = service.err();
            let code = meta.code().map(str::to_owned);
            let transient = status >= 500
                || status == 408
                || status == 429
                || matches!(
                    code.as_deref(),
                    Some(
                        "SlowDown"
                            | "Throttling"
                            | "ThrottlingException"
                            | "RequestTimeout"
                            | "InternalError"
                            | "ServiceUnavailable"
                    )
                );
            let message = match (code.as_deref(), meta.message()) {
                (Some(code), Some(msg)) => format!("http {status} {code}: {msg}"),
                (Some(code), None) => format!("http {status} {code}"),
                (None, _) => format!("http {status}"),
            };
            (Some(status), code, transient, message)
        }
        SdkError::TimeoutError(_) => (None, None, true, error_chain(&err)),
        // a TLS refusal (untrusted certificate, wrong name) repeats on every new connection
        SdkError::DispatchFailure(dispatch) => (
            None,
            None,
            !dispatch.is_user() && !tls_refused(&err),
            error_chain(&err),
        ),
        // the response could not be read or parsed: a connection cut short, most likely
        SdkError::ResponseError(_) => (None, None, true, error_chain(&err)),
        _ => (None, None, false, error_chain(&err)),
    };
    Attempt {
        status,
        code,
        failure: Failure { message, transient },
    }
}

/// Whether `err`'s chain holds a `rustls::Error`: the TLS layer refused the handshake (an untrusted
/// certificate or name, an alert), which a new connection repeats. The payloads of `io::Error`s are
/// visited too (their `source` skips them): the rustls error sits inside `io::Error`s.
fn tls_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    if err.is::<rustls::Error>() {
        return true;
    }
    let payload = err
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref);
    if let Some(payload) = payload
        && tls_refused(payload)
    {
        return true;
    }
    err.source().is_some_and(tls_refused)
}

/// `err` and its sources as `outer: inner: root cause`, skipping a source whose text the previous
/// message already includes.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// An HTTPS client that verifies servers against the CA certificates in the PEM file at `path` only.
fn https_client_trusting(
    field: &str,
    path: &Path,
) -> Result<aws_sdk_s3::config::SharedHttpClient, StorageError> {
    let pem = std::fs::read(path).map_err(|e| StorageError::io("read ca bundle", path, e))?;
    // The SDK panics on a bad certificate when it first connects, so check the bundle here the way it
    // will be loaded.
    let invalid = |reason: String| {
        StorageError::config(field, format!("ca bundle {}: {reason}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| invalid(format!("not valid PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("unusable certificate: {e}")))?;
        }
    }
    if roots.is_empty() {
        return Err(invalid("contains no CERTIFICATE block".into()));
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(endpoint: &str) -> StorageSection {
        StorageSection {
            endpoint: Some(endpoint.into()),
            bucket: Some("lucid-unit".into()),
            ..StorageSection::default()
        }
    }

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "ak".into(),
            secret_access_key: "sk".into(),
        }
    }

    #[test]
    fn config_errors_name_the_field() {
        let mut s = section("http://127.0.0.1:1");
        s.bucket = None;
        let err = S3Store::new(&s, creds()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid storage config storage.bucket: required for s3 storage"
        );
        let s = section("ftp://x");
        let err = S3Store::new(&s, creds()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid storage config storage.endpoint"),
            "{err}"
        );
    }

    #[test]
    fn ca_bundle_is_checked_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = section("https://127.0.0.1:1");

        let missing = dir.path().join("missing.pem");
        s.ca_file = Some(missing.clone());
        let err = S3Store::new(&s, creds()).unwrap_err();
        assert!(
            matches!(&err, StorageError::Io { path, .. } if *path == missing),
            "{err:?}"
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        s.ca_file = Some(garbage.clone());
        let msg = S3Store::new(&s, creds()).unwrap_err().to_string();
        assert!(
            msg.starts_with("invalid storage config storage.ca_file: ca bundle")
                && msg.contains("garbage.pem"),
            "{msg}"
        );

        let bad_der = dir.path().join("bad.pem");
        std::fs::write(
            &bad_der,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        s.ca_file = Some(bad_der);
        let msg = S3Store::new(&s, creds()).unwrap_err().to_string();
        assert!(msg.contains("unusable certificate"), "{msg}");

        let good = dir.path().join("ca.pem");
        std::fs::write(&good, TEST_CA).unwrap();
        s.ca_file = Some(good.clone());
        S3Store::new(&s, creds()).unwrap();

        // plain http never reads the bundle
        let mut s = section("http://127.0.0.1:1");
        s.ca_file = Some(missing);
        S3Store::new(&s, creds()).unwrap();
    }

    #[test]
    fn tls_refusals_are_found_inside_io_errors() {
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // hyper-rustls nests the rustls error two io::Errors deep
        let nested = std::io::Error::other(std::io::Error::other(untrusted));
        assert!(tls_refused(&nested));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!tls_refused(&refused));
        assert!(!tls_refused(&std::io::Error::other(refused)));
    }

    /// A self-signed CA certificate made for this test (`openssl req -x509 -newkey ec`).
    const TEST_CA: &str = include_str!("../tests/data/test-ca.pem");
}
