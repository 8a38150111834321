//! The S3 store and the environment: a plain-http endpoint works whatever CA-bundle and
//! proxy variables say (this machine and CI set AWS_CA_BUNDLE, and some tools fail
//! every call with it), and keys come from options, else the environment, else the
//! profile files. Its own test binary with one test, because it changes the
//! environment.

use ferrofs_s3_backend::testing::S3Server;
use ferrofs_s3_backend::{open_store, open_store_with, ObjectStore, StoreError, StoreOptions};

#[test]
fn http_endpoints_ignore_ca_bundle_and_proxy_variables() {
    // The only test in this binary: nothing else reads the environment meanwhile.
    for (k, v) in [
        ("AWS_CA_BUNDLE", "/nonexistent/ca-bundle.pem"),
        ("SSL_CERT_FILE", "/nonexistent/cert.pem"),
        ("SSL_CERT_DIR", "/nonexistent/certs"),
        ("HTTP_PROXY", "http://127.0.0.1:9"),
        ("http_proxy", "http://127.0.0.1:9"),
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
        ("ALL_PROXY", "http://127.0.0.1:9"),
        ("NO_PROXY", ""),
    ] {
        std::env::set_var(k, v);
    }
    let server = S3Server::start();
    let store = server.store("env").unwrap();
    store
        .put("a/b", ferrofs_s3_backend::Bytes::from_static(b"works"))
        .unwrap();
    assert_eq!(store.get("a/b", 1, Some(3)).unwrap(), b"ork");

    // Keys: without options, from the environment; without those, from the profile
    // files; without any, a clear error (and no request to an instance-metadata
    // address: the endpoint is not AWS).
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("HOME", home.path());
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
    ] {
        std::env::remove_var(k);
    }
    let url = server.bucket_url("env");
    let t = std::time::Instant::now();
    let e = open_store("s3", &url, false).unwrap_err();
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert!(matches!(e, StoreError::Auth(_)), "{e:?}");
    assert!(e.to_string().contains("no S3 credentials"), "{e}");
    assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");

    let creds = home.path().join("credentials");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.access_key(),
            server.secret_key()
        ),
    )
    .unwrap();
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &creds);
    let s = open_store("s3", &url, false).unwrap();
    assert_eq!(s.get("a/b", 0, None).unwrap(), b"works");
    std::env::remove_var("AWS_SHARED_CREDENTIALS_FILE");

    std::env::set_var("AWS_ACCESS_KEY_ID", server.access_key());
    let e = open_store("s3", &url, false).unwrap_err();
    assert!(
        e.to_string().contains("AWS_SECRET_ACCESS_KEY is set but")
            || e.to_string().contains("AWS_ACCESS_KEY_ID is set but"),
        "{e}"
    );
    std::env::set_var("AWS_SECRET_ACCESS_KEY", server.secret_key());
    let s = open_store("s3", &url, false).unwrap();
    assert_eq!(s.get("a/b", 0, None).unwrap(), b"works");
    // Explicit keys win over the environment.
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let e = open_store("s3", &url, false).unwrap_err();
    assert!(matches!(e, StoreError::Auth(_)), "{e:?}");
    let s = open_store_with("s3", &url, &server.options(), false).unwrap();
    assert_eq!(s.get("a/b", 0, None).unwrap(), b"works");
    let half = StoreOptions {
        access_key: Some(server.access_key().to_string()),
        ..StoreOptions::default()
    };
    let e = open_store_with("s3", &url, &half, false).unwrap_err();
    assert!(e.to_string().contains("without a secret key"), "{e}");
}
