//! `--cache-group` for `mount` and `cache-node`: derives the group key from the volume's
//! peer secret, starts the peer server of a sharing member, registers it, reads the
//! group once (so the first reads already know the owners) and keeps it fresh.

use super::GroupArgs;
use crate::group::membership::{self, Me};
use crate::group::net::{group_key, random_bytes, TcpPeers};
use crate::group::server::PeerServer;
use crate::group::{Group, Transport};
use crate::limit::{LimitedService, LimitedTransport, Limits};
use crate::vfs::{system_clock, Vfs};
use ferrofs_core::cache::group::check_name;
use ferrofs_core::meta::keys::{GROUP_NAME_MAX, MEMBER_ID_MAX};
use ferrofs_core::meta::Meta;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

/// A member's running parts; [`Joined::leave`] stops them and unregisters.
pub struct Joined {
    pub group: Arc<Group>,
    pub server: Option<PeerServer>,
    /// This member's id (`None`: `--no-sharing`).
    pub id: Option<String>,
    thread: Option<JoinHandle<()>>,
}

impl Joined {
    /// Waits for the membership thread (stopped by the caller's stop flag), which
    /// unregisters this member; then stops serving.
    pub fn leave(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        drop(self.server.take());
    }
}

/// Joins the group `a` names, if any. `cache_dirs` is the cache spec (the default id
/// hashes it); `meta_url` must name an engine other processes share (members find each
/// other there).
pub fn join(
    a: &GroupArgs,
    meta_url: &str,
    meta: &Arc<Meta>,
    vfs: &Arc<Vfs>,
    cache_dirs: &str,
    limits: &Limits,
    stop: Arc<AtomicBool>,
) -> Result<Option<Joined>, String> {
    let Some(name) = &a.cache_group else {
        return Ok(None);
    };
    check_name("--cache-group", name, GROUP_NAME_MAX)?;
    if !matches!(
        ferrofs_meta::MetaUrl::parse(meta_url),
        Ok(ferrofs_meta::MetaUrl::Raft { .. })
    ) {
        return Err(
            "--cache-group needs a metadata engine that other clients share (raft://...): members find each other there, and the embedded sled engine admits one process"
                .into(),
        );
    }
    let sharing = !a.no_sharing;
    if sharing && vfs.block_cache().is_none() {
        return Err(
            "a cache-group member that shares blocks needs a block cache: give --cache-size above 0, or add --no-sharing to only read from the group"
                .into(),
        );
    }
    if a.group_weight == 0 {
        return Err("--group-weight must be at least 1 (use --no-sharing to own no blocks)".into());
    }
    let fresh = random_bytes().map_err(|e| format!("cannot draw a random secret: {e}"))?;
    let secret = meta
        .peer_secret(fresh)
        .map_err(|e| format!("cannot read the volume's peer secret: {e}"))?;
    let key = group_key(&secret, &meta.format_info().uuid, name);
    let (server, me) = if sharing {
        let mut service = vfs.block_service();
        if let Some(up) = &limits.upload {
            service = Arc::new(LimitedService {
                inner: service,
                upload: up.clone(),
            });
        }
        let server = PeerServer::start(&a.group_listen, key, service).map_err(|e| {
            format!(
                "cannot listen on {} for the cache group: {e} (choose another --group-listen)",
                a.group_listen
            )
        })?;
        let addr = match &a.group_advertise {
            Some(adv) => adv.clone(),
            None if server.addr().ip().is_unspecified() => {
                return Err(format!(
                    "--group-listen {} listens on every interface: say which address peers reach this member at with --group-advertise HOST:PORT",
                    a.group_listen
                ))
            }
            None => server.addr().to_string(),
        };
        let id = match &a.group_id {
            Some(id) => id.clone(),
            None => membership::default_member_id(&super::mount::hostname(), cache_dirs),
        };
        check_name("--group-id", &id, MEMBER_ID_MAX)?;
        let me = Me {
            id,
            addr,
            weight: a.group_weight,
        };
        (Some(server), Some(me))
    } else {
        (None, None)
    };
    let mut transport: Arc<dyn Transport> = Arc::new(TcpPeers::new(key));
    if let Some(down) = &limits.download {
        transport = Arc::new(LimitedTransport {
            inner: transport,
            download: down.clone(),
        });
    }
    let group = Arc::new(Group::new(
        name,
        me.as_ref().map(|m| m.id.as_str()),
        transport,
        a.remote_timeout,
        system_clock(),
    ));
    vfs.join_group(group.clone())
        .map_err(|_| "already in a cache group".to_string())?;
    membership::refresh(meta, &group, me.as_ref())
        .map_err(|e| format!("cannot register in cache group {name}: {e:?}"))?;
    tracing::info!(
        group = %name,
        member = me.as_ref().map_or("(no sharing)", |m| m.id.as_str()),
        addr = me.as_ref().map_or("", |m| m.addr.as_str()),
        members = group.members().len(),
        "joined the cache group"
    );
    let id = me.as_ref().map(|m| m.id.clone());
    let thread = membership::spawn(meta.clone(), group.clone(), me, stop)
        .map_err(|e| format!("cannot start the cache group thread: {e}"))?;
    Ok(Some(Joined {
        group,
        server,
        id,
        thread: Some(thread),
    }))
}
