//! `ferrofs status`: the volume's settings, usage, sessions and cache-group members, as
//! JSON.
//!
//! The embedded sled engine admits one process at a time, so while a volume is mounted
//! its mount process answers status requests on a Unix socket in the metadata directory.

use super::{open_meta, CliResult, StatusArgs};
use ferrofs_core::meta::Meta;
use ferrofs_meta::MetaUrl;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub fn run(a: StatusArgs) -> CliResult {
    let url = MetaUrl::parse(&a.meta_url).map_err(|e| e.to_string())?;
    if let Some(text) = ask_mount(&url) {
        println!("{text}");
        return Ok(());
    }
    let meta = open_meta(&a.meta_url)?;
    let mut doc: serde_json::Value =
        serde_json::from_str(&status_json(&meta)?).map_err(|e| e.to_string())?;
    // A replicated engine: its replicas too.
    if let Some(Ok(client)) = url.raft_client() {
        match client.members() {
            Ok(info) => {
                let m = &info.members;
                let replicas: Vec<serde_json::Value> = m
                    .voters
                    .iter()
                    .chain(&m.learners)
                    .map(|id| {
                        let role = if *id == info.leader {
                            "leader"
                        } else if m.voters.contains(id) {
                            "voter"
                        } else {
                            "learner"
                        };
                        let matched = info.progress.iter().find(|(p, _)| p == id).map(|p| p.1);
                        serde_json::json!({
                            "id": id,
                            "address": m.addrs.get(id),
                            "role": role,
                            "matched": matched,
                        })
                    })
                    .collect();
                doc["replicas"] = serde_json::json!({
                    "applied": info.applied,
                    "log_from": info.first_index,
                    "members": replicas,
                });
            }
            Err(e) => tracing::warn!("cannot list the replicas: {e}"),
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// The status document of a volume.
pub fn status_json(meta: &Meta) -> Result<String, String> {
    let usage = meta
        .statfs()
        .map_err(|e| format!("cannot read usage: {e}"))?;
    let sessions: Vec<serde_json::Value> = meta
        .list_sessions()
        .map_err(|e| format!("cannot read sessions: {e}"))?
        .into_iter()
        .map(|(id, info)| {
            let mut v = serde_json::from_str(&info).unwrap_or(serde_json::Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), id.into());
            }
            v
        })
        .collect();
    let mut groups = serde_json::Map::new();
    for (group, id, r) in meta
        .all_group_members()
        .map_err(|e| format!("cannot read cache groups: {e}"))?
    {
        let members = groups
            .entry(group)
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let Some(list) = members.as_array_mut() {
            list.push(serde_json::json!({
                "id": id, "addr": r.addr, "weight": r.weight, "last_seen": r.seen,
            }));
        }
    }
    let format: serde_json::Value =
        serde_json::from_str(&meta.format_info().redacted().to_json()).unwrap_or_default();
    let out = serde_json::json!({
        "setting": format,
        "usage": {
            "used_bytes": usage.used_bytes,
            "used_inodes": usage.used_inodes,
            "total_bytes": usage.total_bytes,
            "total_inodes": usage.total_inodes,
        },
        "sessions": sessions,
        "cache_groups": groups,
    });
    serde_json::to_string_pretty(&out).map_err(|e| e.to_string())
}

/// The status socket of a volume's metadata directory. Only embedded engines have
/// one: sled admits one process, so `status` asks the mount that has it open. A
/// meta-server cluster answers anyone.
pub fn socket_path(url: &MetaUrl) -> Option<PathBuf> {
    match url {
        MetaUrl::Sled(dir) => Some(dir.join("ferrofs-status.sock")),
        MetaUrl::Raft { .. } => None,
    }
}

fn ask_mount(url: &MetaUrl) -> Option<String> {
    let mut s = UnixStream::connect(socket_path(url)?).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    (!text.is_empty()).then_some(text)
}

/// Serves status documents on the volume's status socket until the process exits.
pub fn serve_status(url: &MetaUrl, meta: Arc<Meta>) {
    let Some(path) = socket_path(url) else {
        return;
    };
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot serve status on {}: {e}", path.display());
            return;
        }
    };
    let _ = std::thread::Builder::new()
        .name("ferrofs-status".into())
        .spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let doc = status_json(&meta).unwrap_or_else(|e| format!("{{\"error\": {e:?}}}"));
                let _ = conn.write_all(doc.as_bytes());
            }
        });
}
