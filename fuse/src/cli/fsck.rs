//! `ferrofs fsck META-URL [--repair]`: checks the metadata's invariants (the core's
//! checker over the whole keyspace: reachability, link counts, entries and their index,
//! slice records, locks, counters) and that every block the metadata refers to is in the
//! object store whole. `--repair` recounts the usage counters; what it cannot repair it
//! names, with the files concerned. Exits 1 when something is wrong (and not repaired).

use super::gc::{list_blocks, spinner};
use super::{open_meta, CliResult, FsckArgs};
use ferrofs_core::chunk::block::stored_len;
use ferrofs_core::meta::check::{check_invariants_with, CheckOptions};
use ferrofs_core::meta::SliceCensus;
use std::collections::HashMap;

pub fn run(a: FsckArgs) -> CliResult {
    let meta = open_meta(&a.meta_url)?;
    let format = meta.format_info().clone();
    let store = super::open_tool_store(&format, 8)?;
    // One pass over the keyspace serves the invariant checker and the census.
    let bar = spinner("checking the metadata: keys");
    let mut c = SliceCensus::default();
    let mut read = 0u64;
    let violations = check_invariants_with(
        &**meta.kv(),
        CheckOptions {
            // Clients may be mounted, with files open.
            no_open_files: false,
            ids_from_counters: true,
        },
        &mut |k, v| {
            read += 1;
            if read.is_multiple_of(4096) {
                bar.set_position(read);
            }
            c.add(k, v)
        },
    )
    .map_err(|e| format!("cannot read the metadata: {e}"))?;
    bar.finish_and_clear();
    let objects = list_blocks(store.as_ref())?;
    let sizes: HashMap<&str, u64> = objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let mut missing = Vec::new();
    let mut expected = 0u64;
    for (key, ino) in c.expected_blocks(format.block_size) {
        expected += 1;
        let name = key.object_name();
        match sizes.get(name.as_str()) {
            Some(&s) if s == stored_len(key.len) => {}
            Some(&s) => missing.push(format!(
                "{name} of inode {} is {s} bytes, not {}",
                ino.0,
                stored_len(key.len)
            )),
            None if c.staged.contains(&key.slice) => {} // a writeback client still has it
            None => missing.push(format!("{name} of inode {} is missing", ino.0)),
        }
    }
    let counters_only = violations.iter().all(|v| v.invariant == "counter");
    println!(
        "{} metadata violations, {} of {expected} blocks missing or damaged",
        violations.len(),
        missing.len()
    );
    for v in violations.iter().take(50) {
        println!("  metadata: {v}");
    }
    for m in missing.iter().take(50) {
        println!("  objects:  {m}");
    }
    if violations.is_empty() && missing.is_empty() {
        println!("the volume is consistent");
        return Ok(());
    }
    if a.repair && !violations.is_empty() {
        let before = meta
            .set_usage_counters(c.inodes, c.file_bytes)
            .map_err(|e| format!("cannot write the counters: {e}"))?;
        let _ = meta.sync();
        println!(
            "repaired the usage counters: totalInodes {} -> {}, usedSpace {} -> {}",
            before.0, c.inodes, before.1, c.file_bytes
        );
        if counters_only && missing.is_empty() {
            return Ok(());
        }
    }
    Err(if a.repair {
        "fsck --repair fixes the usage counters only: the other problems above need a look (their files may have to be restored from a backup)".into()
    } else {
        "the volume has problems (see above); --repair recounts the usage counters".into()
    })
}
