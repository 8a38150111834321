//! The behaviour every object store must share: each function takes an empty store and
//! checks one promise of the `ObjectStore` trait. `tests/stores.rs` runs them against
//! the local-directory and memory stores, `tests/s3.rs` against S3 on a real server.

#![allow(dead_code)]

use ferrofs_s3_backend::{Bytes, ObjectInfo, ObjectStore, StoreError};
use std::sync::Arc;

/// Known deviations of a server from AWS S3 that the checks must step around.
#[derive(Clone, Copy, Default, Debug)]
pub struct Quirks {
    /// s3s-fs answers HTTP 500 (not 404) to a HEAD of a "key" that is a prefix of other
    /// keys (a directory on its disk). No ferrofs key is a prefix of another.
    pub head_of_prefix_fails: bool,
    /// s3s-fs replaces an object's data and its stored checksum in two separate
    /// renames, so racing overwrites of one key with *different* bytes can leave a
    /// checksum that does not match the data (every later whole-object GET then fails
    /// the SDK's checksum check). ferrofs never overwrites an object with other bytes
    /// (a retried put sends the same ones), so such servers are checked with racing
    /// puts of the same bytes.
    pub racing_overwrites_break_checksums: bool,
}

pub fn keys(v: &[ObjectInfo]) -> Vec<&str> {
    v.iter().map(|o| o.key.as_str()).collect()
}

pub fn roundtrip_head_delete(s: &dyn ObjectStore, q: Quirks) {
    s.put("chunks/0/0/1_0_5", Bytes::from_static(b"hello"))
        .unwrap();
    assert_eq!(s.get("chunks/0/0/1_0_5", 0, None).unwrap(), b"hello");
    let head = s
        .head("chunks/0/0/1_0_5")
        .unwrap()
        .expect("the object is there");
    assert_eq!((head.key.as_str(), head.size), ("chunks/0/0/1_0_5", 5));
    assert_eq!(s.head("chunks/0/0/nope").unwrap(), None);
    if !q.head_of_prefix_fails {
        assert_eq!(
            s.head("chunks/0").unwrap(),
            None,
            "{s:?}: a directory is no object"
        );
    }
    assert!(matches!(
        s.get("nope", 0, None),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.get("nope", 3, Some(2)),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.get("nope", 0, Some(0)),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.get("chunks/0/0/1_0_5/x", 0, None),
        Err(StoreError::NotFound(_))
    ));
    s.put("empty", Bytes::from_static(b"")).unwrap();
    assert_eq!(s.get("empty", 0, None).unwrap(), b"");
    assert_eq!(s.get("empty", 0, Some(10)).unwrap(), b"");
    assert_eq!(s.head("empty").unwrap().map(|o| o.size), Some(0));
    s.delete("chunks/0/0/1_0_5").unwrap();
    s.delete("chunks/0/0/1_0_5").unwrap();
    s.delete("never/was").unwrap();
    assert!(matches!(
        s.get("chunks/0/0/1_0_5", 0, None),
        Err(StoreError::NotFound(_))
    ));
}

pub fn ranged_gets_including_past_the_end(s: &dyn ObjectStore) {
    s.put("k", Bytes::from_static(b"0123456789")).unwrap();
    assert_eq!(s.get("k", 2, Some(3)).unwrap(), b"234");
    assert_eq!(s.get("k", 0, Some(1)).unwrap(), b"0");
    assert_eq!(s.get("k", 9, Some(1)).unwrap(), b"9");
    assert_eq!(s.get("k", 7, None).unwrap(), b"789");
    assert_eq!(s.get("k", 8, Some(100)).unwrap(), b"89");
    assert_eq!(s.get("k", 10, Some(1)).unwrap(), b"");
    assert_eq!(s.get("k", 50, None).unwrap(), b"");
    assert_eq!(s.get("k", 4, Some(0)).unwrap(), b"");
    assert_eq!(s.get("k", 0, Some(u64::MAX)).unwrap(), b"0123456789");
    assert_eq!(s.get("k", 3, Some(u64::MAX)).unwrap(), b"3456789");
    assert_eq!(s.get("k", u64::MAX, Some(u64::MAX)).unwrap(), b"");
    // A bigger object, read in pieces.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    s.put("big", Bytes::from(big.clone())).unwrap();
    for (off, len) in [(0u64, 65536u64), (65536, 65536), (123_457, 1), (299_999, 5)] {
        let end = (off + len).min(big.len() as u64) as usize;
        assert_eq!(
            s.get("big", off, Some(len)).unwrap(),
            &big[off as usize..end],
            "{off}+{len}"
        );
    }
    assert_eq!(s.get("big", 0, None).unwrap(), big);
}

pub fn overwrite_replaces_the_whole_object(s: &dyn ObjectStore) {
    s.put("a/b", Bytes::from(vec![1u8; 1000])).unwrap();
    s.put("a/b", Bytes::from(vec![2u8; 10])).unwrap();
    assert_eq!(s.get("a/b", 0, None).unwrap(), vec![2u8; 10]);
    assert_eq!(keys(&s.list("", "", 100).unwrap()), ["a/b"]);
}

pub fn invalid_keys_are_refused(s: &dyn ObjectStore) {
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "a/",
        "a\0",
        ".tmp.x",
    ] {
        assert!(
            matches!(
                s.put(bad, Bytes::from_static(b"x")),
                Err(StoreError::InvalidKey(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(s.get(bad, 0, None), Err(StoreError::InvalidKey(_))),
            "{bad:?}"
        );
        assert!(
            matches!(s.head(bad), Err(StoreError::InvalidKey(_))),
            "{bad:?}"
        );
        assert!(
            matches!(s.delete(bad), Err(StoreError::InvalidKey(_))),
            "{bad:?}"
        );
    }
    assert!(s.list("", "", 10).unwrap().is_empty());
}

pub fn list_order_prefix_start_after_limit(s: &dyn ObjectStore) {
    // '.' < '/' < '0': a file "a.b" sorts before the keys under directory "a/".
    let all = [
        "a.b",
        "a/x",
        "a/y/z",
        "a0",
        "b",
        "chunks/1/1000/1000000_0_9",
        "chunks/1/1000/1000001_0_9",
    ];
    for k in all.iter().rev() {
        s.put(k, Bytes::copy_from_slice(k.as_bytes())).unwrap();
    }
    let listed = s.list("", "", 100).unwrap();
    assert_eq!(keys(&listed), all, "{s:?}");
    assert!(listed.iter().all(|o| o.size == o.key.len() as u64));
    assert_eq!(
        keys(&s.list("a", "", 100).unwrap()),
        ["a.b", "a/x", "a/y/z", "a0"]
    );
    assert_eq!(keys(&s.list("a/", "", 100).unwrap()), ["a/x", "a/y/z"]);
    assert_eq!(keys(&s.list("a/y", "", 100).unwrap()), ["a/y/z"]);
    assert_eq!(keys(&s.list("", "a/x", 3).unwrap()), ["a/y/z", "a0", "b"]);
    assert_eq!(keys(&s.list("", "a/", 1).unwrap()), ["a/x"]);
    assert_eq!(keys(&s.list("a", "a0", 10).unwrap()), Vec::<&str>::new());
    assert_eq!(
        keys(
            &s.list("chunks/1/1000/", "chunks/1/1000/1000000_0_9", 10)
                .unwrap()
        ),
        ["chunks/1/1000/1000001_0_9"]
    );
    assert_eq!(
        keys(&s.list("chunks/", "", 1).unwrap()),
        ["chunks/1/1000/1000000_0_9"]
    );
    assert!(s.list("", "", 0).unwrap().is_empty());
    assert!(s.list("zz", "", 10).unwrap().is_empty());
    assert!(s.list("../", "", 10).unwrap().is_empty());
    // Paging through everything one at a time gives the same list.
    let mut paged = Vec::new();
    let mut after = String::new();
    while let Some(o) = s.list("", &after, 1).unwrap().pop() {
        after = o.key.clone();
        paged.push(o.key);
    }
    assert_eq!(paged, all);
}

/// Readers racing writers of one key see a whole object, never a mix. With
/// `same_bytes`, every writer writes the same bytes (as retries of one put do), and
/// every read must succeed.
pub fn concurrent_puts_of_one_key_never_tear(s: Arc<dyn ObjectStore>, same_bytes: bool) {
    let writers: Vec<_> = (0..4u8)
        .map(|i| {
            let s = s.clone();
            let fill = if same_bytes { 7 } else { i };
            std::thread::spawn(move || {
                for _ in 0..20 {
                    s.put("k", Bytes::from(vec![fill; 64 << 10])).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..50 {
        match s.get("k", 0, None) {
            Ok(v) => {
                assert_eq!(v.len(), 64 << 10);
                assert!(v.iter().all(|&b| b == v[0]));
                assert!(!same_bytes || v[0] == 7);
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => assert!(!same_bytes, "{e}"),
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(keys(&s.list("", "", 10).unwrap()), ["k"]);
}

/// Every check above, each on a fresh store from `fresh`.
pub fn all(fresh: &mut dyn FnMut() -> Arc<dyn ObjectStore>, q: Quirks) {
    roundtrip_head_delete(&*fresh(), q);
    ranged_gets_including_past_the_end(&*fresh());
    overwrite_replaces_the_whole_object(&*fresh());
    invalid_keys_are_refused(&*fresh());
    list_order_prefix_start_after_limit(&*fresh());
    concurrent_puts_of_one_key_never_tear(fresh(), q.racing_overwrites_break_checksums);
}
