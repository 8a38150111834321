//! One run of the simulator: a seed in, a report out.
//!
//! Phases, as FoundationDB's workloads have them: **setup** (format the volume, make the
//! fixed directories and files, sync), **workload** (every client runs its steps under
//! the faults; the world checks itself every few hundred yields), **heal** (faults off;
//! a fresh client alone cleans up orphans, runs gc to completion and reads everything
//! back), **check** (the metadata and objects checkers, strictly).

use crate::cache_disk::CacheDisks;
use crate::client;
use crate::client_cache::CacheTotals;
use crate::faults::{FaultCounts, FaultSet, Rates};
use crate::finale;
use crate::kv::SimKv;
use crate::oracle::DataStats;
use crate::peers::{PeerNet, PeerRates, PeerTotals};
use crate::plant::Plant;
use crate::rng::Rng;
use crate::trace::WORLD;
use crate::workload::{self, Layout, Program, DATA_FILES};
use crate::world::World;
use ferrofs_core::format::{Format, MIN_BLOCK_SIZE};
use ferrofs_core::meta::Meta;
use ferrofs_core::{Ctx, FileType, Ino, Timespec};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The volume's block size: the smallest allowed, so that files span several blocks.
pub const BLOCK_SIZE: u32 = MIN_BLOCK_SIZE;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub clients: usize,
    /// Operations per client.
    pub steps: u64,
    pub faults: FaultSet,
    pub plant: Option<Plant>,
    /// Print every event.
    pub trace: bool,
    /// Check the whole world every this many yield points (0: only at the end).
    pub check_every: u64,
    /// Make the clients members of one cache group ([`crate::peers`]): they serve each
    /// other blocks, under the peer faults. (The planted `peer-skip-verify` turns it on.)
    pub group: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 0,
            clients: 3,
            steps: 100,
            faults: FaultSet::all(),
            plant: None,
            trace: false,
            check_every: 200,
            group: false,
        }
    }
}

/// What a run did and found.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    /// The first violation, if any.
    pub failure: Option<String>,
    pub trace_hash: u64,
    pub events: u64,
    /// Virtual time the run took.
    pub sim_ns: u64,
    pub wall: Duration,
    pub counts: FaultCounts,
    pub data: DataStats,
    /// Objects nothing refers to at the end (legitimate after some faults).
    pub leaked: u64,
    pub leaked_bytes: u64,
    /// Uploads never committed (a put failed part-way, or the commit was refused).
    pub abandoned_uploads: u64,
    pub objects: u64,
    pub checks: u64,
    pub switches: u64,
    /// Chunks compacted (slice lists replaced by shorter ones).
    pub compactions: u64,
    /// The clients' block caches, all incarnations together.
    pub cache: CacheTotals,
    /// Whether the clients were a cache group, and its peer traffic.
    pub group: bool,
    pub peers: PeerTotals,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Runs one seed.
pub fn run(cfg: &RunConfig) -> RunReport {
    let started = Instant::now();
    let mut rng = Rng::derive(cfg.seed, 0);
    let rates = Rates::draw(cfg.faults, &mut rng);
    let k = cfg.clients;
    let world = World::new(
        cfg.seed,
        k + 1,
        rates,
        cfg.plant,
        cfg.check_every,
        BLOCK_SIZE,
        cfg.trace,
    );
    // Every client's cache disks (the final client's too): their number and eviction
    // policy, from their own stream so that the rest of the run draws as before.
    let disks = CacheDisks::draw(k + 1, &mut Rng::derive(cfg.seed, 2000));
    world.with(|st| st.cache = disks);
    // The cache group's network, from its own stream (a run without a group draws as
    // before).
    let group = cfg.group || cfg.plant == Some(Plant::PeerSkipVerify);
    let mut prng = Rng::derive(cfg.seed, 3000);
    let prates = PeerRates::draw(group && cfg.faults.peers, &mut prng);
    world.with(|st| st.peers = PeerNet::new(group, k + 1, prates, prng));
    if let Err(e) = setup(&world, k, cfg.seed) {
        world.fail(WORLD, format!("setup failed: {e:?}"));
    }

    // Workload.
    let mut threads = Vec::new();
    for me in 0..k {
        world.activate(me, rng.below(10_000_000));
        let mut program = Program {
            me,
            clients: k,
            steps_left: cfg.steps,
            rng: Rng::derive(cfg.seed, 1 + me as u64),
            incarnations: 0,
        };
        let w = world.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("sim-c{me}"))
                .spawn(move || client::run(w, me, |w| workload::incarnation(w, &mut program)))
                .expect("spawn a client thread"),
        );
    }
    world.start();
    for t in threads {
        let _ = t.join();
    }

    // Heal, clean up, read back.
    if world.with(|st| st.failure.is_none()) {
        world.heal();
        if world.with(|st| st.cache.writeback) {
            // Every client comes back once, as after a reboot, and uploads what it left
            // staged (a client that crashed last never did).
            let mut threads = Vec::new();
            for me in 0..k {
                let now = world.with(|st| st.sched.now);
                world.activate(me, now);
                let w = world.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("sim-c{me}-restart"))
                        .spawn(move || client::run(w, me, |w| workload::restart_and_upload(w, me)))
                        .expect("spawn a restart thread"),
                );
            }
            world.start();
            for t in threads {
                let _ = t.join();
            }
        }
        let now = world.with(|st| st.sched.now);
        world.activate(k, now);
        let w = world.clone();
        let mut jrng = Rng::derive(cfg.seed, 1000);
        let janitor = std::thread::Builder::new()
            .name("sim-final".into())
            .spawn(move || client::run(w, k, |w| finale::janitor(w, k, k, &mut jrng)))
            .expect("spawn the final client");
        world.start();
        let _ = janitor.join();
    }

    // Check.
    let (mut found, objects) = finale::final_checks(&world);
    for name in &objects.leaked_sample {
        world.note(WORLD, "leaked-object", name.as_bytes(), 0);
    }
    let (may_leak, abandoned) = world.with(|st| (st.counts.may_leak(), st.abandoned_uploads));
    if objects.leaked > 0 && !may_leak && abandoned == 0 {
        found.push(format!(
            "objects: {} objects leaked (e.g. {:?}) with no crash, lost response or abandoned upload to explain them",
            objects.leaked, objects.leaked_sample
        ));
    }
    if !found.is_empty() && world.with(|st| st.failure.is_none()) {
        let mut msg = "final check found:".to_string();
        for f in found.iter().take(12) {
            msg.push_str("\n    ");
            msg.push_str(f);
        }
        world.fail(WORLD, msg);
    }
    let st = world.lock();
    RunReport {
        seed: cfg.seed,
        failure: st.failure.clone(),
        trace_hash: st.trace.hash(),
        events: st.trace.events(),
        sim_ns: st.sched.now,
        wall: started.elapsed(),
        counts: st.counts,
        data: st.oracle.stats,
        leaked: objects.leaked,
        leaked_bytes: objects.leaked_bytes,
        abandoned_uploads: st.abandoned_uploads,
        objects: objects.objects,
        checks: st.checks,
        switches: st.sched.switches,
        compactions: st.kv.compactions,
        cache: st.cache.totals,
        group,
        peers: st.peers.totals,
    }
}

/// Formats the volume and makes `/c{k}` for every client, `/data/f{j}` and `/s`, as
/// the simulator itself (no faults, no yields), then syncs.
fn setup(world: &Arc<World>, clients: usize, seed: u64) -> ferrofs_core::Result<()> {
    let kv = Arc::new(SimKv::new(world, WORLD));
    let now = Timespec::new(1_704_067_200, 0);
    let mut format = Format::new("sim-volume", &format!("sim-{seed:016x}"));
    format.storage = "memory".into();
    format.block_size = BLOCK_SIZE;
    Meta::format(&*kv, &format, false, now)?;
    let meta = Meta::load(kv)?;
    let ctx = Ctx::root();
    let mut layout = Layout::default();
    for k in 0..clients {
        let d = meta.mkdir(&ctx, Ino::ROOT, format!("c{k}").as_bytes(), 0o755, 0, now)?;
        layout.owned_dirs.push(d.ino);
    }
    let data = meta.mkdir(&ctx, Ino::ROOT, b"data", 0o755, 0, now)?;
    for j in 0..DATA_FILES {
        let name = format!("f{j}");
        let f = meta.mknod(
            &ctx,
            data.ino,
            name.as_bytes(),
            FileType::RegularFile,
            0o666,
            0,
            0,
            now,
        )?;
        layout.data_files.push(f.ino);
    }
    layout.shared_dir = meta.mkdir(&ctx, Ino::ROOT, b"s", 0o777, 0, now)?.ino;
    world.with(|st| {
        st.kv.sync();
        st.layout = layout;
    });
    Ok(())
}
