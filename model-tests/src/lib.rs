//! # ferrofs-model-tests
//!
//! (draft)

pub mod model;
pub mod ops;
pub mod posix;
pub mod target;
pub mod walk;

use std::path::Path;

/// The model configuration matching this machine's kernel policy (read from
/// `/proc/sys/fs`), for comparisons with Linux. Panics if a sysctl the model does not
/// implement is on.
pub fn linux_model_config() -> model::ModelConfig {
    let read = |name: &str| -> u32 {
        std::fs::read_to_string(format!("/proc/sys/fs/{name}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    for name in ["protected_symlinks", "protected_regular"] {
        assert_eq!(
            read(name),
            0,
            "fs.{name} is on: the model does not implement it (sticky world-writable \
             directories would give EACCES the model does not expect); run `sysctl fs.{name}=0`"
        );
    }
    model::ModelConfig { protected_hardlinks: read("protected_hardlinks") != 0 }
}

/// Makes `dir` searchable (and listable) by everyone, so unprivileged callers can reach
/// a test root below it.
pub fn make_searchable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
}
