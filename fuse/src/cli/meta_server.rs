//! `ferrofs meta-server`: runs one replica of a replicated metadata engine until the
//! process is stopped (see `ferrofs_meta::raft::server`).

use super::{CliResult, MetaServerArgs};
use ferrofs_meta::raft::{Server, ServerConfig, ServerTls};
use std::collections::BTreeMap;
use std::net::TcpListener;

/// Parses `1=host:port,2=host:port,...`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("--peers: '{part}' is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("--peers: '{id}' is not a replica id (1, 2, ...)"))?;
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!("--peers: '{addr}' is not HOST:PORT"));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(format!("--peers: id {id} is listed twice"));
        }
    }
    if out.is_empty() {
        return Err("--peers is empty: list every replica as ID=HOST:PORT".into());
    }
    Ok(out)
}

/// The secret from --secret-file or the environment; `None` only with --no-auth.
fn secret(a: &MetaServerArgs) -> Result<Option<Vec<u8>>, String> {
    let from_env = std::env::var(ferrofs_meta::url::SECRET_ENV).ok();
    let secret = match (&a.secret_file, from_env) {
        (Some(f), _) => {
            let s = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read --secret-file {}: {e}", f.display()))?;
            Some(s.trim_end_matches(['\n', '\r']).to_string())
        }
        (None, Some(s)) => Some(s),
        (None, None) => None,
    };
    match (secret, a.no_auth) {
        (Some(s), false) if s.is_empty() => Err("the secret is empty".into()),
        (Some(s), false) => Ok(Some(s.into_bytes())),
        (Some(_), true) => Err("--no-auth and a secret contradict each other: drop one".into()),
        (None, true) => {
            tracing::warn!(
                "--no-auth: any client that reaches this port can read and change all metadata"
            );
            Ok(None)
        }
        (None, false) => Err(format!(
            "no secret: give --secret-file FILE or set {} (every client presents the same \
             secret), or --no-auth on a trusted network",
            ferrofs_meta::url::SECRET_ENV
        )),
    }
}

pub fn run(a: MetaServerArgs) -> CliResult {
    let secret = secret(&a)?;
    let peers = parse_peers(&a.peers)?;
    let own = peers.get(&a.id).ok_or_else(|| {
        format!(
            "--id {} is not in --peers (ids there: {:?})",
            a.id,
            peers.keys().collect::<Vec<_>>()
        )
    })?;
    let listen = a.listen.clone().unwrap_or_else(|| own.clone());
    let listener = TcpListener::bind(&listen).map_err(|e| {
        format!("cannot listen on {listen}: {e} (is another replica running there?)")
    })?;
    tracing::info!(id = a.id, listen = %listen, data_dir = %a.data_dir.display(), "starting meta server");
    let server = Server::start(
        ServerConfig {
            tick: a.tick,
            secret,
            join: a.join,
            snapshot_every: a.snapshot_every,
            tls: match (&a.tls_cert, &a.tls_key, &a.tls_ca) {
                (Some(cert), Some(key), Some(ca)) => Some(ServerTls {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: ca.clone(),
                }),
                _ => None,
            },
            ..ServerConfig::new(a.id, peers, a.data_dir.clone())
        },
        listener,
    )?;
    server.wait()?;
    tracing::info!(id = a.id, "meta server stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_lists_parse_and_bad_ones_say_why() {
        let p = parse_peers("1=127.0.0.1:7001, 2=host-b:7002,3=[::1]:7003").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&2], "host-b:7002");
        for (bad, why) in [
            ("1=a:1,1=b:2", "twice"),
            ("a=b:1", "not a replica id"),
            ("1=nohost", "not HOST:PORT"),
            ("0=a:1", "not a replica id"),
            ("", "empty"),
        ] {
            let e = parse_peers(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
