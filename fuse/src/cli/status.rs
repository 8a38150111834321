//! `ferrofs status`: the volume's settings, usage and sessions, as JSON.

use super::{open_meta, CliResult, StatusArgs};

pub fn run(a: StatusArgs) -> CliResult {
    let meta = open_meta(&a.meta_url)?;
    let usage = meta
        .statfs()
        .map_err(|e| format!("cannot read usage: {e}"))?;
    let sessions = meta
        .list_sessions()
        .map_err(|e| format!("cannot read sessions: {e}"))?;
    let sessions: Vec<serde_json::Value> = sessions
        .into_iter()
        .map(|(id, info)| {
            let mut v = serde_json::from_str(&info).unwrap_or(serde_json::Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), id.into());
            }
            v
        })
        .collect();
    let format: serde_json::Value =
        serde_json::from_str(&meta.format_info().to_json()).unwrap_or_default();
    let out = serde_json::json!({
        "setting": format,
        "usage": {
            "used_bytes": usage.used_bytes,
            "used_inodes": usage.used_inodes,
            "total_bytes": usage.total_bytes,
            "total_inodes": usage.total_inodes,
        },
        "sessions": sessions,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}
