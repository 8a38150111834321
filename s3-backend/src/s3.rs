//! The S3 object store: any S3-compatible endpoint through `aws-sdk-s3`.
//!
//! [`S3Store`] implements the synchronous [`ObjectStore`] trait. It owns a small
//! multi-thread tokio runtime (2 workers) and runs each request as a task on it, the
//! calling thread waiting on a channel: callers (fuser threads, upload threads) stay
//! synchronous, and calling from inside another tokio runtime does not panic (it only
//! blocks that thread).
//!
//! Every request:
//! - waits for a permit of a semaphore of `max_concurrency` permits (requests in flight
//!   across all callers);
//! - has `request_timeout` from sending to the last byte of the response (the SDK's own
//!   timeouts cover connecting only, and the SDK's retries are off);
//! - on a transient failure (5xx, 429/SlowDown/throttling, timeout, connection refused
//!   or broken) is retried up to `max_retries` times with exponential backoff and full
//!   jitter ([`RetryPolicy`], the same loop as [`crate::RetryingStore`]); the permit is
//!   released while waiting. A 403, 404 or other 4xx is not retried. A request that
//!   keeps failing ends in [`StoreError::Unavailable`] (EIO to the application) after
//!   at most `(max_retries + 1) * request_timeout` plus the backoff waits — never a hang.
//!
//! Puts send the object's CRC32C (`x-amz-checksum-crc32c`) so that the server rejects
//! bytes damaged on the way; the SDK's own checksum calculation is set to "when
//! required" so that no `aws-chunked` trailer encoding is used (which some
//! S3-compatible servers reject). Whole-object gets are checked by the SDK against the
//! stored checksum when the server returns one. ferrofs' block format checks every
//! segment on read anyway.
//!
//! Credentials: explicit keys ([`S3Config::access_key`]/[`S3Config::secret_key`]),
//! else `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, else: for AWS
//! endpoints, aws-config's default chain (profile files, web identity, ECS, EC2
//! instance metadata — not SSO or credential processes, which need heavier features);
//! for other endpoints, the profile files (`~/.aws/credentials`) only, so that a
//! missing key never sends requests to an instance-metadata address. Secrets never
//! appear in `Debug` output, [`ObjectStore::describe`] or error messages.
//!
//! Plain `http://` endpoints use a client without TLS or proxies, so CA-bundle and
//! proxy variables (`AWS_CA_BUNDLE`, `SSL_CERT_FILE`, `HTTP_PROXY`, ...) cannot affect
//! them; aws-config itself does not read `AWS_CA_BUNDLE`. `https://` endpoints (and AWS)
//! need this crate's `tls` feature (rustls with ring, native roots plus the PEM file
//! `AWS_CA_BUNDLE` names, if any).

use crate::error::{StoreError, TransientKind};
use crate::key::validate_key;
use crate::retry::{RetryCounters, RetryPolicy, RetryStats, SplitMix64, ThreadSleeper};
use crate::{Bytes, ObjectInfo, ObjectStore};
use aws_sdk_s3::config::{
    timeout::TimeoutConfig, BehaviorVersion, Credentials, ProvideCredentials, Region,
    RequestChecksumCalculation, SharedCredentialsProvider, SharedHttpClient,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where and how to reach an S3 bucket. Build it with [`S3Config::from_bucket_url`] and
/// adjust the fields. `Debug` never shows the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `scheme://host[:port]` of an S3-compatible server; `None` for AWS S3 (the
    /// endpoint follows from the region).
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Signing region (any value for most S3-compatible servers).
    pub region: String,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Path-style (`endpoint/bucket/key`) instead of virtual-hosted
    /// (`bucket.endpoint/key`) requests.
    pub path_style: bool,
    /// Time allowed for one request, from sending it to the last byte of the answer.
    pub request_timeout: Duration,
    /// Retries of a request after a transient failure.
    pub max_retries: u32,
    /// Requests in flight at once, over all callers.
    pub max_concurrency: usize,
    /// Objects live under this prefix in the bucket (`""`, or `a/b` — stored as
    /// `a/b/KEY`).
    pub prefix: String,
}

/// Defaults of [`S3Config`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_RETRIES: u32 = 4;
pub const DEFAULT_MAX_CONCURRENCY: usize = 32;
/// The region used when neither the URL nor `AWS_REGION`/`AWS_DEFAULT_REGION` gives one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Range positions above this are not sent (no object is that big; servers refuse
/// numbers that do not fit their integer types).
const MAX_RANGE_POS: u64 = 1 << 52;
/// Time allowed to open a connection (capped by the request timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const URL_FORMS: &str = "use http(s)://HOST[:PORT]/BUCKET[/PREFIX] (path-style, any S3-compatible server), https://BUCKET.s3.REGION.amazonaws.com[/PREFIX] or s3://BUCKET[/PREFIX] (AWS)";

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key", &set(&self.access_key))
            .field("secret_key", &set(&self.secret_key))
            .field("path_style", &self.path_style)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("max_concurrency", &self.max_concurrency)
            .finish()
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3Config {
    /// A configuration for `bucket` at `endpoint` (`None`: AWS) with the defaults:
    /// region from `AWS_REGION`/`AWS_DEFAULT_REGION` or `us-east-1`, no explicit keys,
    /// path-style for custom endpoints.
    pub fn new(endpoint: Option<&str>, bucket: &str) -> S3Config {
        S3Config {
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
            bucket: bucket.to_string(),
            region: env_nonempty("AWS_REGION")
                .or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| DEFAULT_REGION.to_string()),
            access_key: None,
            secret_key: None,
            path_style: endpoint.is_some(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            prefix: String::new(),
        }
    }

    /// Parses a bucket URL:
    /// - `http(s)://HOST[:PORT]/BUCKET[/PREFIX]`: an S3-compatible server (MinIO, Ceph
    ///   RGW, s3s-fs, ...), path-style, endpoint `http(s)://HOST[:PORT]`;
    /// - `https://BUCKET.s3.REGION.amazonaws.com[/PREFIX]` (also `s3-REGION`, and the
    ///   path-style `https://s3.REGION.amazonaws.com/BUCKET[/PREFIX]`): AWS S3 in that
    ///   region;
    /// - `s3://BUCKET[/PREFIX]`: AWS S3, region from `AWS_REGION`/`AWS_DEFAULT_REGION`
    ///   or `us-east-1`.
    ///
    /// Keys in the URL (`http://KEY:SECRET@host/...`) are refused: the URL is stored in
    /// the volume's settings.
    pub fn from_bucket_url(url: &str) -> Result<S3Config, StoreError> {
        let bad = |why: &str| {
            StoreError::Config(format!("bad S3 bucket URL '{url}': {why}; {URL_FORMS}"))
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad("no scheme"));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            // Do not echo the URL: it holds a secret.
            return Err(StoreError::Config(
                "the S3 bucket URL must not contain access keys (they would be stored in the volume settings): give them with --access-key/--secret-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".to_string(),
            ));
        }
        if rest.contains(['?', '#']) || rest.contains(char::is_whitespace) {
            return Err(bad("no query, fragment or spaces allowed"));
        }
        if authority.is_empty() {
            return Err(bad("no host or bucket"));
        }
        let path = path.trim_matches('/');
        let (first, after) = path.split_once('/').unwrap_or((path, ""));
        let mut config = match scheme {
            "s3" => {
                let mut c = S3Config::new(None, authority);
                c.prefix = path.to_string();
                c
            }
            "http" | "https" => {
                let host = match authority.strip_prefix('[') {
                    Some(v6) => v6.split(']').next().unwrap_or(v6),
                    None => authority.split(':').next().unwrap_or(authority),
                };
                let host = host.to_ascii_lowercase();
                if let Some(aws) = host.strip_suffix(".amazonaws.com") {
                    let labels: Vec<&str> = aws.split('.').collect();
                    let Some(i) = labels
                        .iter()
                        .position(|l| *l == "s3" || l.starts_with("s3-"))
                    else {
                        return Err(bad("not an S3 host name"));
                    };
                    let region = match labels[i].strip_prefix("s3-") {
                        Some(r) => Some(r.to_string()),
                        None => labels
                            .get(i + 1)
                            .filter(|r| **r != "dualstack")
                            .map(|r| r.to_string()),
                    };
                    let host_bucket = labels[..i].join(".");
                    let mut c = if host_bucket.is_empty() {
                        let mut c = S3Config::new(None, first);
                        c.prefix = after.to_string();
                        c
                    } else {
                        let mut c = S3Config::new(None, &host_bucket);
                        c.prefix = path.to_string();
                        c
                    };
                    if let Some(r) = region {
                        c.region = r;
                    }
                    // A bucket name with dots does not match the wildcard certificate
                    // of virtual-hosted names.
                    c.path_style = c.bucket.contains('.');
                    c
                } else {
                    let mut c = S3Config::new(Some(&format!("{scheme}://{authority}")), first);
                    c.prefix = after.to_string();
                    c
                }
            }
            other => return Err(bad(&format!("unknown scheme '{other}'"))),
        };
        config.prefix = config.prefix.trim_matches('/').to_string();
        if config.bucket.is_empty() {
            return Err(bad("no bucket name"));
        }
        if !config.prefix.is_empty() && validate_key(&config.prefix).is_err() {
            return Err(bad("the prefix after the bucket must be a plain path"));
        }
        Ok(config)
    }

    /// `http://host:port/bucket/prefix` for path-style endpoints, else
    /// `s3://bucket/prefix at ENDPOINT` or `s3://bucket/prefix (AWS region R)`. No keys.
    pub fn describe(&self) -> String {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("/{}", self.prefix)
        };
        match &self.endpoint {
            Some(e) if self.path_style => format!("{e}/{}{prefix}", self.bucket),
            Some(e) => format!("s3://{}{prefix} at {e}", self.bucket),
            None => format!("s3://{}{prefix} (AWS region {})", self.bucket, self.region),
        }
    }

    /// The endpoint for messages: the URL, or "AWS S3 (region R)".
    fn endpoint_name(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("AWS S3 (region {})", self.region),
        }
    }

    fn is_aws(&self) -> bool {
        match &self.endpoint {
            None => true,
            Some(e) => {
                let host = e.split("://").nth(1).unwrap_or(e);
                let host = host.split([':', '/']).next().unwrap_or(host);
                host.ends_with(".amazonaws.com")
            }
        }
    }
}

/// What error messages need to know, shared with the request tasks.
struct Ctx {
    endpoint: String,
    bucket: String,
    region: String,
    request_timeout: Duration,
    /// Strings never to show (secret key, session token).
    secrets: Mutex<Vec<String>>,
}

impl Ctx {
    fn redact(&self, mut s: String) -> String {
        for secret in self
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if secret.len() >= 4 {
                s = s.replace(secret.as_str(), "<redacted>");
            }
        }
        s
    }

    fn missing_bucket(&self) -> StoreError {
        StoreError::Config(format!(
            "the bucket '{}' does not exist at {}: create it first (ferrofs does not create buckets), or check the bucket name",
            self.bucket, self.endpoint
        ))
    }

    /// Turns an SDK error into a [`StoreError`] that says what to do.
    fn map<E>(&self, op: &'static str, key: &str, err: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let chain = self.redact(error_chain(&err));
        let unavailable = |kind, detail: String| StoreError::unavailable(op, key, kind, detail);
        match &err {
            SdkError::ServiceError(_) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                self.service(op, key, status, err.code(), err.message())
            }
            SdkError::TimeoutError(_) => unavailable(
                TransientKind::Timeout,
                format!("{} did not answer in time ({chain})", self.endpoint),
            ),
            SdkError::DispatchFailure(d) if d.is_timeout() => unavailable(
                TransientKind::Connect,
                format!(
                    "could not connect to {}: timed out ({chain})",
                    self.endpoint
                ),
            ),
            SdkError::DispatchFailure(_) if chain.contains("TLS") || chain.contains("certificate") => {
                StoreError::Config(format!(
                    "the TLS connection to {} failed ({chain}): check that the endpoint speaks HTTPS and its certificate, or point AWS_CA_BUNDLE at the CA certificate that signed it",
                    self.endpoint
                ))
            }
            SdkError::DispatchFailure(_) if is_connect_failure(&err) => unavailable(
                TransientKind::Connect,
                format!(
                    "could not connect to {} ({chain}): is the S3 server running, and the endpoint right?",
                    self.endpoint
                ),
            ),
            SdkError::DispatchFailure(d) if d.is_user() => StoreError::Refused {
                op,
                key: key.to_string(),
                detail: format!("the request to {} could not be sent: {chain}", self.endpoint),
            },
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => unavailable(
                TransientKind::Connection,
                format!("the connection to {} failed: {chain}", self.endpoint),
            ),
            SdkError::ConstructionFailure(_) if chain.to_lowercase().contains("credential") => {
                StoreError::Auth(format!(
                    "no usable S3 credentials for {}: {chain}; give --access-key and --secret-key or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    self.endpoint
                ))
            }
            _ => StoreError::Refused {
                op,
                key: key.to_string(),
                detail: format!("cannot make the request to {}: {chain}", self.endpoint),
            },
        }
    }

    /// An error answer of the server.
    fn service(
        &self,
        op: &'static str,
        key: &str,
        status: Option<u16>,
        code: Option<&str>,
        message: Option<&str>,
    ) -> StoreError {
        let status = status.unwrap_or(0);
        let code = code.unwrap_or("");
        let what = {
            let mut w = format!("HTTP {status}");
            if !code.is_empty() {
                w += &format!(" {code}");
            }
            if let Some(m) = message.filter(|m| !m.is_empty()) {
                w += &format!(": {m}");
            }
            self.redact(w)
        };
        let transient = |kind| StoreError::unavailable(op, key, kind, what.clone());
        match code {
            "NoSuchKey" | "NotFound" if op != "list" => return StoreError::NotFound(key.to_string()),
            "NoSuchBucket" => return self.missing_bucket(),
            "InvalidBucketName" => {
                return StoreError::Config(format!(
                    "{} refused the bucket name '{}' ({what}): S3 bucket names are 3 to 63 characters of a-z, 0-9, '.' and '-'",
                    self.endpoint, self.bucket
                ))
            }
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken"
            | "TokenRefreshRequired" | "InvalidSecurity" | "InvalidClientTokenId" | "NotSignedUp" => {
                return StoreError::Auth(format!(
                    "the S3 server at {} rejected the access keys ({what}): check --access-key/--secret-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                    self.endpoint
                ))
            }
            "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => {
                return StoreError::Auth(format!(
                    "access to bucket '{}' at {} was denied ({what}): the keys lack the permission to {op} objects there",
                    self.bucket, self.endpoint
                ))
            }
            "PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException" => {
                return StoreError::Config(format!(
                    "the bucket '{}' is not in region {} ({what}): give its region in the bucket URL (https://BUCKET.s3.REGION.amazonaws.com) or AWS_REGION",
                    self.bucket, self.region
                ))
            }
            "SlowDown" | "Throttling" | "ThrottlingException" | "ThrottledException"
            | "RequestThrottled" | "RequestThrottledException" | "TooManyRequests"
            | "TooManyRequestsException" | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException" | "BandwidthLimitExceeded"
            | "EC2ThrottledException" => return transient(TransientKind::Throttle),
            "RequestTimeout" | "RequestTimeoutException" | "PriorRequestNotComplete" => {
                return transient(TransientKind::Timeout)
            }
            // The bytes were damaged on the way: sending them again may work.
            "BadDigest" | "XAmzContentSHA256Mismatch" | "IncompleteBody" => {
                return transient(TransientKind::Connection)
            }
            "InternalError" | "ServiceUnavailable" => return transient(TransientKind::ServerError),
            _ => {}
        }
        match status {
            429 => transient(TransientKind::Throttle),
            500..=599 => transient(TransientKind::ServerError),
            404 if op != "list" => StoreError::NotFound(key.to_string()),
            301 => StoreError::Config(format!(
                "the bucket '{}' is not in region {} ({what}): give its region in the bucket URL or AWS_REGION",
                self.bucket, self.region
            )),
            403 => StoreError::Auth(format!(
                "the S3 server at {} refused the request ({what}): the access keys were rejected or lack permission for bucket '{}'",
                self.endpoint, self.bucket
            )),
            _ => StoreError::Refused {
                op,
                key: key.to_string(),
                detail: format!("{} answered {what}", self.endpoint),
            },
        }
    }
}

/// An error and its sources, as one line.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let m = e.to_string();
        if !m.is_empty() && !s.contains(&m) {
            s += ": ";
            s += &m;
        }
        cur = e.source();
    }
    s
}

/// Whether the connection could not be made at all (refused, unreachable, DNS).
fn is_connect_failure(err: &(dyn StdError + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::NotFound
                    | K::AddrNotAvailable
                    | K::HostUnreachable
                    | K::NetworkUnreachable
            ) {
                return true;
            }
        }
        let m = e.to_string();
        if m.contains("(Connect)") || m.contains("dns error") || m.contains("failed to lookup") {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Base64 (standard alphabet, padded) of a few bytes.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Objects in an S3 bucket (see the module doc).
pub struct S3Store {
    /// `Some` until drop, which shuts it down without blocking.
    rt: Option<tokio::runtime::Runtime>,
    client: aws_sdk_s3::Client,
    ctx: Arc<Ctx>,
    /// "" or "PREFIX/".
    prefix: String,
    describe: String,
    limit: Arc<tokio::sync::Semaphore>,
    policy: RetryPolicy,
    rng: Mutex<SplitMix64>,
    counters: RetryCounters,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3Store({})", self.describe)
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The HTTP client for `endpoint`: plain HTTP without proxies for `http://`, rustls
/// for `https://` (with the `tls` feature).
fn http_client(config: &S3Config) -> Result<SharedHttpClient, StoreError> {
    let https = match &config.endpoint {
        None => true,
        Some(e) if e.starts_with("https://") => true,
        Some(e) if e.starts_with("http://") => false,
        Some(e) => {
            return Err(StoreError::Config(format!(
                "the S3 endpoint '{e}' must start with http:// or https://"
            )))
        }
    };
    if !https {
        return Ok(aws_smithy_http_client::Builder::new().build_http());
    }
    https_client(config)
}

#[cfg(feature = "tls")]
fn https_client(_config: &S3Config) -> Result<SharedHttpClient, StoreError> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let mut trust = TrustStore::default();
    if let Some(path) = env_nonempty("AWS_CA_BUNDLE") {
        match std::fs::read(&path) {
            Ok(pem) => trust = trust.with_pem_certificate(pem),
            Err(e) => {
                tracing::warn!(%path, error = %e, "cannot read AWS_CA_BUNDLE: using the system's CA certificates only")
            }
        }
    }
    let ctx = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| StoreError::Config(format!("cannot set up TLS: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(ctx)
        .build_https())
}

#[cfg(not(feature = "tls"))]
fn https_client(config: &S3Config) -> Result<SharedHttpClient, StoreError> {
    Err(StoreError::Config(format!(
        "{} needs HTTPS, but this build of ferrofs has no TLS support: rebuild with the `tls` feature of ferrofs-s3-backend, or use an http:// endpoint",
        config.endpoint_name()
    )))
}

/// Credentials: explicit keys, else the environment, else a chain (see the module
/// doc). Returns the provider, resolved once so that a missing key is an error now.
async fn credentials(
    config: &S3Config,
    http: SharedHttpClient,
    ctx: &Ctx,
) -> Result<SharedCredentialsProvider, StoreError> {
    let pair_err = |what: &str| {
        StoreError::Config(format!(
            "{what}: give both the access key and the secret key, or neither (then AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS profile files are used)"
        ))
    };
    let provider = match (&config.access_key, &config.secret_key) {
        (Some(a), Some(s)) => {
            ctx.secrets.lock().unwrap().push(s.clone());
            return Ok(SharedCredentialsProvider::new(Credentials::new(
                a,
                s,
                None,
                None,
                "ferrofs-options",
            )));
        }
        (Some(_), None) => return Err(pair_err("an S3 access key was given without a secret key")),
        (None, Some(_)) => {
            return Err(pair_err("an S3 secret key was given without an access key"))
        }
        (None, None) => {
            match (
                env_nonempty("AWS_ACCESS_KEY_ID"),
                env_nonempty("AWS_SECRET_ACCESS_KEY"),
            ) {
                (Some(a), Some(s)) => {
                    let token = env_nonempty("AWS_SESSION_TOKEN");
                    let mut secrets = ctx.secrets.lock().unwrap();
                    secrets.push(s.clone());
                    secrets.extend(token.clone());
                    return Ok(SharedCredentialsProvider::new(Credentials::new(
                        a,
                        s,
                        token,
                        None,
                        "environment",
                    )));
                }
                (Some(_), None) => {
                    return Err(pair_err(
                        "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
                    ))
                }
                (None, Some(_)) => {
                    return Err(pair_err(
                        "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
                    ))
                }
                (None, None) => {
                    // The chain's providers make requests (STS, and on AWS the
                    // container and instance metadata endpoints) with our client.
                    let pc = aws_config::provider_config::ProviderConfig::without_region()
                        .with_http_client(http)
                        .with_region(Some(Region::new(config.region.clone())));
                    if config.is_aws() {
                        SharedCredentialsProvider::new(
                            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                                .configure(pc)
                                .build()
                                .await,
                        )
                    } else {
                        SharedCredentialsProvider::new(
                            aws_config::profile::ProfileFileCredentialsProvider::builder()
                                .configure(&pc)
                                .build(),
                        )
                    }
                }
            }
        }
    };
    match provider.provide_credentials().await {
        Ok(c) => {
            let mut secrets = ctx.secrets.lock().unwrap();
            secrets.push(c.secret_access_key().to_string());
            secrets.extend(c.session_token().map(str::to_string));
            Ok(provider)
        }
        Err(e) => Err(StoreError::Auth(ctx.redact(format!(
            "no S3 credentials for {}: give --access-key and --secret-key, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put keys in ~/.aws/credentials ({})",
            ctx.endpoint,
            error_chain(&e)
        )))),
    }
}

impl S3Store {
    /// Sets up the client (credentials are resolved now; no request is made to the
    /// bucket). See [`S3Store::check_bucket`].
    pub fn new(config: S3Config) -> Result<S3Store, StoreError> {
        if config.bucket.is_empty() {
            return Err(StoreError::Config(
                "the S3 bucket name is empty".to_string(),
            ));
        }
        if config.max_concurrency == 0 {
            return Err(StoreError::Config(
                "the S3 store needs a max_concurrency of at least 1".to_string(),
            ));
        }
        if config.request_timeout.is_zero() {
            return Err(StoreError::Config(
                "the S3 request timeout must be more than 0".to_string(),
            ));
        }
        let ctx = Arc::new(Ctx {
            endpoint: config.endpoint_name(),
            bucket: config.bucket.clone(),
            region: config.region.clone(),
            request_timeout: config.request_timeout,
            secrets: Mutex::new(Vec::new()),
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferrofs-s3")
            .enable_all()
            .build()
            .map_err(|e| StoreError::io("start the S3 client runtime", "", e))?;
        let setup = || -> Result<_, StoreError> {
            let http = http_client(&config)?;
            let (http2, ctx2, config2) = (http.clone(), ctx.clone(), config.clone());
            // On the runtime (the chain's providers need it); from any thread.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            rt.spawn(async move {
                let found = tokio::time::timeout(
                    Duration::from_secs(60),
                    credentials(&config2, http2, &ctx2),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Auth(format!(
                        "looking for S3 credentials for {} took over a minute: give --access-key and --secret-key",
                        ctx2.endpoint
                    )))
                });
                let _ = tx.send(found);
            });
            let creds = rx.recv().map_err(|_| {
                StoreError::Config("resolving S3 credentials failed (the task panicked)".into())
            })??;
            Ok((http, creds))
        };
        let (http, creds) = match setup() {
            Ok(v) => v,
            Err(e) => {
                // Dropping a runtime blocks, which panics inside another runtime.
                rt.shutdown_background();
                return Err(e);
            }
        };
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(creds)
            .http_client(http)
            .force_path_style(config.path_style)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT.min(config.request_timeout))
                    .build(),
            )
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if let Some(e) = &config.endpoint {
            b = b.endpoint_url(e);
        }
        let client = aws_sdk_s3::Client::from_conf(b.build());
        let prefix = if config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", config.prefix.trim_matches('/'))
        };
        Ok(S3Store {
            rt: Some(rt),
            client,
            ctx,
            prefix,
            describe: config.describe(),
            limit: Arc::new(tokio::sync::Semaphore::new(config.max_concurrency)),
            policy: RetryPolicy {
                max_retries: config.max_retries,
                ..RetryPolicy::default()
            },
            rng: Mutex::new(SplitMix64::new(SplitMix64::entropy_seed())),
            counters: RetryCounters::default(),
        })
    }

    /// [`S3Store::new`], then [`S3Store::check_bucket`].
    pub fn open(config: S3Config) -> Result<S3Store, StoreError> {
        let store = S3Store::new(config)?;
        store.check_bucket()?;
        Ok(store)
    }

    /// Lists one key of the bucket: fails clearly when the endpoint cannot be reached,
    /// the keys are rejected or the bucket does not exist.
    pub fn check_bucket(&self) -> Result<(), StoreError> {
        self.list("", "", 1).map(|_| ())
    }

    /// Requests made, retries, operations given up.
    pub fn stats(&self) -> RetryStats {
        self.counters.snapshot()
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one request on the runtime under the concurrency limit and the request
    /// timeout, waiting for it on this thread.
    fn once<T, Fut>(&self, op: &'static str, key: &str, fut: Fut) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let rt = self.rt.as_ref().expect("runtime lives until drop");
        let limit = self.limit.clone();
        let ctx = self.ctx.clone();
        let key2 = key.to_string();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            // The semaphore is never closed.
            let _permit = limit.acquire_owned().await;
            let timeout = ctx.request_timeout;
            let r = match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::unavailable(
                    op,
                    &key2,
                    TransientKind::Timeout,
                    format!(
                        "no complete answer from {} within {timeout:?}",
                        ctx.endpoint
                    ),
                )),
            };
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::unavailable(
                op,
                key,
                TransientKind::Connection,
                "the S3 request task failed",
            ))
        })
    }

    /// Runs `make()`'s request with retries.
    fn call<T, F, Fut>(&self, op: &'static str, key: &str, make: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.policy
            .run(&ThreadSleeper, &self.rng, &self.counters, || {
                self.once(op, key, make())
            })
    }
}

impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        let crc = base64(&crc32c::crc32c(&data).to_be_bytes());
        self.call("put", key, || {
            let (client, ctx, bucket) = (
                self.client.clone(),
                self.ctx.clone(),
                self.ctx.bucket.clone(),
            );
            let (full, key, crc) = (self.full_key(key), key.to_string(), crc.clone());
            // Shares the bytes: a retry sends them again without a copy.
            let body = ByteStream::from(data.clone());
            let len = data.len() as i64;
            async move {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(full)
                    .content_length(len)
                    .checksum_crc32_c(crc)
                    .body(body)
                    // The body is covered by the crc32c the server verifies (and by
                    // TLS on https), so it is not hashed again for the signature:
                    // SHA-256 of every byte was a quarter of a mount's CPU.
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| ctx.map("put", &key, e))
            }
        })
    }

    fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>, StoreError> {
        validate_key(key)?;
        if len == Some(0) || offset > MAX_RANGE_POS {
            // No HTTP range is empty, and no object is that big: only check that the
            // object exists.
            return match self.head(key)? {
                Some(_) => Ok(Vec::new()),
                None => Err(StoreError::NotFound(key.to_string())),
            };
        }
        let range = match len {
            None if offset == 0 => None,
            None => Some(format!("bytes={offset}-")),
            Some(n) => match offset.checked_add(n - 1) {
                // Servers refuse huge numbers (s3s: > i64): leave the end open.
                Some(last) if last <= MAX_RANGE_POS => Some(format!("bytes={offset}-{last}")),
                _ if offset == 0 => None,
                _ => Some(format!("bytes={offset}-")),
            },
        };
        self.call("get", key, || {
            let (client, ctx, bucket) = (
                self.client.clone(),
                self.ctx.clone(),
                self.ctx.bucket.clone(),
            );
            let (full, key, range) = (self.full_key(key), key.to_string(), range.clone());
            async move {
                let asked_range = range.is_some();
                let out = match client
                    .get_object()
                    .bucket(bucket)
                    .key(full)
                    .set_range(range)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) => {
                        let status = e.raw_response().map(|r| r.status().as_u16());
                        let is_416 = status == Some(416) || e.code() == Some("InvalidRange");
                        // A range that starts at or past the end: nothing there.
                        return if is_416 && asked_range {
                            Ok(Vec::new())
                        } else {
                            Err(ctx.map("get", &key, e))
                        };
                    }
                };
                let whole = asked_range && out.content_range().is_none();
                let data = out.body.collect().await.map_err(|e| {
                    StoreError::unavailable(
                        "get",
                        &key,
                        TransientKind::Connection,
                        ctx.redact(format!(
                            "reading the answer from {} failed: {}",
                            ctx.endpoint,
                            error_chain(&e)
                        )),
                    )
                })?;
                // One copy at most (none for a single segment). `to_vec` would collect
                // byte by byte: that was 40% of a mount's CPU on sequential reads.
                let mut data = Vec::from(data.into_bytes());
                if whole {
                    // The server ignored the Range header: cut the range out here.
                    let start = (offset as usize).min(data.len());
                    let end = len.map_or(data.len(), |n| {
                        start
                            .saturating_add(n.min(usize::MAX as u64) as usize)
                            .min(data.len())
                    });
                    data = data[start..end].to_vec();
                }
                Ok(data)
            }
        })
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        validate_key(key)?;
        self.call("head", key, || {
            let (client, ctx, bucket) = (
                self.client.clone(),
                self.ctx.clone(),
                self.ctx.bucket.clone(),
            );
            let (full, key) = (self.full_key(key), key.to_string());
            async move {
                match client.head_object().bucket(bucket).key(full).send().await {
                    Ok(out) => Ok(Some(ObjectInfo {
                        size: out.content_length().unwrap_or(0).max(0) as u64,
                        modified: out.last_modified().map(|t| t.secs().max(0) as u64),
                        key,
                    })),
                    Err(e) => match ctx.map("head", &key, e) {
                        StoreError::NotFound(_) => Ok(None),
                        e => Err(e),
                    },
                }
            }
        })
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.call("delete", key, || {
            let (client, ctx, bucket) = (
                self.client.clone(),
                self.ctx.clone(),
                self.ctx.bucket.clone(),
            );
            let (full, key) = (self.full_key(key), key.to_string());
            async move {
                match client.delete_object().bucket(bucket).key(full).send().await {
                    Ok(_) => Ok(()),
                    Err(e) => match ctx.map("delete", &key, e) {
                        StoreError::NotFound(_) => Ok(()),
                        e => Err(e),
                    },
                }
            }
        })
    }

    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let full_prefix = self.full_key(prefix);
        let full_start = (!start_after.is_empty()).then(|| self.full_key(start_after));
        let mut token: Option<String> = None;
        loop {
            let want = (limit - out.len()).min(1000) as i32;
            let (objects, next) = self.call("list", prefix, || {
                let (client, ctx, bucket) = (
                    self.client.clone(),
                    self.ctx.clone(),
                    self.ctx.bucket.clone(),
                );
                let (p, s, t, key) = (
                    full_prefix.clone(),
                    full_start.clone(),
                    token.clone(),
                    prefix.to_string(),
                );
                async move {
                    let page = client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(p)
                        .set_start_after(s)
                        .set_continuation_token(t)
                        .max_keys(want)
                        .send()
                        .await
                        .map_err(|e| ctx.map("list", &key, e))?;
                    let objects: Vec<(String, u64, Option<u64>)> = page
                        .contents()
                        .iter()
                        .filter_map(|o| {
                            let modified = o.last_modified().map(|t| t.secs().max(0) as u64);
                            Some((
                                o.key()?.to_string(),
                                o.size().unwrap_or(0).max(0) as u64,
                                modified,
                            ))
                        })
                        .collect();
                    let next = if page.is_truncated() == Some(true) {
                        page.next_continuation_token().map(str::to_string)
                    } else {
                        None
                    };
                    Ok((objects, next))
                }
            })?;
            for (k, size, modified) in objects {
                // Only our objects: under the prefix, and valid keys (not, e.g., the
                // "dir/" markers other tools make).
                match k.strip_prefix(&self.prefix) {
                    Some(k)
                        if validate_key(k).is_ok() && k.starts_with(prefix) && k > start_after =>
                    {
                        out.push(ObjectInfo {
                            key: k.to_string(),
                            size,
                            modified,
                        })
                    }
                    _ => {}
                }
            }
            match next {
                Some(t) if out.len() < limit => token = Some(t),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0xfc]), "//79/A==");
    }

    #[test]
    fn bucket_urls() {
        let c = S3Config::from_bucket_url("http://127.0.0.1:9000/mybucket").unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str(), c.path_style),
            ("mybucket", "", true)
        );
        assert_eq!(c.describe(), "http://127.0.0.1:9000/mybucket");

        let c = S3Config::from_bucket_url("https://minio.lan/b/vol/one/").unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("https://minio.lan"));
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("b", "vol/one"));
        assert_eq!(c.describe(), "https://minio.lan/b/vol/one");

        let c = S3Config::from_bucket_url("http://[::1]:9000/b").unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://[::1]:9000"));

        let c = S3Config::from_bucket_url("https://my-b.s3.eu-west-1.amazonaws.com/pre").unwrap();
        assert_eq!(c.endpoint, None);
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str(), c.region.as_str()),
            ("my-b", "pre", "eu-west-1")
        );
        assert!(!c.path_style);
        assert_eq!(c.describe(), "s3://my-b/pre (AWS region eu-west-1)");

        let c = S3Config::from_bucket_url("https://my.b.s3-us-west-2.amazonaws.com").unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.region.as_str(), c.path_style),
            ("my.b", "us-west-2", true)
        );

        let c = S3Config::from_bucket_url("https://s3.ap-south-1.amazonaws.com/bk/x").unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str(), c.region.as_str()),
            ("bk", "x", "ap-south-1")
        );

        let c = S3Config::from_bucket_url("s3://bk/a/b").unwrap();
        assert_eq!(
            (c.endpoint.as_deref(), c.bucket.as_str(), c.prefix.as_str()),
            (None, "bk", "a/b")
        );

        for bad in [
            "bucket",
            "ftp://h/b",
            "http://h",
            "http://h/",
            "s3://",
            "http://h/b?x=1",
            "http://h/b/../c",
            "https://x.amazonaws.com/b",
        ] {
            let e = S3Config::from_bucket_url(bad).unwrap_err();
            assert!(e.to_string().contains("s3://BUCKET"), "{bad}: {e}");
        }
        let e = S3Config::from_bucket_url("http://AKIA:sekrit@h/b").unwrap_err();
        assert!(!e.to_string().contains("sekrit"), "{e}");
        assert!(e.to_string().contains("--access-key"), "{e}");
    }

    #[test]
    fn config_debug_hides_keys() {
        let mut c = S3Config::new(Some("http://h:1"), "b");
        c.access_key = Some("AKIDEXAMPLE".into());
        c.secret_key = Some("wJalrXUtnFEMI".into());
        let d = format!("{c:?}");
        assert!(
            !d.contains("AKIDEXAMPLE") && !d.contains("wJalrXUtnFEMI"),
            "{d}"
        );
        assert!(d.contains("<set>"), "{d}");
    }
}
