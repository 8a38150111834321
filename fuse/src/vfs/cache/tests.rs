use super::*;
use ferrofs_core::chunk::block::encode_block;
use ferrofs_core::SliceId;
use std::path::Path;

fn key(n: u64, len: u32) -> BlockKey {
    BlockKey {
        slice: SliceId(n),
        index: 0,
        len,
    }
}

fn object(n: u64, len: u32) -> Vec<u8> {
    encode_block(
        &(0..len)
            .map(|i| (i as u64 * 31 + n) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn config(capacity: u64) -> CacheConfig {
    CacheConfig {
        capacity,
        free_ratio: 0.0,
        policy: PolicyKind::Lru,
        seed: 1,
        verify_keys: true,
    }
}

fn open(dirs: &[&Path], capacity: u64) -> (BlockCache, Vec<BlockKey>) {
    let dirs = dirs
        .iter()
        .map(|d| Box::new(DiskDir::open(d, "vol").unwrap()) as Box<dyn CacheDir>)
        .collect();
    BlockCache::open(dirs, &config(capacity))
}

fn file_of(root: &Path, k: &BlockKey) -> std::path::PathBuf {
    root.join("vol/raw").join(k.object_name())
}

#[test]
fn blocks_survive_a_restart_and_strays_are_swept() {
    let t = tempfile::tempdir().unwrap();
    let (c, _) = open(&[t.path()], 1 << 30);
    for n in 1..=20 {
        c.put(&key(n, 5000), &object(n, 5000));
    }
    drop(c);
    // A crash left a temp file, a torn block and a foreign file behind.
    let torn = file_of(t.path(), &key(3, 5000));
    let bytes = std::fs::read(&torn).unwrap();
    std::fs::write(&torn, &bytes[..100]).unwrap();
    let dir = torn.parent().unwrap().to_path_buf();
    std::fs::write(dir.join("7.tmp.1.1"), b"half").unwrap();
    std::fs::write(dir.join("not-a-block"), b"x").unwrap();
    let (c, staged) = open(&[t.path()], 1 << 30);
    assert!(staged.is_empty());
    let counters = c.counters();
    assert_eq!(counters.blocks, 19, "the torn block is not restored");
    assert!(!dir.join("7.tmp.1.1").exists() && !dir.join("not-a-block").exists());
    for n in (1..=20).filter(|&n| n != 3) {
        let data = c.get(&key(n, 5000)).expect("restored block");
        assert_eq!(data, object(n, 5000)[..5000]);
    }
    assert!(c.get(&key(3, 5000)).is_none());
}

#[test]
fn a_damaged_block_is_dropped_never_returned() {
    let t = tempfile::tempdir().unwrap();
    let (c, _) = open(&[t.path()], 1 << 30);
    let k = key(9, 70_000);
    c.put(&k, &object(9, 70_000));
    let f = file_of(t.path(), &k);
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[66_000] ^= 1;
    std::fs::write(&f, &bytes).unwrap();
    assert!(c.get(&k).is_none());
    assert_eq!(c.counters().checksum_failures, 1);
    assert!(
        !f.exists() && !c.contains(&k),
        "dropped from disk and index"
    );
    // Refetched and cached again, it reads.
    c.put(&k, &object(9, 70_000));
    assert_eq!(c.get(&k).unwrap(), object(9, 70_000)[..70_000]);
}

#[test]
fn a_vanished_dir_is_taken_out_and_the_others_carry_on() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (c, _) = open(&[a.path(), b.path()], 1 << 30);
    for n in 0..40 {
        c.put(&key(n, 1000), &object(n, 1000));
    }
    let in_a: Vec<u64> = (0..40)
        .filter(|&n| file_of(a.path(), &key(n, 1000)).exists())
        .collect();
    assert!(!in_a.is_empty() && in_a.len() < 40, "spread over both dirs");
    std::fs::remove_dir_all(a.path().join("vol")).unwrap();
    let mut hits = 0;
    for n in 0..40 {
        if c.get(&key(n, 1000)).is_some() {
            hits += 1;
        }
    }
    let counters = c.counters();
    assert_eq!(counters.index.failed_dirs, 1);
    assert_eq!(hits, 40 - in_a.len(), "dir b still serves its blocks");
    // New blocks all go to the dir that is left.
    c.put(&key(100, 1000), &object(100, 1000));
    assert!(file_of(b.path(), &key(100, 1000)).exists());
}

#[test]
fn the_cache_stays_within_its_size() {
    let t = tempfile::tempdir().unwrap();
    let size = cache_file_len(&key(0, 10_000));
    let (c, _) = open(&[t.path()], 10 * size);
    for n in 0..100 {
        c.put(&key(n, 10_000), &object(n, 10_000));
        assert!(c.counters().bytes <= 10 * size);
    }
    let on_disk = walk(&t.path().join("vol/raw"));
    assert_eq!(on_disk, 10, "evicted blocks are deleted from disk");
    assert_eq!(c.counters().index.evicted, 90);
}

#[test]
fn staged_blocks_are_pinned_found_again_and_unstaged() {
    let t = tempfile::tempdir().unwrap();
    let size = cache_file_len(&key(0, 10_000));
    let (c, _) = open(&[t.path()], 2 * size);
    c.stage(&key(1, 10_000), &object(1, 10_000)).unwrap();
    c.stage(&key(2, 10_000), &object(2, 10_000)).unwrap();
    c.put(&key(3, 10_000), &object(3, 10_000));
    assert!(!c.contains(&key(3, 10_000)), "staged blocks fill the cache");
    assert_eq!(c.get(&key(1, 10_000)).unwrap(), object(1, 10_000)[..10_000]);
    drop(c);
    let (c, staged) = open(&[t.path()], 2 * size);
    assert_eq!(staged, vec![key(1, 10_000), key(2, 10_000)]);
    assert_eq!(c.read_staged(&key(2, 10_000)).unwrap(), object(2, 10_000));
    c.uploaded(&key(1, 10_000));
    assert!(c.read_staged(&key(1, 10_000)).is_err());
    assert_eq!(c.get(&key(1, 10_000)).unwrap(), object(1, 10_000)[..10_000]);
    assert!(t
        .path()
        .join("vol/raw")
        .join(key(1, 10_000).object_name())
        .exists());
}

fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        n += if p.is_dir() { walk(&p) } else { 1 };
    }
    n
}

#[test]
fn a_file_of_another_block_is_not_returned() {
    // A misdirected write or read: the file of another block of the same length, whole
    // and with valid block checksums, under this block's name.
    let t = tempfile::tempdir().unwrap();
    let (c, _) = open(&[t.path()], 1 << 30);
    let (a, b) = (key(1, 5000), key(2, 5000));
    c.put(&a, &object(1, 5000));
    c.put(&b, &object(2, 5000));
    std::fs::copy(file_of(t.path(), &b), file_of(t.path(), &a)).unwrap();
    assert!(c.get(&a).is_none());
    assert_eq!(c.counters().checksum_failures, 1);
    assert_eq!(c.get(&b).unwrap(), object(2, 5000)[..5000]);
}
