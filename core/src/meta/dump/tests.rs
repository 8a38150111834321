//! Dump and load over [`MemKv`]: a volume with every kind of record comes back the same,
//! runtime state stays behind, and bad documents are refused with the engine left empty.

use super::*;
use crate::chunk::SliceRef;
use crate::kv::{Kv, KvPair, MemKv};
use crate::meta::check::{check_keyspace, CheckOptions};
use crate::meta::keys;
use crate::meta::tests::{root, setup, ts, Fx};
use crate::meta::{LockKind, LockRequest};
use crate::types::*;

fn dump_of(kv: &dyn Kv) -> (String, DumpStats) {
    let mut out = Vec::new();
    let stats = dump(kv, &mut out, DumpOptions::default(), &mut |_| {}).unwrap();
    (String::from_utf8(out).unwrap(), stats)
}

fn load_into_new(doc: &str) -> (MemKv, Result<LoadStats, LoadError>) {
    let kv = MemKv::new();
    let r = load(&kv, doc.as_bytes());
    (kv, r)
}

fn data(fx: &Fx, ino: Ino, len: u32) -> SliceId {
    let id = fx.m.new_slice_id().unwrap();
    fx.m.write_slice(ino, ChunkIndex(0), SliceRef::new(0, id, len), ts(20))
        .unwrap();
    id
}

/// A volume with a bit of everything: directories, data, a hole, hard links, a
/// symlink, binary names and xattrs, a deleted file, a staged slice, an open unlinked
/// file, a session and a lock.
fn rich_volume() -> (Fx, Ino, SliceId) {
    let fx = setup();
    let m = &fx.m;
    let r = root();
    fx.m.new_session("{}").unwrap();
    let d = fx.dir(&r, Ino::ROOT, "dir", 0o750);
    let f = fx.file(&r, d.ino, "f", 0o640);
    data(&fx, f.ino, 3000);
    m.write_slice(
        f.ino,
        ChunkIndex(1),
        SliceRef::new(100, SliceId::ZERO, 50),
        ts(21),
    )
    .unwrap();
    m.link(&r, f.ino, Ino::ROOT, b"hard", ts(22)).unwrap();
    m.symlink(&r, d.ino, b"ln", b"../hard", ts(23)).unwrap();
    let odd = fx.file(&r, Ino::ROOT, "caf\u{e9}", 0o644);
    m.mknod(
        &r,
        d.ino,
        b"bin\xff\x01",
        FileType::Fifo,
        0o600,
        0,
        0,
        ts(24),
    )
    .unwrap();
    m.setxattr(&r, odd.ino, b"user.text", b"hello", XattrMode::Any, ts(25))
        .unwrap();
    m.setxattr(
        &r,
        d.ino,
        b"user.bin",
        &[0, 159, 255],
        XattrMode::Any,
        ts(25),
    )
    .unwrap();
    let gone = fx.file(&r, Ino::ROOT, "gone", 0o644);
    data(&fx, gone.ino, 10);
    m.unlink(&r, Ino::ROOT, b"gone", ts(26)).unwrap();
    let staged = fx.file(&r, d.ino, "staged", 0o644);
    let sid = m.new_slice_id().unwrap();
    m.write_staged_slice(staged.ino, ChunkIndex(0), SliceRef::new(0, sid, 7), ts(27))
        .unwrap();
    let open = fx.file(&r, Ino::ROOT, "open", 0o644);
    let open_slice = data(&fx, open.ino, 99);
    m.open(&r, open.ino, libc_rdonly()).unwrap();
    m.unlink(&r, Ino::ROOT, b"open", ts(28)).unwrap();
    m.set_lock(
        odd.ino,
        &LockRequest {
            owner: 7,
            fh: 1,
            start: 0,
            end: 10,
            kind: Some(LockKind::Write),
            pid: 1,
        },
    )
    .unwrap();
    (fx, open.ino, open_slice)
}

fn libc_rdonly() -> i32 {
    0
}

/// The keys a dump carries: everything but sessions, locks, unlinked-open marks and
/// the engine's own records.
fn volume_keys(pairs: Vec<KvPair>) -> Vec<KvPair> {
    pairs
        .into_iter()
        .filter(|(k, _)| {
            let client_state = matches!(k[0], b'H' | b'L' | b'K' | b'U' | b'R' | b'N')
                || (k[0] == b'A' && keys::tag_of(k) == Some(b'K'));
            !client_state
        })
        .collect()
}

#[test]
fn a_volume_comes_back_the_same_without_its_clients() {
    let (fx, open_ino, open_slice) = rich_volume();
    let (doc, stats) = dump_of(&*fx.kv);
    assert_eq!(stats.sessions, 1);
    assert_eq!(stats.orphan_keys, 0);
    assert!(doc.contains("\"name\":{\"hex\":\"62696eff01\"}"), "{doc}");
    assert!(doc.contains("\"name\":\"caf\u{e9}\""));

    let (kv, r) = load_into_new(&doc);
    let loaded = r.unwrap();
    assert_eq!(loaded.dropped_unlinked, 1);
    assert_eq!(loaded.inodes, stats.inodes - 1);
    assert_eq!(loaded.entries, stats.entries);
    assert_eq!(loaded.staged_slices, 1);

    // Everything but the client state and the open unlinked file is as it was, and
    // that file's data is queued for deletion.
    let mut want: Vec<KvPair> = volume_keys(fx.kv.dump())
        .into_iter()
        .filter(|(k, _)| !(k[0] == b'A' && keys::id_of(k) == Some(open_ino.0)))
        .collect();
    want.push((keys::gc(open_slice), 99u32.to_be_bytes().to_vec()));
    want.sort();
    let mut got = kv.dump();
    let counters = |v: &mut Vec<KvPair>| -> Vec<KvPair> {
        let (c, rest): (Vec<KvPair>, Vec<KvPair>) = v.drain(..).partition(|(k, _)| k[0] == b'C');
        *v = rest;
        c
    };
    let want_counters = counters(&mut want);
    let got_counters = counters(&mut got);
    assert_eq!(got, want);
    let value = |c: &[KvPair], name: &str| {
        let v = &c.iter().find(|(k, _)| *k == keys::counter(name)).unwrap().1;
        u64::from_be_bytes(v[..].try_into().unwrap())
    };
    for name in [keys::NEXT_INODE, keys::NEXT_SLICE, keys::NEXT_SESSION] {
        assert_eq!(value(&got_counters, name), value(&want_counters, name));
    }
    assert_eq!(
        value(&got_counters, keys::TOTAL_INODES),
        value(&want_counters, keys::TOTAL_INODES) - 1
    );
    assert_eq!(
        value(&got_counters, keys::USED_SPACE),
        value(&want_counters, keys::USED_SPACE) - 99
    );

    let pairs = kv.dump();
    let violations = check_keyspace(
        pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        CheckOptions {
            no_open_files: true,
            ids_from_counters: true,
        },
    );
    assert!(violations.is_empty(), "{violations:?}");

    // A dump of the loaded volume is a fixed point.
    let (again, _) = dump_of(&kv);
    let (kv2, r) = load_into_new(&again);
    r.unwrap();
    assert_eq!(dump_of(&kv2).0, again);
}

#[test]
fn the_secret_key_stays_behind_unless_asked() {
    let mut f = crate::format::Format::new("test-vol", "uuid-1");
    f.access_key = Some("AK".into());
    f.secret_key = Some("SK-very-secret".into());
    let fx = crate::meta::tests::setup_with(f);
    let (doc, _) = dump_of(&*fx.kv);
    assert!(!doc.contains("SK-very-secret"));
    let (_, r) = load_into_new(&doc);
    assert!(r.unwrap().no_secret_key);
    let mut out = Vec::new();
    let opts = DumpOptions {
        keep_secret_key: true,
    };
    dump(&*fx.kv, &mut out, opts, &mut |_| {}).unwrap();
    let doc = String::from_utf8(out).unwrap();
    assert!(doc.contains("SK-very-secret"));
    let (_, r) = load_into_new(&doc);
    assert!(!r.unwrap().no_secret_key);
}

#[test]
fn only_an_empty_engine_takes_a_load() {
    let fx = setup();
    let (doc, _) = dump_of(&*fx.kv);
    let before = fx.kv.dump();
    let e = load(&*fx.kv, doc.as_bytes()).unwrap_err();
    assert!(matches!(e, LoadError::NotEmpty(_)), "{e}");
    assert_eq!(fx.kv.dump(), before, "a refused load changes nothing");

    let partial = MemKv::new();
    crate::kv::txn(&partial, |t| {
        t.set(&keys::attr(Ino(5)), b"x");
        Ok(())
    })
    .unwrap();
    let e = load(&partial, doc.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("without volume settings"), "{e}");
}

/// Bad documents: each refused with a message naming the problem, and the engine left
/// empty even when records were written before the problem was found.
#[test]
fn bad_documents_are_refused_and_leave_nothing() {
    let (fx, _, _) = rich_volume();
    let (doc, _) = dump_of(&*fx.kv);
    let entries_at = doc.find("\"entries\":[").unwrap();
    let root_line = doc.lines().find(|l| l.starts_with("{\"ino\":1,")).unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "not valid"),
        ("[1,2]".into(), "not valid"),
        (
            doc.replacen("\"ferrofs_dump\":1", "\"ferrofs_dump\":9", 1),
            "version 9",
        ),
        (doc.replacen("\"ferrofs_dump\":1,", "", 1), "does not begin"),
        (
            doc.replacen("\"setting\"", "\"settings\"", 1),
            "unknown member",
        ),
        (doc[..doc.len() - 40].to_string(), "not valid"),
        (
            format!("{}\"junk\":[]}}", &doc[..entries_at]),
            "unknown member",
        ),
        (
            doc.replacen("\"counters\":{", "\"counters\":{\"bogus\":1,", 1),
            "unknown counter",
        ),
        (
            doc.replacen(
                "\"ino\":1,\"type\":\"dir\"",
                "\"ino\":1,\"type\":\"file\"",
                1,
            ),
            "only directories have a parent",
        ),
        (doc.replacen("\"seq\":3", "\"seq\":1", 1), "seq 1"),
        (
            doc.replacen("{\"parent\":1,", "{\"parent\":424242,", 1),
            "no directory 424242",
        ),
        (
            doc.replacen(
                "\"name\":\"hard\",\"ino\":",
                "\"name\":\"hard\",\"ino\":9",
                1,
            ),
            "no inode",
        ),
        (
            doc.replacen("\"mode\":416", "\"mode\":65535", 1),
            "bits beyond",
        ),
        (
            doc.replacen(root_line, &format!("{root_line}\n{root_line}"), 1),
            "ascending order",
        ),
        (doc + "x", "not valid"),
    ];
    for (i, (bad, want)) in cases.into_iter().enumerate() {
        let (kv, r) = load_into_new(&bad);
        let e = r.expect_err(&format!("case {i} ({want}) loads"));
        assert!(e.to_string().contains(want), "case {i}: {e} lacks {want:?}");
        assert_eq!(kv.dump(), Vec::new(), "case {i} left keys behind");
    }
}

#[test]
fn sections_keep_their_order() {
    let fx = setup();
    let (doc, _) = dump_of(&*fx.kv);
    let swapped = doc.replacen("\"unlinked_open\":[],", "", 1).replacen(
        "\"deleted_slices\":[]",
        "\"deleted_slices\":[],\"unlinked_open\":[]",
        1,
    );
    let (kv, r) = load_into_new(&swapped);
    assert!(r.unwrap_err().to_string().contains("out of place"));
    assert!(kv.dump().is_empty());
}

#[test]
fn bytes_are_text_or_hex() {
    for b in [&b"plain"[..], b"", b"\xff\xfe", "\u{1F600}".as_bytes()] {
        let j = serde_json::to_string(&Bytes::of(b)).unwrap();
        let back: Bytes = serde_json::from_str(&j).unwrap();
        assert_eq!(back.to_vec().unwrap(), b);
    }
    let odd: Bytes = serde_json::from_str("{\"hex\":\"abc\"}").unwrap();
    assert!(odd.to_vec().is_err());
}

/// An engine whose `n`th write transaction fails (once), as a lost connection would.
struct FailsOnce {
    inner: MemKv,
    left: std::sync::atomic::AtomicI64,
}

impl Kv for FailsOnce {
    fn txn(
        &self,
        f: &mut dyn FnMut(&mut dyn crate::kv::Txn) -> crate::errno::Result<()>,
    ) -> crate::errno::Result<()> {
        if self.left.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) == 0 {
            return Err(crate::errno::Errno::EIO);
        }
        self.inner.txn(f)
    }
    fn read(
        &self,
        f: &mut dyn FnMut(&mut dyn crate::kv::Txn) -> crate::errno::Result<()>,
    ) -> crate::errno::Result<()> {
        self.inner.read(f)
    }
    fn sync(&self) -> crate::errno::Result<()> {
        self.inner.sync()
    }
}

/// The engine failing at any write of a load: the load reports it and the engine is left
/// empty, ready for another try, which then loads everything.
#[test]
fn an_engine_failure_mid_load_leaves_the_engine_empty() {
    let fx = setup();
    let r = root();
    for i in 0..3000 {
        fx.file(
            &r,
            Ino::ROOT,
            &format!("file-with-a-longish-name-{i}"),
            0o644,
        );
    }
    let (doc, _) = dump_of(&*fx.kv);
    let probe = FailsOnce {
        inner: MemKv::new(),
        left: i64::MAX.into(),
    };
    load(&probe, doc.as_bytes()).unwrap();
    let writes = i64::MAX - probe.left.load(std::sync::atomic::Ordering::Relaxed);
    assert!(writes > 20, "the load takes many transactions ({writes})");
    for n in [0, 1, writes / 2, writes - 2, writes - 1] {
        let kv = FailsOnce {
            inner: MemKv::new(),
            left: n.into(),
        };
        let e = load(&kv, doc.as_bytes()).unwrap_err();
        assert!(matches!(e, LoadError::Meta(_)), "write {n}: {e}");
        assert!(kv.inner.dump().is_empty(), "write {n} failed and left keys");
        load(&kv, doc.as_bytes()).unwrap();
        assert_eq!(dump_of(&kv).0, doc, "after a failure at write {n}");
    }
}
