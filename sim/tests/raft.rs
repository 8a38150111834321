//! The Raft layer of the replicated engine under the simulator: real replicas, a
//! simulated network and crashes (`sim::raft_cluster`).

use sim::raft_cluster::{run, RaftPlant, RaftRunConfig};

#[test]
fn a_sound_cluster_passes_seeds_with_faults() {
    let (mut acked, mut reads) = (0, 0);
    for seed in 0..12 {
        let r = run(RaftRunConfig::new(seed));
        assert!(r.passed(), "seed {seed}: {:#?}", r);
        reads += r.reads;
        assert!(
            r.crashes > 0 && r.partitions > 0 && r.dropped > 0,
            "seed {seed}: faults did not fire: {r:?}"
        );
        acked += r.acked;
    }
    assert!(acked > 100, "too little work got done: {acked} increments");
    assert!(reads > 100, "too few linearizable reads: {reads}");
}

#[test]
fn five_replicas_pass_too() {
    for seed in 100..104 {
        let r = run(RaftRunConfig {
            replicas: 5,
            ..RaftRunConfig::new(seed)
        });
        assert!(r.passed(), "seed {seed}: {r:#?}");
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = run(RaftRunConfig::new(7));
    let b = run(RaftRunConfig::new(7));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.acked, b.acked);
}

#[test]
fn planted_ack_before_sync_is_caught() {
    let caught = (0..40).find(|&seed| {
        !run(RaftRunConfig {
            plant: Some(RaftPlant::AckBeforeSync),
            ..RaftRunConfig::new(seed)
        })
        .passed()
    });
    assert!(
        caught.is_some(),
        "40 seeds with acknowledgements before sync passed"
    );
}

#[test]
fn planted_stale_reads_are_caught_by_the_linearizability_checker() {
    let caught = (0..40).find_map(|seed| {
        let r = run(RaftRunConfig {
            plant: Some(RaftPlant::StaleReads),
            ..RaftRunConfig::new(seed)
        });
        r.violations
            .into_iter()
            .find(|v| v.contains("not linearizable"))
    });
    assert!(caught.is_some(), "40 seeds with stale reads passed");
}
