//! The ferrofs client library and core (`Vfs` over `Meta`, in memory) against the
//! reference model: every operation's outcome, the final namespace, and — once every
//! handle is closed — the object store against the metadata (no missing and no leaked
//! objects after gc). Plus directory listing through many pages.
//!
//! `cargo test -p ferrofs-model-tests --test model_vs_core`; more cases with
//! `PROPTEST_CASES=5000`. A failure prints the concrete operation sequence (shrunk).

use ferrofs_core::{Ctx, Ino};
use ferrofs_model_tests::cases::{self, Layer};
use ferrofs_model_tests::model::{ModelConfig, ModelTarget};
use ferrofs_model_tests::ops::{ops, Access, OpT, OpenFlags, Path, Who};
use ferrofs_model_tests::target::{run_and_compare, Target, Value};
use ferrofs_model_tests::vfs::VfsTarget;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn core_agrees_with_model(seq in ops(50)) {
        // The protected_* sysctls are kernel policy: the library has no kernel in front.
        let mut model = ModelTarget::new(ModelConfig::default());
        let mut vfs = VfsTarget::new();
        if let Err(m) = run_and_compare(&seq, &mut model, &mut vfs) {
            prop_assert!(false, "{}", m.report);
        }
        vfs.close_all();
        let problems = vfs.check_storage();
        prop_assert!(problems.is_empty(), "storage invariants after closing everything:\n  {}", problems.join("\n  "));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// The same metadata code over the replicated engine's optimistic client: each
    /// transaction's reads recorded and checked, its writes applied as one command.
    #[test]
    fn core_over_the_replicated_engine_agrees_with_model(seq in ops(50)) {
        let mut model = ModelTarget::new(ModelConfig::default());
        let mut vfs = VfsTarget::replicated();
        if let Err(m) = run_and_compare(&seq, &mut model, &mut vfs) {
            prop_assert!(false, "{}", m.report);
        }
        vfs.close_all();
        let problems = vfs.check_storage();
        prop_assert!(problems.is_empty(), "storage invariants after closing everything:\n  {}", problems.join("\n  "));
    }
}

fn create(vfs: &mut VfsTarget, path: &[&'static str]) {
    let flags = OpenFlags {
        access: Access::Write,
        creat: true,
        excl: true,
        trunc: false,
    };
    let op = OpT::Open {
        who: Who::Root,
        path: Path(path.to_vec()),
        flags,
        mode: 0o644,
        slot: 0,
    };
    assert_eq!(vfs.apply(&op), Ok(Value::Done), "create {path:?}");
    assert_eq!(vfs.apply(&OpT::Close { slot: 0 }), Ok(Value::Done));
}

/// A directory with more entries than any page lists completely, in order, with stable
/// cookies: every entry exactly once whatever the page size, and entries that stay put
/// are listed exactly once even when others are removed between pages.
#[test]
fn many_entries_list_through_pages() {
    let mut t = VfsTarget::new();
    assert_eq!(
        t.apply(&OpT::Mkdir {
            who: Who::Root,
            path: Path(vec!["a"]),
            mode: 0o755
        }),
        Ok(Value::Done)
    );
    // Names must be `'static` for `Path`: leak a few thousand short strings.
    let n = 2500;
    let names: Vec<&'static str> = (0..n)
        .map(|i| &*Box::leak(format!("e{i:05}").into_boxed_str()))
        .collect();
    for name in &names {
        create(&mut t, &["a", name]);
    }
    let root = Ctx::root();
    let dir = t.vfs().lookup(&root, Ino::ROOT, b"a").unwrap().ino;
    let want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    for page in [1, 2, 7, 100, 256, 5000] {
        let got: Vec<String> = t
            .list(&root, dir, page)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            got.len(),
            n,
            "page size {page}: {} entries listed",
            got.len()
        );
        // Cookies follow creation order, which here is also name order.
        assert_eq!(got, want, "page size {page}");
    }
    // Listing while removing: remove every third entry after each page.
    let mut seen = Vec::new();
    let mut offset = 0;
    let mut removed = std::collections::BTreeSet::new();
    let mut k = 0;
    loop {
        let entries = t.vfs().readdir(&root, dir, offset, 50, false).unwrap();
        let Some(last) = entries.last() else { break };
        offset = last.next_offset;
        for e in &entries {
            if e.name != b"." && e.name != b".." {
                seen.push(String::from_utf8(e.name.clone()).unwrap());
            }
        }
        for _ in 0..20 {
            if k < n {
                if k % 3 == 0 {
                    t.vfs().unlink(&root, dir, names[k].as_bytes()).unwrap();
                    removed.insert(names[k].to_string());
                }
                k += 1;
            }
        }
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len(), "an entry was listed twice");
    for name in &want {
        if !removed.contains(name) {
            assert!(
                seen.contains(name),
                "{name} was never removed but not listed"
            );
        }
    }
    let after: Vec<String> = t
        .list(&root, dir, 64)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(after.len(), n - removed.len());
}

/// Every reported case about the library and core, replayed (see `cases.rs`).
#[test]
fn reported_core_cases() {
    let mut failures = Vec::new();
    for case in cases::all().into_iter().filter(|c| c.layer == Layer::Core) {
        let mut model = ModelTarget::new(ModelConfig::default());
        let mut vfs = VfsTarget::new();
        if let Err(e) = cases::replay(&case.ops, &mut model, &mut vfs) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "the core disagrees with the model:\n  {}",
        failures.join("\n  ")
    );
}
