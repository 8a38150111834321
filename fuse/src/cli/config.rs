//! `ferrofs config`: shows a volume's settings, or changes the ones that may change
//! after `format` (clients' default rate limits, quotas), in one transaction.

use super::{open_meta, CliResult, ConfigArgs};

pub fn run(a: ConfigArgs) -> CliResult {
    let meta = open_meta(&a.meta_url)?;
    let changes = a.upload_limit.is_some()
        || a.download_limit.is_some()
        || a.capacity.is_some()
        || a.inodes.is_some();
    let f = if changes {
        let f = meta
            .update_settings(|f| {
                if let Some(r) = a.upload_limit {
                    f.upload_limit = r;
                }
                if let Some(r) = a.download_limit {
                    f.download_limit = r;
                }
                if let Some(c) = a.capacity {
                    f.capacity = c;
                }
                if let Some(n) = a.inodes {
                    f.inodes = n;
                }
            })
            .map_err(|e| format!("cannot change the settings of {}: {e}", a.meta_url))?;
        let _ = meta.sync();
        eprintln!(
            "settings updated; running clients follow the rate limits within {}s, quotas apply at their next mount",
            crate::limit::FOLLOW_EVERY.as_secs()
        );
        f
    } else {
        meta.read_settings()
            .map_err(|e| format!("cannot read the settings of {}: {e}", a.meta_url))?
    };
    println!("{}", f.redacted().to_json());
    Ok(())
}
