//! The peer protocol end to end on loopback: real servers and connections, a block
//! service over in-memory objects, and the faults a reader must survive.

use super::net::TcpPeers;
use super::server::PeerServer;
use super::*;
use ferrofs_core::cache::group::Registration;
use ferrofs_core::cache::peer_wire::Frame;
use ferrofs_core::chunk::block::encode_block;
use ferrofs_core::{SliceId, Timespec};
use std::io::{Read, Write};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const KEY: [u8; 32] = [7; 32];

/// Serves objects it holds; `corrupt` flips a data byte of every block it serves.
#[derive(Default)]
struct Objects {
    blocks: Mutex<BTreeMap<BlockKey, Vec<u8>>>,
    corrupt: AtomicBool,
    served: AtomicU64,
}

impl BlockService for Objects {
    fn serve(&self, op: Op, _local_only: bool, key: &BlockKey) -> Reply {
        self.served.fetch_add(1, Ordering::Relaxed);
        let blocks = self.blocks.lock().unwrap();
        match (op, blocks.get(key)) {
            (Op::Get, Some(data)) => {
                let mut object = encode_block(data);
                if self.corrupt.load(Ordering::Relaxed) {
                    object[0] ^= 1;
                }
                Reply::Block(*key, object)
            }
            (Op::Get, None) => Reply::Missing,
            (_, found) => Reply::Warmed {
                cached: found.is_some(),
                fetched: false,
            },
        }
    }
}

fn key(slice: u64) -> BlockKey {
    BlockKey {
        slice: SliceId(slice),
        index: 0,
        len: 1000,
    }
}

fn clock() -> Clock {
    Arc::new(|| {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        Timespec::new(d.as_secs() as i64, d.subsec_nanos())
    })
}

/// A reader (`--no-sharing`) of a group whose one owner serves `objects` at `addr`.
fn reader_of(addr: &str, key: [u8; 32], timeout: Duration) -> Group {
    let g = Group::new("g", None, Arc::new(TcpPeers::new(key)), timeout, clock());
    let now = clock()().sec as u64;
    g.update(&[(
        "owner".to_string(),
        Registration {
            addr: addr.to_string(),
            weight: 1,
            seen: now,
        },
    )]);
    g
}

fn serving(objects: &Arc<Objects>) -> PeerServer {
    PeerServer::start("127.0.0.1:0", KEY, objects.clone()).unwrap()
}

fn data(i: u64) -> Vec<u8> {
    (0..1000).map(|b| (b as u64 * 31 + i) as u8).collect()
}

#[test]
fn a_reader_gets_verified_blocks_from_the_owner_pipelined() {
    let objects = Arc::new(Objects::default());
    for i in 0..64 {
        objects.blocks.lock().unwrap().insert(key(i), data(i));
    }
    let server = serving(&objects);
    let g = Arc::new(reader_of(
        &server.addr().to_string(),
        KEY,
        Duration::from_secs(5),
    ));
    // Many threads at once over the one connection.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let g = g.clone();
            std::thread::spawn(move || {
                for i in (t..64).step_by(8) {
                    assert_eq!(g.get(&key(i)), Some(data(i)), "block {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(g.get(&key(1000)), None, "a missing object is no block");
    let c = g.stats.snapshot();
    assert_eq!((c.hits, c.failures, c.bytes_in), (64, 0, 64_000));
    assert_eq!(
        g.warm(&key(3), Op::Check),
        Some(Ok(PeerWarm {
            cached: true,
            fetched: false
        }))
    );
}

#[test]
fn corrupt_answers_are_refused_and_trip_the_breaker() {
    let objects = Arc::new(Objects::default());
    objects.blocks.lock().unwrap().insert(key(1), data(1));
    objects.corrupt.store(true, Ordering::Relaxed);
    let server = serving(&objects);
    let g = reader_of(&server.addr().to_string(), KEY, Duration::from_secs(5));
    for _ in 0..BREAKER_THRESHOLD {
        assert_eq!(g.get(&key(1)), None);
    }
    let served = objects.served.load(Ordering::Relaxed);
    // Open now: the next reads do not even ask.
    assert_eq!(g.get(&key(1)), None);
    assert_eq!(objects.served.load(Ordering::Relaxed), served);
    let c = g.stats.snapshot();
    assert_eq!((c.corrupt, c.skipped), (u64::from(BREAKER_THRESHOLD), 1));
}

#[test]
fn a_wrong_key_gets_nothing_and_the_server_keeps_serving() {
    let objects = Arc::new(Objects::default());
    objects.blocks.lock().unwrap().insert(key(1), data(1));
    let server = serving(&objects);
    let addr = server.addr().to_string();
    let stranger = reader_of(&addr, [8; 32], Duration::from_secs(5));
    assert_eq!(stranger.get(&key(1)), None);
    assert_eq!(objects.served.load(Ordering::Relaxed), 0);
    // Garbage on a fresh connection: closed, nothing served, nothing broken.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(&[0xff; 64]).unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    // A proper member still gets its block.
    let member = reader_of(&addr, KEY, Duration::from_secs(5));
    assert_eq!(member.get(&key(1)), Some(data(1)));
}

#[test]
fn a_silent_or_dead_owner_costs_at_most_the_timeout() {
    // Accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let g = reader_of(&addr, KEY, Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(g.get(&key(1)), None);
    let took = t.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(g.stats.snapshot().timeouts, 1);
    // Nothing listens there any more.
    drop(silent);
    let g = reader_of(&addr, KEY, Duration::from_millis(300));
    let t = Instant::now();
    for _ in 0..5 {
        assert_eq!(g.get(&key(1)), None);
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(g.stats.snapshot().skipped >= 2);
}

#[test]
fn a_bad_response_frame_closes_the_connection_cleanly() {
    // An "owner" that passes no handshake but sends a frame that is not a challenge.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut c in fake.incoming().flatten() {
            let _ = c.write_all(&Frame::Denied.encode());
        }
    });
    let g = reader_of(&addr, KEY, Duration::from_secs(2));
    assert_eq!(g.get(&key(1)), None);
    assert_eq!(g.stats.snapshot().failures, 1);
}

/// Clients of one in-memory volume; the owner has a cache in memory.
mod vfs_level {
    use super::*;
    use crate::vfs::cache::{BlockCache, CacheConfig, CacheDir, MemDir};
    use crate::vfs::{system_clock, Vfs, VfsConfig};
    use ferrofs_core::cache::policy::PolicyKind;
    use ferrofs_core::format::Format;
    use ferrofs_core::kv::MemKv;
    use ferrofs_core::meta::Meta;
    use ferrofs_core::{Ctx, Ino};
    use ferrofs_s3_backend::{MemStore, ObjectStore};

    fn cache() -> Arc<BlockCache> {
        let config = CacheConfig {
            capacity: 1 << 30,
            free_ratio: 0.0,
            policy: PolicyKind::Lru,
            seed: 1,
            verify_keys: true,
        };
        let dirs: Vec<Box<dyn CacheDir>> = vec![Box::new(MemDir::default())];
        Arc::new(BlockCache::open(dirs, &config).0)
    }

    #[test]
    fn an_owner_fetches_a_block_once_for_many_readers_and_warms_on_request() {
        let kv = Arc::new(MemKv::new());
        Meta::format(
            &*kv,
            &Format::new("g-vol", "uuid-g"),
            false,
            Timespec::new(1, 0),
        )
        .unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(MemStore::new());
        let vfs = |cache: Option<Arc<BlockCache>>| {
            let meta = Arc::new(Meta::load(kv.clone()).unwrap());
            Arc::new(Vfs::with_cache(
                meta,
                store.clone(),
                system_clock(),
                VfsConfig::default(),
                cache,
            ))
        };
        // A writer outside the group writes two files.
        let writer = vfs(None);
        let root = Ctx::root();
        let data: Vec<Vec<u8>> = (0..2u8).map(|i| vec![i + 1; 300_000]).collect();
        let mut inos = Vec::new();
        for (i, d) in data.iter().enumerate() {
            let (fh, attr) = writer
                .create(&root, Ino::ROOT, format!("f{i}").as_bytes(), 0o644, 0, 1)
                .unwrap();
            writer.write(fh, 0, d).unwrap();
            writer.flush(fh).unwrap();
            writer.release(fh).unwrap();
            inos.push(attr.ino);
        }
        // The owner, and two --no-sharing readers without caches.
        let owner = vfs(Some(cache()));
        let server = PeerServer::start("127.0.0.1:0", KEY, owner.block_service()).unwrap();
        let reg = Registration {
            addr: server.addr().to_string(),
            weight: 1,
            seen: clock()().sec as u64,
        };
        let members = vec![("owner".to_string(), reg)];
        let join = |v: &Vfs, me: Option<&str>| {
            let g = Arc::new(Group::new(
                "g",
                me,
                Arc::new(TcpPeers::new(KEY)),
                Duration::from_secs(5),
                clock(),
            ));
            g.update(&members);
            v.join_group(g).unwrap();
        };
        join(&owner, Some("owner"));
        let readers = [vfs(None), vfs(None)];
        for r in &readers {
            join(r, None);
        }
        let threads: Vec<_> = readers
            .iter()
            .flat_map(|r| (0..4).map(move |_| r.clone()))
            .map(|r| {
                let (ino, want) = (inos[0], data[0].clone());
                std::thread::spawn(move || {
                    let (fh, _) = r.open(&Ctx::root(), ino, 0).unwrap();
                    assert_eq!(r.read(fh, 0, 300_000).unwrap(), want);
                    r.release(fh).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(owner.store_gets(), 1, "the owner fetched the block once");
        assert!(readers.iter().all(|r| r.store_gets() == 0));
        // Warm-up from a reader lands the other file in the owner's cache.
        for key in readers[0].blocks_of_file(inos[1]).unwrap() {
            let w = readers[0]
                .warm_block(&key, crate::vfs::WarmMode::Fill)
                .unwrap();
            assert_eq!(w.fetched, w.bytes);
            assert!(owner.block_cache().unwrap().contains(&key));
            let w = readers[1]
                .warm_block(&key, crate::vfs::WarmMode::Check)
                .unwrap();
            assert_eq!((w.cached, w.fetched), (w.bytes, 0));
        }
        assert_eq!(owner.store_gets(), 2);
    }
}
