//! Behaviour every object store must share, run against each store, plus the
//! local-directory store's own promises (atomic puts, no visible temp files).

use ferrofs_s3_backend::{open_store, FileStore, MemStore, ObjectInfo, ObjectStore, StoreError};
use std::sync::Arc;
use std::time::Duration;

fn stores() -> Vec<(tempfile::TempDir, Arc<dyn ObjectStore>)> {
    let d1 = tempfile::tempdir().unwrap();
    let file: Arc<dyn ObjectStore> = Arc::new(FileStore::open(d1.path(), false).unwrap());
    let d2 = tempfile::tempdir().unwrap();
    vec![(d1, file), (d2, Arc::new(MemStore::new()))]
}

fn keys(v: &[ObjectInfo]) -> Vec<&str> {
    v.iter().map(|o| o.key.as_str()).collect()
}

#[test]
fn roundtrip_head_delete() {
    for (_d, s) in stores() {
        s.put("chunks/0/0/1_0_5", b"hello").unwrap();
        assert_eq!(s.get("chunks/0/0/1_0_5", 0, None).unwrap(), b"hello");
        assert_eq!(
            s.head("chunks/0/0/1_0_5").unwrap(),
            Some(ObjectInfo {
                key: "chunks/0/0/1_0_5".into(),
                size: 5
            })
        );
        assert_eq!(s.head("chunks/0/0/nope").unwrap(), None);
        assert_eq!(
            s.head("chunks/0").unwrap(),
            None,
            "{s:?}: a directory is no object"
        );
        assert!(matches!(
            s.get("nope", 0, None),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.get("chunks/0/0/1_0_5/x", 0, None),
            Err(StoreError::NotFound(_))
        ));
        s.put("empty", b"").unwrap();
        assert_eq!(s.get("empty", 0, None).unwrap(), b"");
        s.delete("chunks/0/0/1_0_5").unwrap();
        s.delete("chunks/0/0/1_0_5").unwrap();
        s.delete("never/was").unwrap();
        assert!(matches!(
            s.get("chunks/0/0/1_0_5", 0, None),
            Err(StoreError::NotFound(_))
        ));
    }
}

#[test]
fn ranged_gets_including_past_the_end() {
    for (_d, s) in stores() {
        s.put("k", b"0123456789").unwrap();
        assert_eq!(s.get("k", 2, Some(3)).unwrap(), b"234");
        assert_eq!(s.get("k", 7, None).unwrap(), b"789");
        assert_eq!(s.get("k", 8, Some(100)).unwrap(), b"89");
        assert_eq!(s.get("k", 10, Some(1)).unwrap(), b"");
        assert_eq!(s.get("k", 50, None).unwrap(), b"");
        assert_eq!(s.get("k", 0, Some(u64::MAX)).unwrap(), b"0123456789");
    }
}

#[test]
fn overwrite_replaces_the_whole_object() {
    for (_d, s) in stores() {
        s.put("a/b", &[1u8; 1000]).unwrap();
        s.put("a/b", &[2u8; 10]).unwrap();
        assert_eq!(s.get("a/b", 0, None).unwrap(), vec![2u8; 10]);
        assert_eq!(keys(&s.list("", "", 100).unwrap()), ["a/b"]);
    }
}

#[test]
fn invalid_keys_are_refused() {
    for (_d, s) in stores() {
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
                matches!(s.put(bad, b"x"), Err(StoreError::InvalidKey(_))),
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
}

#[test]
fn list_order_prefix_start_after_limit() {
    for (_d, s) in stores() {
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
            s.put(k, k.as_bytes()).unwrap();
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
}

#[test]
fn file_store_hides_and_cleans_temp_files() {
    let d = tempfile::tempdir().unwrap();
    let s = FileStore::open(d.path(), false).unwrap();
    s.put("x/y", b"data").unwrap();
    // A crashed writer's leftover, as put would have named it.
    let leftover = d.path().join("x/.tmp.y.1.0");
    std::fs::write(&leftover, b"partial").unwrap();
    assert_eq!(keys(&s.list("", "", 10).unwrap()), ["x/y"]);
    // Fresh leftovers may belong to a live writer: kept.
    assert_eq!(
        s.remove_stale_temp_files(Duration::from_secs(3600))
            .unwrap(),
        0
    );
    assert!(leftover.exists());
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        s.remove_stale_temp_files(Duration::from_millis(1)).unwrap(),
        1
    );
    assert!(!leftover.exists());
    // Nothing but the object itself is left behind by puts.
    for _ in 0..5 {
        s.put("x/y", b"again").unwrap();
    }
    let names: Vec<_> = std::fs::read_dir(d.path().join("x"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["y"]);
}

#[test]
fn concurrent_puts_of_one_key_never_tear() {
    let d = tempfile::tempdir().unwrap();
    let s = Arc::new(FileStore::open(d.path(), false).unwrap());
    let writers: Vec<_> = (0..4u8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    s.put("k", &vec![i; 64 << 10]).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..50 {
        if let Ok(v) = s.get("k", 0, None) {
            assert_eq!(v.len(), 64 << 10);
            assert!(v.iter().all(|&b| b == v[0]));
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(keys(&s.list("", "", 10).unwrap()), ["k"]);
}

#[test]
fn missing_bucket_and_unknown_storage() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("bucket");
    let err = FileStore::open(&missing, false).unwrap_err();
    assert!(matches!(err, StoreError::Config(_)));
    assert!(err.to_string().contains("does not exist"), "{err}");
    let url = format!("file://{}", missing.display());
    assert!(open_store("file", &url, false).is_err());
    let s = open_store("file", &url, true).unwrap();
    assert!(missing.is_dir());
    assert!(s.describe().contains("bucket"));
    assert_eq!(
        open_store("memory", "", false).unwrap().describe(),
        "memory"
    );
    let err = open_store("s3", "b", false).unwrap_err();
    assert!(err.to_string().contains("unknown storage 's3'"), "{err}");
    let file = d.path().join("f");
    std::fs::write(&file, b"").unwrap();
    assert!(matches!(
        FileStore::open(&file, true),
        Err(StoreError::Config(_))
    ));
}
