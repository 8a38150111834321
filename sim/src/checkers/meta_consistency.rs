//! Checker: the metadata is consistent — every dentry points to a live inode, link
//! counts are exact, no cycles, no orphans except unlinked-but-open inodes, counters
//! match, ids are below their counters. The rules themselves live in
//! `ferrofs_core::meta::check`, shared with the core's own tests.

use ferrofs_core::meta::check::{check_keyspace, CheckOptions};
use std::collections::BTreeMap;

/// Violations of the live (or recovered) keyspace. `quiescent`: no client is left and
/// orphans were cleaned up, so nothing may be unlinked-but-open.
pub fn check(keyspace: &BTreeMap<Vec<u8>, Vec<u8>>, quiescent: bool) -> Vec<String> {
    let opts = CheckOptions {
        no_open_files: quiescent,
        ids_from_counters: true,
    };
    check_keyspace(
        keyspace.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        opts,
    )
    .into_iter()
    .map(|v| format!("metadata: {v}"))
    .collect()
}
