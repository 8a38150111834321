//! The reference model against Linux itself on a local directory: checks the model, so
//! that a disagreement between the model and ferrofs is ferrofs' fault. Needs root.

use ferrofs_model_tests::cases;
use ferrofs_model_tests::model::ModelTarget;
use ferrofs_model_tests::ops::ops;
use ferrofs_model_tests::posix::{require_root, PosixTarget};
use ferrofs_model_tests::target::run_and_compare;
use ferrofs_model_tests::{linux_model_config, make_searchable};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn model_agrees_with_linux(seq in ops(50)) {
        require_root("model_vs_linux");
        let dir = tempfile::Builder::new().prefix("ferrofs-model-vs-linux-").tempdir().unwrap();
        make_searchable(dir.path());
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut linux = PosixTarget::new("linux", &root);
        let mut model = ModelTarget::new(linux_model_config());
        let r = run_and_compare(&seq, &mut model, &mut linux);
        linux.close_all();
        if let Err(m) = r {
            prop_assert!(false, "{}", m.report);
        }
    }
}

/// The model agrees with Linux on every reported case: they are ferrofs' bugs.
#[test]
fn model_agrees_with_linux_on_reported_cases() {
    require_root("model_vs_linux");
    for case in cases::all() {
        let dir = tempfile::Builder::new()
            .prefix("ferrofs-model-vs-linux-")
            .tempdir()
            .unwrap();
        make_searchable(dir.path());
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut linux = PosixTarget::new("linux", &root);
        let mut model = ModelTarget::new(linux_model_config());
        let r = cases::replay(&case.ops, &mut model, &mut linux);
        linux.close_all();
        if let Err(e) = r {
            panic!("{}: {e}", case.name);
        }
    }
}
