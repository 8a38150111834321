//! Object key validation, shared by every store so that all of them accept exactly the
//! same keys (a key that works in memory must work on disk).

use crate::error::StoreError;

/// Prefix of the temporary files a local-directory store writes before renaming; a key
/// component may not use it, or its object would be hidden from listings.
pub(crate) const TMP_PREFIX: &str = ".tmp.";

/// Checks that `key` is a relative `/`-separated path that maps safely onto a
/// directory tree: no empty, `.` or `..` components, no NUL, no leading `/`.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && !key.contains('\0')
        && key
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.starts_with(TMP_PREFIX));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "chunks/0/0/1_0_4096", "a.b/c..d/.e"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "./a", "a/../b", "..", "a\0b", ".tmp.x", "a/.tmp.b",
        ] {
            assert!(
                matches!(validate_key(bad), Err(StoreError::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }
}
