use super::*;
use crate::chunk::SliceRef;
use crate::meta::{WriteOutcome, COMPACT_THRESHOLD};

fn size(n: u64) -> SetAttr {
    SetAttr {
        size: Some(n),
        ..Default::default()
    }
}

#[test]
fn write_slice_appends_and_grows() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let s1 = fx.m.new_slice_id().unwrap();
    let r1 = SliceRef::new(0, s1, 4096);
    let out = fx.m.write_slice(f.ino, ChunkIndex(0), r1, ts(5)).unwrap();
    assert_eq!(out.slices_in_chunk, 1);
    assert_eq!(
        (out.attr.size, out.attr.mtime, out.attr.ctime),
        (4096, ts(5), ts(5))
    );
    // A write inside the file does not change the size.
    let s2 = fx.m.new_slice_id().unwrap();
    let r2 = SliceRef::new(100, s2, 10);
    let WriteOutcome {
        attr,
        slices_in_chunk,
    } = fx.m.write_slice(f.ino, ChunkIndex(0), r2, ts(6)).unwrap();
    assert_eq!((attr.size, attr.mtime, slices_in_chunk), (4096, ts(6), 2));
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(0)).unwrap(), vec![r1, r2]);
    // Another chunk.
    let s3 = fx.m.new_slice_id().unwrap();
    let out =
        fx.m.write_slice(f.ino, ChunkIndex(2), SliceRef::new(5, s3, 5), ts(7))
            .unwrap();
    assert_eq!(out.attr.size, 2 * CHUNK_SIZE + 10);
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(1)).unwrap(), vec![]);
    assert_eq!(fx.m.statfs().unwrap().used_bytes, 2 * CHUNK_SIZE + 10);
    fx.check();
}

#[test]
fn write_slice_errors() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let s = SliceId(77);
    let past_chunk = SliceRef::new(CHUNK_SIZE as u32 - 1, s, 2);
    assert_eq!(
        fx.m.write_slice(f.ino, ChunkIndex(0), past_chunk, ts(2))
            .err(),
        Some(Errno::EINVAL)
    );
    let bad_source = SliceRef {
        pos: 0,
        id: s,
        size: 10,
        off: 5,
        len: 6,
    };
    assert_eq!(
        fx.m.write_slice(f.ino, ChunkIndex(0), bad_source, ts(2))
            .err(),
        Some(Errno::EINVAL)
    );
    let last = ChunkIndex(u32::MAX);
    let r = SliceRef::new(0, s, 1);
    assert_eq!(
        fx.m.write_slice(f.ino, last, r, ts(2)).err(),
        Some(Errno::EFBIG)
    );
    let just_fits = SliceRef::new(CHUNK_SIZE as u32 - 1, s, 1);
    let out =
        fx.m.write_slice(f.ino, ChunkIndex(u32::MAX - 1), just_fits, ts(2))
            .unwrap();
    assert_eq!(out.attr.size, FILE_SIZE_MAX);
    assert_eq!(
        fx.m.write_slice(Ino(999), ChunkIndex(0), r, ts(2)).err(),
        Some(Errno::ENOENT)
    );
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    assert_eq!(
        fx.m.write_slice(d.ino, ChunkIndex(0), r, ts(2)).err(),
        Some(Errno::EISDIR)
    );
    fx.check();
}

#[test]
fn capacity_limits_writes() {
    let mut f = Format::new("vol", "u");
    f.capacity = 1000;
    let fx = setup_with(f);
    let a = fx.file(&root(), Ino::ROOT, "f", 0o644);
    fx.m.write_slice(
        a.ino,
        ChunkIndex(0),
        SliceRef::new(0, SliceId(1), 1000),
        ts(2),
    )
    .unwrap();
    assert_eq!(
        fx.m.write_slice(
            a.ino,
            ChunkIndex(0),
            SliceRef::new(1000, SliceId(2), 1),
            ts(2)
        )
        .err(),
        Some(Errno::ENOSPC)
    );
    // Overwrites do not grow the file and are fine.
    fx.m.write_slice(
        a.ino,
        ChunkIndex(0),
        SliceRef::new(0, SliceId(3), 10),
        ts(2),
    )
    .unwrap();
    fx.check();
}

#[test]
fn truncate_shrink_drops_chunks_and_masks_the_tail() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let (s0, s1, s2) = (SliceId(10), SliceId(11), SliceId(12));
    fx.m.write_slice(f.ino, ChunkIndex(0), SliceRef::new(0, s0, 1000), ts(2))
        .unwrap();
    fx.m.write_slice(f.ino, ChunkIndex(1), SliceRef::new(0, s1, 1000), ts(2))
        .unwrap();
    fx.m.write_slice(f.ino, ChunkIndex(3), SliceRef::new(0, s2, 1000), ts(2))
        .unwrap();
    let new = CHUNK_SIZE + 500;
    fx.m.setattr(&root(), f.ino, &size(new), ts(3)).unwrap();
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(3)).unwrap(), vec![]);
    assert_eq!(
        fx.m.read_chunk(f.ino, ChunkIndex(1)).unwrap(),
        vec![
            SliceRef::new(0, s1, 1000),
            SliceRef::zero(500, CHUNK_SIZE as u32 - 500)
        ]
    );
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(0)).unwrap().len(), 1);
    assert_eq!(fx.m.gc_pending(10).unwrap(), vec![(s2, 1000)]);
    assert_eq!(fx.m.statfs().unwrap().used_bytes, new);
    // Growing again changes nothing but the size.
    fx.m.setattr(&root(), f.ino, &size(5 * CHUNK_SIZE), ts(4))
        .unwrap();
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(1)).unwrap().len(), 2);
    // Shrinking to a chunk boundary drops whole chunks only.
    fx.m.setattr(&root(), f.ino, &size(CHUNK_SIZE), ts(5))
        .unwrap();
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(1)).unwrap(), vec![]);
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(0)).unwrap().len(), 1);
    // Shrinking into a chunk without slices adds nothing.
    fx.m.setattr(&root(), f.ino, &size(0), ts(6)).unwrap();
    fx.m.setattr(&root(), f.ino, &size(3 * CHUNK_SIZE), ts(6))
        .unwrap();
    fx.m.setattr(&root(), f.ino, &size(2 * CHUNK_SIZE + 7), ts(6))
        .unwrap();
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(2)).unwrap(), vec![]);
    let mut ids = fx.gc_ids();
    ids.sort();
    assert_eq!(ids, vec![10, 11, 12]);
    fx.check();
}

#[test]
fn compaction_commit() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let mut expected = Vec::new();
    for i in 0..COMPACT_THRESHOLD as u32 + 1 {
        let r = SliceRef::new(i * 10, SliceId(100 + i as u64), 10);
        let out = fx.m.write_slice(f.ino, ChunkIndex(0), r, ts(2)).unwrap();
        assert_eq!(out.slices_in_chunk, i as usize + 1);
        expected.push(r);
    }
    // The replacement reuses slice 100 (partly) and adds a new slice 500.
    let replacement = vec![
        SliceRef {
            pos: 0,
            id: SliceId(100),
            size: 10,
            off: 0,
            len: 5,
        },
        SliceRef::new(5, SliceId(500), 325),
    ];
    assert!(fx
        .m
        .compact_chunk(f.ino, ChunkIndex(0), &expected, &replacement)
        .unwrap());
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(0)).unwrap(), replacement);
    let gc = fx.gc_ids();
    assert_eq!(gc.len(), COMPACT_THRESHOLD);
    assert!(!gc.contains(&100) && !gc.contains(&500));
    fx.m.gc_done(&gc.iter().map(|&i| SliceId(i)).collect::<Vec<_>>())
        .unwrap();
    // A stale compaction (the chunk changed meanwhile) only queues its new slice.
    fx.m.write_slice(
        f.ino,
        ChunkIndex(0),
        SliceRef::new(0, SliceId(600), 1),
        ts(3),
    )
    .unwrap();
    let stale = vec![SliceRef::new(0, SliceId(700), 330)];
    assert!(!fx
        .m
        .compact_chunk(f.ino, ChunkIndex(0), &replacement, &stale)
        .unwrap());
    assert_eq!(fx.gc_ids(), vec![700]);
    assert_eq!(fx.m.read_chunk(f.ino, ChunkIndex(0)).unwrap().len(), 3);
    fx.check();
}

#[test]
fn gc_queue_pages() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    for i in 1..=5u64 {
        fx.m.write_slice(
            f.ino,
            ChunkIndex(i as u32),
            SliceRef::new(0, SliceId(i), i as u32),
            ts(2),
        )
        .unwrap();
    }
    fx.m.write_slice(f.ino, ChunkIndex(9), SliceRef::zero(0, 9), ts(2))
        .unwrap();
    fx.m.unlink(&root(), Ino::ROOT, b"f", ts(3)).unwrap();
    let first = fx.m.gc_pending(3).unwrap();
    assert_eq!(
        first,
        vec![(SliceId(1), 1), (SliceId(2), 2), (SliceId(3), 3)]
    );
    fx.m.gc_done(&[SliceId(1), SliceId(2), SliceId(3)]).unwrap();
    assert_eq!(
        fx.m.gc_pending(3).unwrap(),
        vec![(SliceId(4), 4), (SliceId(5), 5)]
    );
    fx.m.gc_done(&[SliceId(4), SliceId(5)]).unwrap();
    assert!(fx.m.gc_pending(3).unwrap().is_empty());
    fx.check();
}

#[test]
fn compaction_of_a_deleted_file_only_queues_new_slices() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    let r = SliceRef::new(0, SliceId(1), 10);
    fx.m.write_slice(f.ino, ChunkIndex(0), r, ts(2)).unwrap();
    fx.m.unlink(&root(), Ino::ROOT, b"f", ts(3)).unwrap();
    let new = [SliceRef::new(0, SliceId(2), 10)];
    assert!(!fx.m.compact_chunk(f.ino, ChunkIndex(0), &[], &new).unwrap());
    assert_eq!(fx.gc_ids(), vec![1, 2]);
    fx.check();
}

#[test]
fn meta_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Meta>();
}
