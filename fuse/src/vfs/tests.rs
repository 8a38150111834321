//! What a client does at mount with the blocks an earlier run left staged (writeback).

use super::cache::{BlockCache, CacheConfig, CacheDir, MemDir};
use super::{system_clock, Vfs, VfsConfig};
use ferrofs_core::cache::policy::PolicyKind;
use ferrofs_core::chunk::block::encode_block;
use ferrofs_core::chunk::{BlockKey, SliceRef};
use ferrofs_core::format::{Format, MIN_BLOCK_SIZE};
use ferrofs_core::kv::MemKv;
use ferrofs_core::meta::Meta;
use ferrofs_core::{ChunkIndex, Ctx, FileType, Ino, Timespec};
use ferrofs_s3_backend::{MemStore, ObjectStore};
use std::sync::Arc;

#[test]
fn staged_blocks_of_commits_that_never_landed_are_dropped_not_uploaded() {
    let kv = Arc::new(MemKv::new());
    let mut f = Format::new("test-vol", "uuid-1");
    f.storage = "memory".into();
    f.block_size = MIN_BLOCK_SIZE;
    let t = Timespec::new(1, 0);
    Meta::format(&*kv, &f, false, t).unwrap();
    let meta = Arc::new(Meta::load(kv).unwrap());
    let store = Arc::new(MemStore::new());
    let config = CacheConfig {
        capacity: 1 << 30,
        free_ratio: 0.0,
        policy: PolicyKind::Lru,
        seed: 1,
        verify_keys: true,
    };
    let dirs: Vec<Box<dyn CacheDir>> = vec![Box::new(MemDir::default())];
    let cache = Arc::new(BlockCache::open(dirs, &config).0);

    // One slice committed with its blocks staged (the commit wrote its `W` mark) and
    // one whose commit never landed (refused: another client removed the file).
    let file = meta
        .mknod(
            &Ctx::root(),
            Ino::ROOT,
            b"f",
            FileType::RegularFile,
            0o644,
            0,
            0,
            t,
        )
        .unwrap();
    let committed = meta.new_slice_id().unwrap();
    meta.write_staged_slice(file.ino, ChunkIndex(0), SliceRef::new(0, committed, 100), t)
        .unwrap();
    let refused = meta.new_slice_id().unwrap();
    let key = |slice| BlockKey {
        slice,
        index: 0,
        len: 100,
    };
    let (kept, orphan) = (key(committed), key(refused));
    cache.stage(&kept, &encode_block(&[1u8; 100])).unwrap();
    cache.stage(&orphan, &encode_block(&[2u8; 100])).unwrap();

    let vfs = Vfs::with_cache(
        meta.clone(),
        store.clone(),
        system_clock(),
        VfsConfig {
            background: false,
            ..VfsConfig::default()
        },
        Some(cache.clone()),
    );
    vfs.resume_staged(vec![kept, orphan]);
    assert!(
        store.head(&kept.object_name()).unwrap().is_some(),
        "the committed block goes up"
    );
    assert!(
        !meta.slice_is_staged(committed).unwrap(),
        "and its mark is cleared"
    );
    assert!(
        store.head(&orphan.object_name()).unwrap().is_none(),
        "a block nothing refers to is not uploaded"
    );
    assert!(!cache.is_staged(&orphan), "and it no longer pins the cache");
    assert_eq!(vfs.writeback_backlog(), 0);
}
