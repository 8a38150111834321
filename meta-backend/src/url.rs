//! META-URL parsing: which metadata engine a volume uses and where it lives.

use crate::error::MetaError;
use crate::raft::RaftClient;
use crate::sled_kv::SledKv;
use ferrofs_core::kv::Kv;
use ferrofs_core::replica::{OptimisticKv, Remote};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A parsed META-URL.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MetaUrl {
    /// `sled://PATH`: an embedded sled database in directory `PATH` (made absolute).
    Sled(PathBuf),
    /// `raft://[:SECRET@]HOST:PORT,HOST:PORT,...[?tls-ca=CA.pem]`: a cluster of
    /// `ferrofs meta-server` replicas. The secret may come from `FERROFS_META_SECRET`
    /// instead (it does not show in `ps` that way). With `tls-ca` (or
    /// `FERROFS_META_TLS_CA`) the client speaks TLS and trusts servers that CA vouches for.
    Raft {
        addrs: Vec<String>,
        secret: Option<String>,
        tls_ca: Option<PathBuf>,
    },
}

/// Where a client takes the meta servers' secret from when the URL has none.
pub const SECRET_ENV: &str = "FERROFS_META_SECRET";
/// Where a client takes the meta servers' CA file from when the URL has none.
pub const TLS_CA_ENV: &str = "FERROFS_META_TLS_CA";

/// Schemes people are likely to try that ferrofs does not speak (yet).
const LATER: &[&str] = &[
    "redis", "rediss", "tikv", "etcd", "mysql", "postgres", "sqlite3",
];

impl MetaUrl {
    /// Parses `sled:///abs/dir` or `sled://rel/dir` (relative to the current directory).
    pub fn parse(s: &str) -> Result<MetaUrl, MetaError> {
        let bad = |reason: String| MetaError::BadUrl {
            url: s.to_string(),
            reason,
        };
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(bad("missing scheme (expected SCHEME://...)".into()));
        };
        match scheme {
            "sled" => {
                if rest.is_empty() {
                    return Err(bad("the sled directory is missing".into()));
                }
                // Absolute now, so that a later change of directory (daemonizing) does
                // not move the database.
                let path = std::path::absolute(rest)
                    .map_err(|e| bad(format!("cannot resolve path '{rest}': {e}")))?;
                Ok(MetaUrl::Sled(path))
            }
            "raft" => {
                let (rest, tls_ca) = match rest.split_once('?') {
                    None => (rest, None),
                    Some((hosts, query)) => {
                        let mut ca = None;
                        for kv in query.split('&').filter(|q| !q.is_empty()) {
                            match kv.split_once('=') {
                                Some(("tls-ca", f)) if !f.is_empty() => {
                                    let f = std::path::absolute(f).map_err(|e| {
                                        bad(format!("cannot resolve path '{f}': {e}"))
                                    })?;
                                    ca = Some(f);
                                }
                                _ => {
                                    return Err(bad(format!(
                                        "unknown option '{kv}' (raft:// takes ?tls-ca=FILE)"
                                    )))
                                }
                            }
                        }
                        (hosts, ca)
                    }
                };
                let (secret, rest) = match rest.rsplit_once('@') {
                    Some((user, hosts)) => {
                        let secret = user.strip_prefix(':').unwrap_or(user);
                        if secret.is_empty() {
                            return Err(bad("the secret before '@' is empty".into()));
                        }
                        (Some(secret.to_string()), hosts)
                    }
                    None => (None, rest),
                };
                let addrs: Vec<String> = rest
                    .trim_end_matches('/')
                    .split(',')
                    .map(|a| a.trim().to_string())
                    .collect();
                for a in &addrs {
                    let ok = a
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                    if !ok {
                        return Err(bad(format!("'{a}' is not HOST:PORT")));
                    }
                }
                Ok(MetaUrl::Raft {
                    addrs,
                    secret,
                    tls_ca,
                })
            }
            s if LATER.contains(&s) => Err(bad(format!("the {s}:// engine is not supported yet"))),
            s => Err(bad(format!("unknown scheme '{s}'"))),
        }
    }

    /// Opens the engine. With `create`, a missing database is made (by `format`);
    /// without, a missing one is an error telling the user to format first.
    pub fn open(&self, create: bool) -> Result<Arc<dyn Kv>, MetaError> {
        open(self, create)
    }
}

impl fmt::Display for MetaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaUrl::Sled(p) => write!(f, "sled://{}", p.display()),
            // The secret is never shown.
            MetaUrl::Raft {
                addrs,
                secret,
                tls_ca,
            } => {
                write!(
                    f,
                    "raft://{}{}",
                    if secret.is_some() { ":****@" } else { "" },
                    addrs.join(",")
                )?;
                if let Some(ca) = tls_ca {
                    write!(f, "?tls-ca={}", ca.display())?;
                }
                Ok(())
            }
        }
    }
}

/// Opens the engine named by `url` (see [`MetaUrl::open`]).
pub fn open(url: &MetaUrl, create: bool) -> Result<Arc<dyn Kv>, MetaError> {
    match url {
        MetaUrl::Sled(dir) => Ok(Arc::new(SledKv::open_with(dir, create)?)),
        MetaUrl::Raft { addrs, .. } => {
            let client = url.raft_client().expect("a raft URL")?;
            open_raft(addrs, client)
        }
    }
}

impl MetaUrl {
    /// A client of the meta-server cluster (`None`: not a raft:// URL), with the
    /// secret and the TLS CA from the URL or the environment.
    pub fn raft_client(&self) -> Option<Result<RaftClient, MetaError>> {
        let MetaUrl::Raft {
            addrs,
            secret,
            tls_ca,
        } = self
        else {
            return None;
        };
        let secret = secret
            .clone()
            .or_else(|| std::env::var(SECRET_ENV).ok())
            .unwrap_or_default();
        let mut client = RaftClient::new(addrs.clone()).secret(secret.as_bytes());
        let ca = tls_ca
            .clone()
            .or_else(|| std::env::var_os(TLS_CA_ENV).map(PathBuf::from));
        if let Some(ca) = ca {
            match crate::raft::tls::client_config(&ca) {
                Ok(tls) => client = client.tls(tls),
                Err(reason) => {
                    return Some(Err(MetaError::BadUrl {
                        url: self.to_string(),
                        reason,
                    }))
                }
            }
        }
        Some(Ok(client))
    }
}

/// The optimistic client over a meta-server cluster, once a leader answered.
fn open_raft(addrs: &[String], client: RaftClient) -> Result<Arc<dyn Kv>, MetaError> {
    let probe = client.clone().patience(std::time::Duration::from_secs(15));
    match probe.get(b"setting", true) {
        Ok(_) => {}
        Err(ferrofs_core::Errno::EACCES) => {
            return Err(MetaError::Denied {
                servers: addrs.join(","),
            })
        }
        Err(_) => {
            return Err(MetaError::Unreachable {
                servers: addrs.join(","),
            })
        }
    }
    // A client id no other client uses: 64 random bits (the replicas key exactly-once
    // records by it).
    let id = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        h.finish() | 1
    };
    Ok(Arc::new(OptimisticKv::new(client, id, 1)))
}

/// A client for the change feed of the meta servers at `url` (`raft://` only: other
/// clients may change what this one caches), whose calls give up after `patience`
/// without an answer. `None` for the embedded engine, which one process opens alone.
pub fn feed_client(url: &MetaUrl, patience: std::time::Duration) -> Option<RaftClient> {
    // A bad TLS CA file has failed the mount's open already.
    url.raft_client()?.ok().map(|c| c.patience(patience))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> String {
        match MetaUrl::parse(s) {
            Err(e @ MetaError::BadUrl { .. }) => e.to_string(),
            other => panic!("{s}: expected BadUrl, got {other:?}"),
        }
    }

    #[test]
    fn sled_urls() {
        assert_eq!(
            MetaUrl::parse("sled:///var/lib/ferrofs").unwrap(),
            MetaUrl::Sled("/var/lib/ferrofs".into())
        );
        let rel = MetaUrl::parse("sled://meta/db").unwrap();
        let MetaUrl::Sled(p) = &rel else {
            panic!("{rel:?}")
        };
        assert!(p.is_absolute() && p.ends_with("meta/db"), "{p:?}");
        assert_eq!(rel.to_string(), format!("sled://{}", p.display()));
    }

    #[test]
    fn bad_urls_say_what_is_supported() {
        for (url, want) in [
            ("sled://", "missing"),
            ("/var/lib/x", "missing scheme"),
            ("raft://a:1,b", "not HOST:PORT"),
            ("redis://localhost/1", "not supported yet"),
            ("ftp://x", "unknown scheme 'ftp'"),
        ] {
            let r = reason(url);
            assert!(r.contains(want), "{url}: {r}");
            assert!(r.contains("sled:///path/to/dir"), "{url}: {r}");
        }
    }

    #[test]
    fn raft_urls() {
        let u = MetaUrl::parse("raft://10.0.0.1:7001,10.0.0.2:7001,node3:7001").unwrap();
        assert_eq!(
            u,
            MetaUrl::Raft {
                addrs: vec![
                    "10.0.0.1:7001".into(),
                    "10.0.0.2:7001".into(),
                    "node3:7001".into()
                ],
                secret: None,
                tls_ca: None,
            }
        );
        assert_eq!(
            u.to_string(),
            "raft://10.0.0.1:7001,10.0.0.2:7001,node3:7001"
        );
        let s = MetaUrl::parse("raft://:hunter2@a:1,b:2").unwrap();
        assert_eq!(
            s,
            MetaUrl::Raft {
                addrs: vec!["a:1".into(), "b:2".into()],
                secret: Some("hunter2".into()),
                tls_ca: None,
            }
        );
        assert_eq!(
            s.to_string(),
            "raft://:****@a:1,b:2",
            "the secret is not shown"
        );
        assert!(reason("raft://:@a:1").contains("secret"));
        let t = MetaUrl::parse("raft://:k@a:1,b:2?tls-ca=/etc/ferrofs/ca.pem").unwrap();
        assert_eq!(
            t,
            MetaUrl::Raft {
                addrs: vec!["a:1".into(), "b:2".into()],
                secret: Some("k".into()),
                tls_ca: Some("/etc/ferrofs/ca.pem".into()),
            }
        );
        assert_eq!(
            t.to_string(),
            "raft://:****@a:1,b:2?tls-ca=/etc/ferrofs/ca.pem"
        );
        assert!(reason("raft://a:1?tls=yes").contains("unknown option"));
        let missing = MetaUrl::parse("raft://a:1?tls-ca=/nonexistent.pem").unwrap();
        let e = missing.raft_client().unwrap().err().unwrap();
        assert!(e.to_string().contains("cannot read the CA file"), "{e}");
    }

    #[test]
    fn open_without_create_needs_format() {
        let dir = tempfile::tempdir().unwrap();
        let url = MetaUrl::Sled(dir.path().join("nope"));
        let err = url.open(false).err().unwrap();
        assert!(matches!(err, MetaError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("ferrofs format"));
        assert!(url.open(true).is_ok());
    }
}
