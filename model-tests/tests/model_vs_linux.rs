//! The reference model against Linux itself on a local directory: checks the model, so
//! that a disagreement between the model and ferrofs is ferrofs' fault. Needs root.

use ferrofs_model_tests::model::{ModelConfig, ModelTarget};
use ferrofs_model_tests::ops::ops;
use ferrofs_model_tests::posix::{require_root, PosixTarget};
use ferrofs_model_tests::target::run_and_compare;
use ferrofs_model_tests::linux_model_config;
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
        ferrofs_model_tests::make_searchable(dir.path());
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

#[allow(dead_code)]
fn _unused(_: ModelConfig) {}
