//! Prints how often each operation succeeds or fails with which errno under the
//! generator, run against the model: `cargo run -p ferrofs-model-tests --example op_stats`.
//! Use it to check that a change to the strategies still reaches the interesting cases.

use ferrofs_model_tests::model::{ModelConfig, ModelTarget};
use ferrofs_model_tests::ops::{ops, Show};
use ferrofs_model_tests::target::{Runner, Target, Value};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::collections::BTreeMap;

fn main() {
    let mut rng = TestRunner::deterministic();
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut sizes = Vec::new();
    for _ in 0..256 {
        let seq = ops(50).new_tree(&mut rng).unwrap().current();
        let mut m = ModelTarget::new(ModelConfig {
            protected_hardlinks: true,
            ..ModelConfig::default()
        });
        let mut runner = Runner::default();
        for gen in &seq {
            let op = &runner.next(gen);
            let name = format!("{}", Show(op));
            let kind = name
                .split_whitespace()
                .nth(if name.contains(':') { 1 } else { 0 })
                .unwrap()
                .to_string();
            let out = m.apply(op);
            let o = match out {
                Ok(Value::Data(d)) => {
                    if d.is_empty() {
                        "ok-empty".into()
                    } else {
                        "ok-data".into()
                    }
                }
                Ok(_) => "ok".to_string(),
                Err(e) => format!("{e:?}"),
            };
            *counts.entry((kind, o)).or_default() += 1;
        }
        sizes.push(m.tree().0.len());
    }
    let mut last = String::new();
    for ((k, o), n) in counts {
        if k != last {
            println!();
            print!("{k:10}");
            last = k;
        }
        print!(" {o}={n}");
    }
    println!();
    sizes.sort();
    println!(
        "tree sizes: median {} max {}",
        sizes[sizes.len() / 2],
        sizes.last().unwrap()
    );
}
