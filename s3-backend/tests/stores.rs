//! Behaviour every object store must share (`common`), run against the local-directory
//! and memory stores, plus the local-directory store's own promises (atomic puts, no
//! visible temp files) and `open_store`.

mod common;

use common::{keys, Quirks};
use ferrofs_s3_backend::{open_store, Bytes, FileStore, MemStore, ObjectStore, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Fresh empty stores of each local kind (the temp dirs must outlive them).
fn stores() -> Vec<(tempfile::TempDir, Arc<dyn ObjectStore>)> {
    let d1 = tempfile::tempdir().unwrap();
    let file: Arc<dyn ObjectStore> = Arc::new(FileStore::open(d1.path(), false).unwrap());
    let d2 = tempfile::tempdir().unwrap();
    vec![(d1, file), (d2, Arc::new(MemStore::new()))]
}

#[test]
fn roundtrip_head_delete() {
    for (_d, s) in stores() {
        common::roundtrip_head_delete(&*s, Quirks::default());
    }
}

#[test]
fn ranged_gets_including_past_the_end() {
    for (_d, s) in stores() {
        common::ranged_gets_including_past_the_end(&*s);
    }
}

#[test]
fn overwrite_replaces_the_whole_object() {
    for (_d, s) in stores() {
        common::overwrite_replaces_the_whole_object(&*s);
    }
}

#[test]
fn invalid_keys_are_refused() {
    for (_d, s) in stores() {
        common::invalid_keys_are_refused(&*s);
    }
}

#[test]
fn list_order_prefix_start_after_limit() {
    for (_d, s) in stores() {
        common::list_order_prefix_start_after_limit(&*s);
    }
}

#[test]
fn concurrent_puts_of_one_key_never_tear() {
    for same_bytes in [false, true] {
        for (_d, s) in stores() {
            common::concurrent_puts_of_one_key_never_tear(s, same_bytes);
        }
    }
}

#[test]
fn file_store_hides_and_cleans_temp_files() {
    let d = tempfile::tempdir().unwrap();
    let s = FileStore::open(d.path(), false).unwrap();
    s.put("x/y", Bytes::from_static(b"data")).unwrap();
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
        s.put("x/y", Bytes::from_static(b"again")).unwrap();
    }
    let names: Vec<_> = std::fs::read_dir(d.path().join("x"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["y"]);
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
    let err = open_store("nfs", "b", false).unwrap_err();
    assert!(err.to_string().contains("unknown storage 'nfs'"), "{err}");
    let err = open_store("s3", "b", false).unwrap_err();
    assert!(err.to_string().contains("bad S3 bucket URL 'b'"), "{err}");
    let file = d.path().join("f");
    std::fs::write(&file, b"").unwrap();
    assert!(matches!(
        FileStore::open(&file, true),
        Err(StoreError::Config(_))
    ));
}
