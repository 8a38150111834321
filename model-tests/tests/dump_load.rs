//! `ferrofs dump` / `ferrofs load` against the client library: after any sequence of
//! operations (files left open or not), the volume loaded from the dump into a fresh
//! engine reads exactly like the dumped one through a new client, passes the invariant
//! checker, and dumps to the same document when nothing was open.
//!
//! `cargo test -p ferrofs-model-tests --test dump_load`; more cases with
//! `PROPTEST_CASES=2000`.

use ferrofs_core::kv::MemKv;
use ferrofs_core::meta::check::{check_keyspace, CheckOptions};
use ferrofs_core::meta::dump::{dump, load, DumpOptions};
use ferrofs_model_tests::model::{ModelConfig, ModelTarget};
use ferrofs_model_tests::ops::{ops, OpT};
use ferrofs_model_tests::target::{run_and_compare, Target};
use ferrofs_model_tests::vfs::VfsTarget;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::sync::Arc;

fn dump_of(kv: &dyn ferrofs_core::kv::Kv) -> Vec<u8> {
    let mut out = Vec::new();
    dump(kv, &mut out, DumpOptions::default(), &mut |_| {}).expect("dump");
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_loaded_volume_reads_like_the_dumped_one(seq in ops(50), close in any::<bool>()) {
        let mut model = ModelTarget::new(ModelConfig::default());
        let mut vfs = VfsTarget::new();
        if let Err(m) = run_and_compare(&seq, &mut model, &mut vfs) {
            prop_assert!(false, "{}", m.report);
        }
        if close {
            vfs.close_all();
        }
        // Commits what open files hold (a dump has what the engine has).
        let _ = vfs.apply(&OpT::Sync);
        let before = vfs.tree();
        let doc = dump_of(&**vfs.engine());

        let kv = Arc::new(MemKv::new());
        let stats = load(&*kv, &doc[..]);
        prop_assert!(stats.is_ok(), "load: {}", stats.unwrap_err());
        let pairs = kv.dump();
        let violations = check_keyspace(
            pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
            CheckOptions { no_open_files: true, ids_from_counters: true },
        );
        prop_assert!(violations.is_empty(), "the loaded volume: {violations:?}");
        if close {
            prop_assert!(dump_of(&*kv) == doc, "the loaded volume dumps differently");
        }
        let mut restored = vfs.sibling(kv);
        prop_assert_eq!(restored.tree(), before);
    }
}
