//! `ferrofs format`: validates everything first, then writes the volume settings and
//! root directory in one transaction, so a failed format leaves nothing half-written.

use super::{CliResult, FormatArgs};
use ferrofs_core::format::Format;
use ferrofs_core::meta::Meta;
use ferrofs_core::{Errno, Timespec};
use std::hash::{BuildHasher, Hasher};

pub fn run(a: FormatArgs) -> CliResult {
    let url = ferrofs_meta::MetaUrl::parse(&a.meta_url).map_err(|e| e.to_string())?;
    let block_size = u32::try_from(a.block_size)
        .map_err(|_| format!("--block-size {} is too large: use 64K to 16M", a.block_size))?;
    let format = Format {
        name: a.name.clone(),
        uuid: new_uuid(),
        storage: a.storage.clone(),
        bucket: a.bucket.clone(),
        access_key: a.store.access_key.clone(),
        secret_key: a.store.secret_key.clone(),
        block_size,
        capacity: a.capacity,
        inodes: a.inodes,
        version: 1,
        upload_limit: 0,
        download_limit: 0,
    };
    format
        .validate()
        .map_err(|e| format!("invalid volume settings: {e}"))?;
    let store = super::open_object_store(&a.storage, &a.bucket, &a.store.options(), true)?;
    ferrofs_s3_backend::probe(store.as_ref())
        .map_err(|e| format!("the object store {} does not work: {e}", store.describe()))?;
    let kv = ferrofs_meta::open(&url, true).map_err(|e| e.to_string())?;
    let now = now();
    match Meta::format(kv.as_ref(), &format, a.force, now) {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            return Err(format!(
            "{} already holds a volume; add --force to overwrite its settings (its files are kept)",
            a.meta_url
        ))
        }
        Err(e) => return Err(format!("cannot write the volume settings: {e}")),
    }
    kv.sync()
        .map_err(|e| format!("cannot sync the metadata engine: {e}"))?;
    println!(
        "formatted volume '{}' (uuid {}): metadata {}, data {} {}, block size {}",
        format.name,
        format.uuid,
        a.meta_url,
        a.storage,
        store.describe(),
        crate::units::format_size(block_size as u64)
    );
    Ok(())
}

fn now() -> Timespec {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timespec::new(d.as_secs() as i64, d.subsec_nanos())
}

/// A random version-4 UUID (the volume's identity; randomness belongs to the shell).
fn new_uuid() -> String {
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now().sec as u128 * 1_000_000_000 + now().nsec as u128);
        h.write_u32(std::process::id());
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
