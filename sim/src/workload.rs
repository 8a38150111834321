//! What the simulated clients do: random POSIX operations through the real `Vfs`.
//!
//! Each client is a process with its own `Meta` and `Vfs`, acting as root. Its steps:
//! - **owned files** `/c{me}/f{n}`: full rewrites (O_TRUNC, write everything in pieces,
//!   sometimes fsync, close) and now and then an unlink; the oracle learns each outcome;
//! - **reads of owned files** of any client, compared with the oracle at once
//!   (close-to-open across clients);
//! - **shared files** `/data/f{j}`: writes at random offsets by every client (each
//!   logged with its pattern first), reads checked for garbage, truncations, handles
//!   kept open across steps;
//! - **namespace operations** in a small shared tree `/s` ([`crate::namespace`]), so
//!   that creates, renames and unlinks of different clients collide;
//! - garbage collection passes.
//!
//! Every client has a local block cache over its simulated cache disks
//! ([`crate::client_cache`]), reopened at every (re)start. After a (re)start a client
//! first reads back its own files. At the end of its steps it closes everything and
//! leaves, like an unmount (and its cache's accounting is checked).

use crate::checkers::data;
use crate::client_cache::{self, Tally};
use crate::kv::SimKv;
use crate::oracle::{Oracle, Outcome, Shape};
use crate::pattern;
use crate::plant::Plant;
use crate::rng::Rng;
use crate::store::SimStore;
use crate::world::World;
use ferrofs::vfs::{Fh, Vfs, VfsConfig, WarmMode};
use ferrofs_core::cache::meta::MetaCacheTtl;
use ferrofs_core::kv::Kv;
use ferrofs_core::meta::Meta;
use ferrofs_core::{Ctx, Errno, Ino, SetAttr};
use ferrofs_s3_backend::ObjectStore;
use ferrofs_s3_backend::{RetryPolicy, RetryingStore, Sleeper};
use std::sync::Arc;

/// Owned files per client.
pub const OWNED_FILES: u32 = 4;
/// Shared data files.
pub const DATA_FILES: usize = 3;
/// Write buffer of a simulated client: small, so big rewrites flush in several slices.
pub const BUFFER_SIZE: u64 = 160 << 10;
/// Shared files are written within this many bytes.
const SHARED_SPAN: u64 = 192 << 10;
/// Handles a client keeps open across steps.
const MAX_HELD: usize = 3;

/// The fixed part of the volume, made before the clients start.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `/c{k}`, the directory of client `k`'s owned files.
    pub owned_dirs: Vec<Ino>,
    /// `/data/f{j}`.
    pub data_files: Vec<Ino>,
    /// `/s`, the shared namespace.
    pub shared_dir: Ino,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            owned_dirs: Vec::new(),
            data_files: Vec::new(),
            shared_dir: Ino::ROOT,
        }
    }
}

/// What survives a client's crashes: its identity, its random stream, its step budget.
pub struct Program {
    pub me: usize,
    pub clients: usize,
    pub steps_left: u64,
    pub rng: Rng,
    pub incarnations: u32,
}

/// A handle kept open across steps.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    pub fh: Fh,
    pub ino: Ino,
}

/// One incarnation of a client process.
pub struct Client<'a> {
    pub world: &'a Arc<World>,
    pub me: usize,
    pub clients: usize,
    pub vfs: Vfs,
    pub layout: Layout,
    pub rng: &'a mut Rng,
    pub held: Vec<Held>,
    pub ctx: Ctx,
    session: u64,
    /// Adds the block cache's counters to the world's when this incarnation ends.
    _tally: Tally,
    /// This incarnation's cache-group membership (runs with a cache group).
    pub member: Option<crate::peers::Member>,
}

/// Mounts the volume as client `me`: loads it and registers a session. (Unlike the
/// mount, it does not clean up orphans: with other clients alive that would delete
/// their unlinked-but-open files. The final phase does it once, alone.)
pub fn mount(world: &Arc<World>, me: usize) -> Result<(Vfs, u64), Errno> {
    let kv: Arc<dyn Kv> = Arc::new(SimKv::new(world, me));
    let meta = Meta::load(kv)?;
    let session = meta.new_session(&format!("{{\"sim-client\":{me}}}"))?;
    // The production retry loop, with its backoff waits spent in virtual time: injected
    // 5xx, throttling and timeouts are retried as they would be against S3.
    let sleeper_world = world.clone();
    let sleeper: Arc<dyn Sleeper> =
        Arc::new(move |d: std::time::Duration| sleeper_world.think(me, d.as_nanos() as u64));
    let jitter_seed = world.with(|st| st.rng.next_u64());
    let store: Arc<dyn ObjectStore> = Arc::new(RetryingStore::with_sleeper(
        SimStore::new(world, me),
        RetryPolicy::default(),
        sleeper,
        jitter_seed,
    ));
    let config = VfsConfig {
        buffer_size: BUFFER_SIZE,
        // Every store call on the client's own thread, where the scheduler sees it.
        background: false,
        // The oracles expect every client to see a change as soon as it is made
        // (close-to-open aside); metadata TTLs would make other clients lag.
        meta_cache: MetaCacheTtl::OFF,
        verify_checksums: world.plant() != Some(Plant::SkipChecksum),
        writeback: world.with(|st| st.cache.writeback),
        ..VfsConfig::default()
    };
    let (cache, staged) = client_cache::open(world, me);
    let vfs = Vfs::with_cache(Arc::new(meta), store, world.clock(), config, Some(cache));
    // Blocks this client staged before it crashed: queued for upload (uploaded now, if
    // this run writes through), as a mount does.
    vfs.resume_staged(staged);
    Ok((vfs, session))
}

/// The heal phase's restart of client `me`: mount (which queues what it had staged)
/// and unmount (which uploads it).
pub fn restart_and_upload(world: &Arc<World>, me: usize) {
    let clients = world.with(|st| st.cache.disks.len() - 1);
    let mut rng = Rng::derive(me as u64, 4242);
    if let Some(mut c) = Client::mount(world, me, clients, &mut rng) {
        c.unmount();
    }
}

/// Runs one incarnation of a worker: recovery check, steps, unmount. In a cache group
/// the client joins at mount, serves its peers and refreshes its view between steps,
/// and may leave the group cleanly for a while (unmount, stay away, mount again).
pub fn incarnation(world: &Arc<World>, p: &mut Program) {
    let me = p.me;
    loop {
        p.incarnations += 1;
        let Some(mut c) = Client::mount(world, me, p.clients, &mut p.rng) else {
            return;
        };
        if world.with(|st| st.peers.enabled) {
            c.member = Some(crate::peers::Member::join(world, me, &c.vfs));
        }
        for n in 0..OWNED_FILES {
            c.check_owned(me, n);
        }
        let mut leave = false;
        while p.steps_left > 0 && !leave {
            p.steps_left -= 1;
            leave = c.step();
            if let Some(m) = &mut c.member {
                m.between_steps(world, &c.vfs);
            }
            let think = c.rng.latency(5_000_000, 0.05);
            world.think(me, think);
            if c.member.is_some() {
                // What came in while it was thinking.
                world.serve_peers(me, &*c.vfs.block_service());
            }
        }
        c.unmount();
        if !leave || p.steps_left == 0 {
            return;
        }
        drop(c);
        // Away from the group for a while (its peers notice at their next refresh,
        // or by timeouts), then back under the same id.
        let away = p.rng.range(300_000_000, 4_000_000_000);
        world.note(me, "group.away", &[], away);
        world.think(me, away);
    }
}

/// Closes a file the way close(2) does: FLUSH (its error is close's), then RELEASE.
pub fn close(vfs: &Vfs, fh: Fh) -> Result<(), Errno> {
    let flushed = vfs.flush(fh);
    let released = vfs.release(fh);
    flushed.and(released)
}

impl<'a> Client<'a> {
    /// Mounts the volume as client `me` (a failure is recorded as a violation).
    pub fn mount(
        world: &'a Arc<World>,
        me: usize,
        clients: usize,
        rng: &'a mut Rng,
    ) -> Option<Client<'a>> {
        // A mount whose metadata calls hit an injected fault (EIO, a full disk) fails;
        // like an admin, try again a little later. Any other failure is a violation.
        let mut attempt = 0;
        let (vfs, session) = loop {
            let seen0 = world.with(|st| st.faults_seen[me]);
            match mount(world, me) {
                Ok(v) => break v,
                Err(e) => {
                    let injected = world.with(|st| st.faults_seen[me] > seen0);
                    if injected && matches!(e, Errno::EIO | Errno::ENOSPC) && attempt < 100 {
                        attempt += 1;
                        world.with(|st| st.oracle.stats.op_errors_injected += 1);
                        world.note(me, "mount.retry", &[], e.0 as u64);
                        world.think(me, 200_000_000);
                        continue;
                    }
                    world.fail(me, format!("mount failed: {e:?}"));
                    return None;
                }
            }
        };
        let layout = world.with(|st| st.layout.clone());
        let cache = vfs.block_cache().expect("sim clients have a cache").clone();
        Some(Client {
            _tally: Tally {
                world: world.clone(),
                cache,
            },
            world,
            me,
            clients,
            vfs,
            layout,
            rng,
            held: Vec::new(),
            ctx: Ctx::root(),
            session,
            member: None,
        })
    }

    /// One workload step; true: leave the cache group now (unmount, come back later).
    fn step(&mut self) -> bool {
        // The cache group's own steps weigh nothing without one (the draws stay as
        // they were).
        let (warm, leave) = if self.member.is_some() {
            (4, 1)
        } else {
            (0, 0)
        };
        match self
            .rng
            .weighted(&[24, 2, 18, 12, 8, 2, 24, 5, 3, 6, warm, leave])
        {
            0 => self.rewrite_owned(),
            1 => self.unlink_owned(),
            2 => {
                let k = self.rng.index(self.clients);
                let n = self.rng.below(OWNED_FILES as u64) as u32;
                self.check_owned(k, n);
            }
            3 => self.write_shared(),
            4 => self.read_shared(),
            5 => self.truncate_shared(),
            6 => crate::namespace::step(self),
            7 => self.close_held(),
            8 => {
                let limit = self.rng.range(1, 40) as usize;
                self.world.note(self.me, "op.gc", &[], limit as u64);
                let _ = self.vfs.collect_garbage(limit);
            }
            9 => {
                // The writeback uploader's turn (it runs on the client's own thread).
                let limit = self.rng.range(1, 20) as usize;
                self.world.note(self.me, "op.writeback", &[], limit as u64);
                self.vfs.upload_staged(limit);
            }
            10 => self.warm_shared(),
            _ => {
                self.world.note(self.me, "group.leave", &[], 0);
                return true;
            }
        }
        false
    }

    /// Warms (or checks, or evicts) a few blocks of a shared file, through their
    /// owners: unreachable owners make it fail (EIO), which is allowed.
    fn warm_shared(&mut self) {
        let ino = self.layout.data_files[self.rng.index(DATA_FILES)];
        let mode = match self.rng.weighted(&[6, 2, 1]) {
            0 => WarmMode::Fill,
            1 => WarmMode::Check,
            _ => WarmMode::Evict,
        };
        self.world
            .note(self.me, "op.warm", format!("{mode:?}").as_bytes(), ino.0);
        let Ok(keys) = self.vfs.blocks_of_file(ino) else {
            return;
        };
        if keys.is_empty() {
            return;
        }
        let first = self.rng.index(keys.len());
        let (mut warms, mut errors) = (0, 0);
        let n = keys.len().min(self.rng.range(1, 4) as usize);
        for key in keys.iter().cycle().skip(first).take(n) {
            warms += 1;
            if self.vfs.warm_block(key, mode).is_err() {
                errors += 1;
            }
        }
        self.world.with(|st| {
            st.peers.totals.warms += warms;
            st.peers.totals.warm_errors += errors;
        });
    }

    fn owned_name(n: u32) -> Vec<u8> {
        format!("f{n}").into_bytes()
    }

    /// A length for a new version: mostly small, sometimes several 64 KiB blocks.
    fn pick_len(&mut self) -> u64 {
        match self.rng.weighted(&[20, 30, 35, 15]) {
            0 => self.rng.below(4 << 10),
            1 => self.rng.range(4 << 10, 64 << 10),
            2 => self.rng.range(64 << 10, 200 << 10),
            _ => self.rng.range(200 << 10, 300 << 10),
        }
    }

    fn rewrite_owned(&mut self) {
        let (me, n) = (self.me, self.rng.below(OWNED_FILES as u64) as u32);
        let len = self.pick_len();
        let v = self.world.with(|st| st.oracle.owned(me, n).begin(len));
        self.world.note(
            me,
            "op.rewrite",
            &Self::owned_name(n),
            (v as u64) << 32 | len,
        );
        let complete = self.rewrite(n, v, len);
        let outcome = if complete {
            Outcome::Done
        } else {
            Outcome::Uncertain
        };
        self.world.with(|st| {
            let (seq, acked) = (st.kv.last_commit_of(me), st.kv.acked_sync);
            st.oracle.owned(me, n).end(outcome, seq, acked);
        });
        if complete && self.rng.chance(0.2) {
            self.check_owned(me, n); // read your own writes
        }
    }

    /// Writes version `v` of owned file `n`; true if every step succeeded.
    fn rewrite(&mut self, n: u32, v: u32, len: u64) -> bool {
        let dir = self.layout.owned_dirs[self.me];
        let name = Self::owned_name(n);
        let fh = match self.vfs.lookup(&self.ctx, dir, &name) {
            Ok(a) => {
                let Ok((fh, _)) = self.vfs.open(&self.ctx, a.ino, libc::O_WRONLY) else {
                    return false;
                };
                // O_TRUNC as the kernel sends it without atomic_o_trunc: a SETATTR.
                let set = SetAttr {
                    size: Some(0),
                    ..SetAttr::default()
                };
                if self.vfs.setattr(&self.ctx, a.ino, &set, None).is_err() {
                    let _ = self.vfs.release(fh);
                    return false;
                }
                fh
            }
            Err(Errno::ENOENT) => {
                let flags = libc::O_WRONLY | libc::O_CREAT;
                match self.vfs.create(&self.ctx, dir, &name, 0o644, 0o022, flags) {
                    Ok((fh, _)) => fh,
                    Err(_) => return false,
                }
            }
            Err(_) => return false,
        };
        let stream = pattern::owned_stream(self.me, n, v);
        let mut off = 0;
        let mut ok = true;
        while off < len {
            let piece = self.rng.range(1, 96 << 10).min(len - off);
            let buf = pattern::bytes(stream, off, piece as usize);
            match self.vfs.write(fh, off, &buf) {
                Ok(w) if w as u64 == piece => off += piece,
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && self.rng.chance(0.4) {
            ok = self.vfs.fsync(fh).is_ok();
        }
        let closed = close(&self.vfs, fh).is_ok();
        ok && closed
    }

    fn unlink_owned(&mut self) {
        let (me, n) = (self.me, self.rng.below(OWNED_FILES as u64) as u32);
        if self
            .world
            .with(|st| st.oracle.owned(me, n).exact())
            .is_none()
        {
            return; // keep the oracle simple: only unlink files known exactly
        }
        let name = Self::owned_name(n);
        self.world.note(me, "op.unlink-owned", &name, 0);
        let was = self.world.with(|st| {
            let f = st.oracle.owned(me, n);
            let was = f.exact();
            f.begin_unlink();
            was
        });
        let seen0 = self.world.with(|st| st.faults_seen[me]);
        let r = self
            .vfs
            .unlink(&self.ctx, self.layout.owned_dirs[me], &name);
        let verdict = self.world.with(|st| {
            let injected = st.faults_seen[me] > seen0;
            let (seq, acked) = (st.kv.last_commit_of(me), st.kv.acked_sync);
            let f = st.oracle.owned(me, n);
            match r {
                Ok(()) => {
                    f.end(Outcome::Done, seq, acked);
                    Ok(())
                }
                Err(Errno::ENOENT) if was == Some(Shape::Absent) => {
                    f.end(Outcome::Done, seq, acked);
                    Ok(())
                }
                // The metadata disk failed a transaction of the unlink: it may or may
                // not have happened.
                Err(Errno::EIO | Errno::ENOSPC) if injected => {
                    f.end(Outcome::Uncertain, seq, acked);
                    st.oracle.stats.op_errors_injected += 1;
                    Ok(())
                }
                Err(e) => {
                    f.end(Outcome::Unchanged, seq, acked);
                    Err(format!(
                        "unlink of /c{me}/f{n} (known to be {was:?}) failed: {e:?}"
                    ))
                }
            }
        });
        if let Err(msg) = verdict {
            self.world.fail(self.me, msg);
        }
    }

    /// Reads owned file `/c{k}/f{n}` whole and checks it against the oracle.
    pub fn check_owned(&mut self, k: usize, n: u32) {
        let me = self.me;
        let before = self.world.with(|st| {
            let f = st.oracle.owned(k, n);
            (
                f.generation,
                f.busy(),
                f.accepted(),
                f.oldest_live(),
                st.faults_seen[me],
                st.store.gone_reads(me),
                st.cache.holds_unuploaded(k),
            )
        });
        let (gen0, busy, accepted, oldest, seen0, dels0, unup0) = before;
        self.world
            .note(me, "op.check-owned", format!("c{k}/f{n}").as_bytes(), gen0);
        let got = self.read_whole(self.layout.owned_dirs[k], &Self::owned_name(n));
        let verdict = self.world.with(|st| {
            let f = st.oracle.owned(k, n);
            // The file was at rest for the whole read (close-to-open applies); else the
            // read raced a rewrite, and each of its read() calls may see another state.
            let stable = f.generation == gen0 && !busy;
            let versions = f.versions_since(oldest);
            let (seen1, dels1) = (st.faults_seen[me], st.store.gone_reads(me));
            let r = match &got {
                Ok(bytes) if stable => data::check_owned(k, n, &accepted, bytes.as_deref()),
                Ok(Some(bytes)) => data::check_owned_attributable(k, n, &versions, 0, bytes),
                Ok(None) => Ok(()),
                Err(e) => {
                    let gone = dels1 > dels0 && !stable;
                    let unuploaded = unup0 || st.cache.holds_unuploaded(k);
                    let cause = Causes {
                        injected: seen1 > seen0,
                        gone,
                        may_vanish: !stable,
                        unuploaded,
                    };
                    explain_error(&mut st.oracle, *e, cause)
                        .map_err(|m| format!("reading /c{k}/f{n}: {m}"))
                }
            };
            match (&got, stable, &r) {
                (Ok(Some(b)), true, Ok(())) => {
                    st.oracle.stats.exact_reads += 1;
                    st.oracle.stats.bytes_checked += b.len() as u64;
                }
                (Ok(Some(b)), false, Ok(())) => {
                    st.oracle.stats.raced_reads += 1;
                    st.oracle.stats.bytes_checked += b.len() as u64;
                }
                _ => {}
            }
            r
        });
        if let Err(msg) = verdict {
            self.world.fail(me, msg);
        }
    }

    /// The whole content of `dir/name` (`None` if it does not exist), read in pieces.
    pub fn read_whole(&mut self, dir: Ino, name: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
        let a = match self.vfs.lookup(&self.ctx, dir, name) {
            Ok(a) => a,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let (fh, _) = self.vfs.open(&self.ctx, a.ino, libc::O_RDONLY)?;
        let mut out = Vec::new();
        let r = loop {
            let piece = self.rng.range(4 << 10, 160 << 10) as u32;
            match self.vfs.read(fh, out.len() as u64, piece) {
                Ok(b) => {
                    let short = b.len() < piece as usize;
                    out.extend_from_slice(&b);
                    if short {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let _ = self.vfs.release(fh);
        r.map(|()| Some(out))
    }

    /// An open handle on shared inode `ino`: a held one, or a new one (`true`: close it
    /// after use).
    fn shared_handle(&mut self, ino: Ino, flags: i32) -> Result<(Fh, bool), Errno> {
        if let Some(h) = self.held.iter().find(|h| h.ino == ino) {
            return Ok((h.fh, false));
        }
        let (fh, _) = self.vfs.open(&self.ctx, ino, flags)?;
        Ok((fh, true))
    }

    /// Done with a handle from [`Client::shared_handle`]: close it, or keep it open.
    fn done_with(&mut self, fh: Fh, ino: Ino, fresh: bool) {
        if !fresh {
            return;
        }
        if self.held.len() < MAX_HELD && self.rng.chance(0.3) {
            self.held.push(Held { fh, ino });
        } else {
            let _ = close(&self.vfs, fh);
        }
    }

    /// Writes 1–3 patterned extents into `ino` through `fh`.
    pub fn write_extents(&mut self, fh: Fh, ino: Ino) {
        for _ in 0..self.rng.range(1, 4) {
            let off = self.rng.below(SHARED_SPAN);
            let len = self.rng.range(1, 24 << 10);
            let stream = self
                .world
                .with(|st| st.oracle.shared_write(ino.0, off, len));
            let buf = pattern::bytes(stream, off, len as usize);
            if self.vfs.write(fh, off, &buf).is_err() {
                break;
            }
        }
    }

    /// A shared file to use: one of `/data`, or (sometimes) whatever a held handle has
    /// open — maybe a file of `/s` that was renamed or removed since.
    fn pick_shared(&mut self) -> Ino {
        if !self.held.is_empty() && self.rng.chance(0.3) {
            return self.held[self.rng.index(self.held.len())].ino;
        }
        self.layout.data_files[self.rng.index(DATA_FILES)]
    }

    fn write_shared(&mut self) {
        let ino = self.pick_shared();
        self.world.note(self.me, "op.write-shared", &[], ino.0);
        let Ok((fh, fresh)) = self.shared_handle(ino, libc::O_RDWR) else {
            return;
        };
        self.write_extents(fh, ino);
        if self.rng.chance(0.2) {
            let _ = self.vfs.fsync(fh);
        }
        self.done_with(fh, ino, fresh);
    }

    fn read_shared(&mut self) {
        let ino = self.pick_shared();
        self.world.note(self.me, "op.read-shared", &[], ino.0);
        let Ok((fh, fresh)) = self.shared_handle(ino, libc::O_RDONLY) else {
            return;
        };
        let off = self.rng.below(SHARED_SPAN + (16 << 10));
        let len = self.rng.range(1, 64 << 10) as u32;
        self.read_checked(fh, ino, off, len);
        self.done_with(fh, ino, fresh);
    }

    /// Reads `len` bytes at `off` of shared inode `ino` and checks them for garbage.
    pub fn read_checked(&mut self, fh: Fh, ino: Ino, off: u64, len: u32) {
        let me = self.me;
        let (seen0, dels0) = self
            .world
            .with(|st| (st.faults_seen[me], st.store.gone_reads(me)));
        let got = self.vfs.read(fh, off, len);
        let verdict = self.world.with(|st| {
            let (seen1, dels1) = (st.faults_seen[me], st.store.gone_reads(me));
            match &got {
                Ok(b) => {
                    st.oracle.stats.shared_reads += 1;
                    st.oracle.stats.bytes_checked += b.len() as u64;
                    let log = st
                        .oracle
                        .shared
                        .get(&ino.0)
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    data::check_shared(ino.0, log, off, b)
                }
                // The file was removed by another client, whose `Meta` cannot know this
                // one has it open (open counts are per process).
                Err(Errno::ENOENT) => {
                    st.oracle.stats.enoent_open += 1;
                    Ok(())
                }
                Err(e) => {
                    let unuploaded =
                        (0..st.cache.disks.len()).any(|k| st.cache.holds_unuploaded(k));
                    let cause = Causes {
                        injected: seen1 > seen0,
                        gone: dels1 > dels0,
                        may_vanish: true,
                        unuploaded,
                    };
                    explain_error(&mut st.oracle, *e, cause)
                        .map_err(|m| format!("reading inode {}: {m}", ino.0))
                }
            }
        });
        if let Err(msg) = verdict {
            self.world.fail(me, msg);
        }
    }

    fn truncate_shared(&mut self) {
        let ino = self.layout.data_files[self.rng.index(DATA_FILES)];
        let size = self.rng.below(SHARED_SPAN);
        self.world.note(self.me, "op.truncate-shared", &[], size);
        let set = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        let _ = self.vfs.setattr(&self.ctx, ino, &set, None);
    }

    fn close_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let h = self.held.remove(self.rng.index(self.held.len()));
        self.world.note(self.me, "op.close-held", &[], h.ino.0);
        let _ = close(&self.vfs, h.fh);
    }

    /// Keeps `fh` open across steps if there is room; else closes it.
    pub fn hold_or_close(&mut self, fh: Fh, ino: Ino) {
        self.done_with(fh, ino, true);
    }

    /// Closes everything, flushes, leaves the session: an unmount.
    pub fn unmount(&mut self) {
        for h in std::mem::take(&mut self.held) {
            let _ = close(&self.vfs, h.fh);
        }
        let _ = self.vfs.shutdown();
        // As a mount does at unmount: upload what is staged while the store takes it;
        // the rest stays staged for the next incarnation.
        while self.vfs.writeback_backlog() > 0 && self.vfs.upload_staged(32) > 0 {}
        if let Some(m) = self.member.take() {
            m.leave(self.world, &self.vfs);
        }
        let _ = self.vfs.meta().close_session(self.session);
        if let Some(cache) = self.vfs.block_cache() {
            client_cache::check_unmount(self.world, self.me, cache);
        }
    }
}

/// Whether a read error has a cause the simulation knows of: an injected store or
/// metadata-disk error returned to the reader (`injected`: EIO, or ENOSPC from a full
/// metadata disk), an object deleted by gc while the read was under
/// way (`gone`: the file was truncated, rewritten or compacted meanwhile), or a file that
/// may have been removed meanwhile (`may_vanish`). Counts the cause; an error with no
/// cause is a violation.
/// What may explain a read error (see [`explain_error`]).
pub struct Causes {
    /// An injected store or metadata-disk error reached the reader.
    pub injected: bool,
    /// Objects the read planned were deleted by gc meanwhile.
    pub gone: bool,
    /// The file may have been removed meanwhile.
    pub may_vanish: bool,
    /// The writer writes back and has blocks staged but not uploaded (or lost them):
    /// they are missing from the store for everyone else.
    pub unuploaded: bool,
}

pub fn explain_error(oracle: &mut Oracle, e: Errno, c: Causes) -> Result<(), String> {
    let Causes {
        injected,
        gone,
        may_vanish,
        unuploaded,
    } = c;
    match e {
        Errno::EIO if injected => {
            oracle.stats.eio_injected += 1;
            Ok(())
        }
        Errno::ENOSPC if injected => {
            oracle.stats.enospc_injected += 1;
            Ok(())
        }
        Errno::EIO if unuploaded => {
            oracle.stats.eio_unuploaded += 1;
            Ok(())
        }
        // A reader whose objects were collected under it re-reads the slice list and
        // retries: an EIO from that race is a bug.
        Errno::EIO if gone => {
            oracle.stats.eio_raced_gc += 1;
            Err("EIO from a read racing a rewrite and gc: the reader must re-plan from the new slice list".to_string())
        }
        Errno::ENOENT if may_vanish => Ok(()),
        e => Err(format!(
            "{} ({}) with no injected fault or race to explain it",
            e.name(),
            e.description()
        )),
    }
}
