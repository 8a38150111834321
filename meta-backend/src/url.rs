//! META-URL parsing: which metadata engine a volume uses and where it lives.

use crate::error::MetaError;
use crate::sled_kv::SledKv;
use ferrofs_core::kv::Kv;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A parsed META-URL.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MetaUrl {
    /// `sled://PATH`: an embedded sled database in directory `PATH` (made absolute).
    Sled(PathBuf),
}

/// Schemes people are likely to try that ferrofs does not speak (yet).
const LATER: &[&str] = &[
    "raft", "redis", "rediss", "tikv", "etcd", "mysql", "postgres", "sqlite3",
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
        }
    }
}

/// Opens the engine named by `url` (see [`MetaUrl::open`]).
pub fn open(url: &MetaUrl, create: bool) -> Result<Arc<dyn Kv>, MetaError> {
    match url {
        MetaUrl::Sled(dir) => Ok(Arc::new(SledKv::open_with(dir, create)?)),
    }
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
        let MetaUrl::Sled(p) = &rel;
        assert!(p.is_absolute() && p.ends_with("meta/db"), "{p:?}");
        assert_eq!(rel.to_string(), format!("sled://{}", p.display()));
    }

    #[test]
    fn bad_urls_say_what_is_supported() {
        for (url, want) in [
            ("sled://", "missing"),
            ("/var/lib/x", "missing scheme"),
            ("raft://a:1,b:2", "not supported yet"),
            ("redis://localhost/1", "not supported yet"),
            ("ftp://x", "unknown scheme 'ftp'"),
        ] {
            let r = reason(url);
            assert!(r.contains(want), "{url}: {r}");
            assert!(r.contains("sled:///path/to/dir"), "{url}: {r}");
        }
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
