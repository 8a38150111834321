//! The simulator's promises: runs are reproducible from their seed, a sound ferrofs
//! passes, and every planted bug is found within a bounded number of seeds.

use sim::{run, FaultSet, Plant, RunConfig, RunReport};

fn config(seed: u64) -> RunConfig {
    RunConfig {
        seed,
        steps: 80,
        ..RunConfig::default()
    }
}

/// The first seed among `0..max` whose run fails as `how` says, with its report.
fn first_failure(cfg: &RunConfig, max: u64, how: impl Fn(&str) -> bool) -> Option<RunReport> {
    (0..max)
        .map(|seed| {
            run(&RunConfig {
                seed,
                ..cfg.clone()
            })
        })
        .find(|r| r.failure.as_deref().is_some_and(&how))
}

#[test]
fn same_seed_same_trace_different_seed_different_trace() {
    let a = run(&config(7));
    let b = run(&config(7));
    let c = run(&config(8));
    assert!(
        a.events > 500,
        "a run should do something: {} events",
        a.events
    );
    assert_eq!(
        (a.trace_hash, a.events, a.sim_ns),
        (b.trace_hash, b.events, b.sim_ns),
        "seed 7 ran twice differently"
    );
    assert_ne!(
        a.trace_hash, c.trace_hash,
        "seeds 7 and 8 gave the same trace"
    );
    // The clients' block caches took part (their disks are yield points too).
    assert!(a.cache.hits > 0 && a.cache.admitted > 0, "{:?}", a.cache);
    assert_eq!(a.cache, b.cache);
    // Also with only the cache-disk faults.
    let disk = |seed| RunConfig {
        faults: FaultSet::parse("cache-disk").unwrap(),
        ..config(seed)
    };
    let (d, e) = (run(&disk(11)), run(&disk(11)));
    assert_eq!(
        (d.trace_hash, d.events, d.counts, d.cache),
        (e.trace_hash, e.events, e.counts, e.cache)
    );
    // Also with a planted bug (the failing run is reproducible too).
    let plant = |seed| RunConfig {
        plant: Some(Plant::NonAtomicTxn),
        ..config(seed)
    };
    let (p, q) = (run(&plant(3)), run(&plant(3)));
    assert_eq!((p.trace_hash, &p.failure), (q.trace_hash, &q.failure));
}

#[test]
fn a_sound_ferrofs_passes_forty_seeds_with_every_fault() {
    let mut fired = sim::faults::FaultCounts::default();
    for seed in 1000..1040 {
        let r = run(&RunConfig {
            steps: 100,
            ..config(seed)
        });
        assert!(r.passed(), "seed {seed} failed: {}", r.failure.unwrap());
        for f in sim::faults::Fault::ALL {
            fired.add(f, r.counts.get(f));
        }
    }
    // Every fault class actually fired somewhere in the batch.
    for f in sim::faults::Fault::ALL {
        assert!(fired.get(f) > 0, "{} never fired in 40 seeds", f.name());
    }
}

#[test]
fn many_clients_and_a_lone_client_pass_too() {
    for (seed, clients) in [(1, 6), (2, 6), (3, 1), (4, 1), (5, 2)] {
        let r = run(&RunConfig {
            clients,
            ..config(seed)
        });
        assert!(
            r.passed(),
            "seed {seed} with {clients} clients failed: {}",
            r.failure.unwrap()
        );
    }
}

#[test]
fn without_faults_nothing_fires_and_everything_passes() {
    for seed in 0..5 {
        let r = run(&RunConfig {
            faults: FaultSet::none(),
            ..config(seed)
        });
        assert!(r.passed(), "seed {seed} failed: {}", r.failure.unwrap());
        assert_eq!(r.counts, Default::default());
        assert_eq!(r.data.eio_injected, 0);
        assert!(r.data.exact_reads > 0);
    }
}

/// Runs seeds until `plant` is found as `how` says; fails if 200 seeds miss it.
fn finds(plant: Plant, check_every: u64, how: impl Fn(&str) -> bool) -> RunReport {
    let cfg = RunConfig {
        plant: Some(plant),
        check_every,
        ..config(0)
    };
    let r = first_failure(&cfg, 200, how)
        .unwrap_or_else(|| panic!("planted bug {plant} survived 200 seeds"));
    eprintln!(
        "{plant} (check every {check_every}) found by seed {}: {}",
        r.seed,
        r.failure.as_deref().unwrap_or("")
    );
    r
}

#[test]
fn planted_non_atomic_txn_is_found_by_the_metadata_checker() {
    finds(Plant::NonAtomicTxn, 200, |f| f.contains("metadata:"));
}

#[test]
fn planted_lost_object_put_is_found_by_the_objects_checker() {
    finds(Plant::LostObjectPut, 200, |f| f.contains("objects:"));
}

#[test]
fn planted_skipped_checksum_is_found_by_the_data_checker() {
    // Corrupt GET responses are injected by the store faults; verified, they are EIO.
    finds(Plant::SkipChecksum, 200, |f| {
        f.contains("garbage") || f.contains("data loss")
    });
}

#[test]
fn planted_slice_id_reuse_is_found_by_the_metadata_checker() {
    finds(Plant::SliceIdReuse, 200, |f| f.contains("metadata:"));
}

#[test]
fn planted_slice_id_reuse_is_found_by_the_data_checker_alone() {
    // No whole-world checks: the clients' reads must notice wrong or missing bytes.
    finds(Plant::SliceIdReuse, 0, |f| {
        !f.contains("final check")
            && (f.contains("garbage") || f.contains("data loss") || f.contains("EIO"))
    });
}

#[test]
fn planted_misdirected_cache_read_is_found_by_the_data_checker() {
    // A cache disk returning another block's (well-formed) file: no checksum catches it.
    finds(Plant::MisdirectedCacheRead, 200, |f| {
        f.contains("garbage") || f.contains("data loss")
    });
}

#[test]
fn planted_ignored_cache_delete_is_found_by_the_cache_checker() {
    finds(Plant::IgnoredCacheDelete, 200, |f| f.contains("cache:"));
}

#[test]
fn planted_unsynced_staging_is_found_by_the_data_checker() {
    // Writeback that does not make staged blocks durable: a system crash loses data
    // whose metadata was committed.
    finds(Plant::UnsyncedStaging, 200, |f| {
        f.contains("data loss") || f.contains("EIO") || f.contains("objects:")
    });
}

#[test]
fn planted_lying_fsync_is_found_by_the_data_checker() {
    finds(Plant::LyingFsync, 200, |f| f.contains("data loss"));
}

#[test]
fn planted_swallowed_meta_error_is_found() {
    // A commit the metadata disk failed reported as a success: files closed "fine"
    // lose their data, or the namespace goes inconsistent.
    finds(Plant::SwallowedMetaError, 200, |f| {
        f.contains("data loss") || f.contains("metadata:") || f.contains("garbage")
    });
}

#[test]
fn meta_disk_faults_fire_and_clients_see_them() {
    let mut counts = sim::faults::FaultCounts::default();
    let (mut explained, mut passed) = (0, 0);
    for seed in 0..30 {
        let r = run(&RunConfig {
            faults: FaultSet::parse("meta-disk").unwrap(),
            ..config(seed)
        });
        assert!(r.passed(), "seed {seed} failed: {}", r.failure.unwrap());
        passed += 1;
        for f in sim::faults::Fault::ALL {
            counts.add(f, r.counts.get(f));
        }
        explained += r.data.eio_injected + r.data.enospc_injected + r.data.op_errors_injected;
    }
    use sim::faults::Fault;
    for f in [Fault::MetaIoError, Fault::MetaDiskFull, Fault::MetaNoSpace] {
        assert!(
            counts.get(f) > 0,
            "{} never fired in {passed} seeds",
            f.name()
        );
    }
    assert_eq!(counts.get(Fault::StoreError), 0, "only meta-disk faults");
    assert!(explained > 0, "no client ever saw a meta-disk error");
}

#[test]
fn cache_disk_faults_fire_and_never_reach_applications() {
    use sim::faults::Fault;
    let mut counts = sim::faults::FaultCounts::default();
    let mut cache = sim::client_cache::CacheTotals::default();
    for seed in 0..30 {
        let r = run(&RunConfig {
            faults: FaultSet::parse("cache-disk").unwrap(),
            ..config(seed)
        });
        assert!(r.passed(), "seed {seed} failed: {}", r.failure.unwrap());
        for f in Fault::ALL {
            counts.add(f, r.counts.get(f));
        }
        cache.merge(&r.cache);
        // A damaged copy or a failed dir is a miss, read from the store: no client
        // ever sees an error for it.
        let d = r.data;
        assert_eq!(
            (d.eio_injected, d.enospc_injected, d.op_errors_injected),
            (0, 0, 0),
            "seed {seed}: a cache-disk fault reached an application"
        );
    }
    for f in [
        Fault::CacheIoError,
        Fault::CacheDiskFull,
        Fault::CacheNoSpace,
        Fault::CacheCorrupt,
        Fault::CacheTorn,
        Fault::CacheVanished,
    ] {
        assert!(counts.get(f) > 0, "{} never fired in 30 seeds", f.name());
    }
    assert_eq!(counts.get(Fault::StoreError), 0, "only cache-disk faults");
    assert!(
        cache.checksum_failures > 0,
        "no damaged copy was caught: {cache:?}"
    );
    assert!(cache.failed_dirs > 0, "no dir was taken out: {cache:?}");
    assert!(cache.evicted > 0 && cache.hits > 0, "{cache:?}");
    assert!(cache.checks > 0, "no clean unmount was checked");
}

#[test]
fn cache_group_seeds_pass_with_peers_serving_under_peer_faults() {
    use sim::peers::{PeerTotals, LATENCY_SLACK_NS, PEER_TIMEOUT};
    let group = |seed| RunConfig {
        group: true,
        ..config(seed)
    };
    let mut t = PeerTotals::default();
    for seed in 0..6 {
        let r = run(&group(seed));
        assert!(r.passed(), "seed {seed} failed: {}", r.failure.unwrap());
        assert!(r.group);
        t.merge(&r.peers);
    }
    // Peers actually gave each other blocks, and the faults actually bit.
    assert!(t.hits > 0 && t.served > 0, "{t:?}");
    assert!(t.corrupt + t.timeouts > 0, "{t:?}");
    assert!(t.joins > 0 && t.leaves > 0 && t.warms > 0, "{t:?}");
    // Every call ended within its deadline: the fallback to object storage is bounded.
    let bound = PEER_TIMEOUT.as_nanos() as u64 + LATENCY_SLACK_NS;
    assert!(t.max_latency_ns <= bound, "{t:?}");
    // Reproducible from the seed, groups and all.
    let (a, b) = (run(&group(5)), run(&group(5)));
    assert_eq!(
        (a.trace_hash, a.events, a.peers),
        (b.trace_hash, b.events, b.peers)
    );
}

#[test]
fn planted_peer_skip_verify_is_found_by_the_data_checker() {
    // Members taking peers' blocks unchecked while replies are corrupted in flight.
    let r = finds(Plant::PeerSkipVerify, 200, |f| {
        f.contains("garbage") || f.contains("data loss")
    });
    assert!(r.group);
}
