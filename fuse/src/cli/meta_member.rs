//! `ferrofs meta-member`: membership changes of a running meta-server cluster.
//!
//! A replica is added in two steps, so the cluster never waits on one that is still
//! catching up: first as a learner (it receives the log, or a snapshot if the log was
//! compacted, but does not vote), then, once its log matches the leader's, as a
//! voter. A replica that leads is asked to hand over before it is removed.

use super::{CliResult, MemberAction, MetaMemberArgs};
use ferrofs_meta::raft::wire::MembersInfo;
use ferrofs_meta::raft::{Change, RaftClient};
use ferrofs_meta::MetaUrl;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

pub fn run(a: MetaMemberArgs) -> CliResult {
    let url = match &a.action {
        MemberAction::List { meta_url }
        | MemberAction::Add { meta_url, .. }
        | MemberAction::Remove { meta_url, .. }
        | MemberAction::Replace { meta_url, .. } => meta_url.clone(),
    };
    let client = client(&url, a.timeout)?;
    match a.action {
        MemberAction::List { .. } => {
            print!("{}", table(&members(&client)?));
            Ok(())
        }
        MemberAction::Add { replica, .. } => {
            let (id, addr) = parse_replica(&replica)?;
            add(&client, id, &addr, a.timeout)?;
            print!("{}", table(&members(&client)?));
            Ok(())
        }
        MemberAction::Remove { id, .. } => {
            remove(&client, id, a.timeout)?;
            print!("{}", table(&members(&client)?));
            Ok(())
        }
        MemberAction::Replace { old, new, .. } => {
            let (id, addr) = parse_replica(&new)?;
            if id == old {
                return Err(format!(
                    "the new replica needs another id than the old one ({old})"
                ));
            }
            add(&client, id, &addr, a.timeout)?;
            remove(&client, old, a.timeout)?;
            print!("{}", table(&members(&client)?));
            Ok(())
        }
    }
}

fn client(url: &str, timeout: Duration) -> Result<RaftClient, String> {
    let parsed = MetaUrl::parse(url).map_err(|e| e.to_string())?;
    match parsed.raft_client() {
        Some(c) => Ok(c
            .map_err(|e| e.to_string())?
            .patience(timeout.min(Duration::from_secs(30)))),
        None => Err(format!(
            "{url} is an embedded engine: only a meta-server cluster (raft://...) has members"
        )),
    }
}

/// Parses `ID=HOST:PORT`.
pub fn parse_replica(s: &str) -> Result<(u64, String), String> {
    let peers = super::meta_server::parse_peers(s)?;
    if peers.len() != 1 {
        return Err(format!("'{s}': give one replica as ID=HOST:PORT"));
    }
    Ok(peers.into_iter().next().expect("one"))
}

fn members(c: &RaftClient) -> Result<MembersInfo, String> {
    c.members().map_err(|e| {
        format!("no leader of the cluster answered ({e}): are a majority of the replicas up?")
    })
}

fn add(c: &RaftClient, id: u64, addr: &str, timeout: Duration) -> Result<(), String> {
    let info = members(c)?;
    if info.members.voters.contains(&id) {
        return Err(format!("replica {id} is already a voter"));
    }
    if !info.members.learners.contains(&id) {
        c.change(&Change::AddLearner {
            id,
            addr: addr.to_string(),
        })
        .map_err(|e| format!("cannot add replica {id} as a learner: {e}"))?;
        eprintln!("replica {id} ({addr}) added as a learner; waiting for it to catch up");
    }
    wait_caught_up(c, id, addr, timeout)?;
    c.change(&Change::Promote {
        id,
        addr: addr.to_string(),
    })
    .map_err(|e| format!("cannot make replica {id} a voter: {e}"))?;
    eprintln!("replica {id} is a voter");
    Ok(())
}

fn wait_caught_up(c: &RaftClient, id: u64, addr: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let target = members(c)?.applied;
    let bar = ProgressBar::new(target);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} entries ({elapsed})")
            .expect("a valid template"),
    );
    bar.set_message(format!("replica {id} catching up"));
    loop {
        let info = members(c)?;
        let matched = info
            .progress
            .iter()
            .find(|(p, _)| *p == id)
            .map_or(0, |(_, m)| *m);
        bar.set_position(matched.min(target));
        if matched >= target {
            bar.finish_and_clear();
            return Ok(());
        }
        if Instant::now() >= deadline {
            bar.abandon();
            return Err(format!(
                "replica {id} has not caught up within {timeout:?} ({matched} of {target} \
                 entries): is it running with --join and reachable at {addr}? It stays a \
                 learner (no vote, no harm); `ferrofs meta-member remove` drops it"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn remove(c: &RaftClient, id: u64, timeout: Duration) -> Result<(), String> {
    let info = members(c)?;
    let m = &info.members;
    if !m.voters.contains(&id) && !m.learners.contains(&id) {
        return Err(format!(
            "replica {id} is not a member (voters {:?}, learners {:?})",
            m.voters, m.learners
        ));
    }
    if m.voters == [id] {
        return Err(format!(
            "replica {id} is the only voter: add another one first"
        ));
    }
    if info.leader == id {
        // Hand over to the voter whose log is furthest along.
        let heir = info
            .progress
            .iter()
            .filter(|(p, _)| *p != id && m.voters.contains(p))
            .max_by_key(|(_, matched)| *matched)
            .map(|(p, _)| *p)
            .ok_or("no other voter to hand leadership to")?;
        eprintln!("replica {id} leads: handing leadership to replica {heir}");
        let deadline = Instant::now() + timeout;
        loop {
            c.transfer_leader(heir)
                .map_err(|e| format!("cannot hand leadership over: {e}"))?;
            std::thread::sleep(Duration::from_millis(300));
            if members(c)?.leader != id {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!("replica {id} still leads after {timeout:?}"));
            }
        }
    }
    c.change(&Change::Remove { id })
        .map_err(|e| format!("cannot remove replica {id}: {e}"))?;
    eprintln!("replica {id} removed; it stops, and its data dir can be deleted");
    Ok(())
}

/// The members as a table.
pub fn table(info: &MembersInfo) -> String {
    let m = &info.members;
    let mut out = format!(
        "{:<4} {:<24} {:<8} {:>10} {:>8}\n",
        "ID", "ADDRESS", "ROLE", "MATCHED", "BEHIND"
    );
    let ids = m.voters.iter().chain(m.learners.iter());
    for id in ids {
        let role = if *id == info.leader {
            "leader"
        } else if m.voters.contains(id) {
            "voter"
        } else {
            "learner"
        };
        let matched = info.progress.iter().find(|(p, _)| p == id).map(|(_, x)| *x);
        let addr = m.addrs.get(id).map_or("?", String::as_str);
        let (matched, behind) = match matched {
            Some(x) => (x.to_string(), info.applied.saturating_sub(x).to_string()),
            None => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "{id:<4} {addr:<24} {role:<8} {matched:>10} {behind:>8}\n"
        ));
    }
    out.push_str(&format!(
        "applied {}, log from {} (earlier entries are in the snapshot)\n",
        info.applied, info.first_index
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofs_core::replica::Membership;

    #[test]
    fn replicas_parse_and_the_table_names_roles() {
        assert_eq!(parse_replica("4=h:7004").unwrap(), (4, "h:7004".into()));
        assert!(parse_replica("4=h:1,5=h:2").is_err());
        assert!(parse_replica("h:1").is_err());
        let info = MembersInfo {
            leader: 2,
            applied: 100,
            first_index: 50,
            members: Membership {
                voters: vec![1, 2],
                learners: vec![4],
                addrs: [(1, "a:1"), (2, "b:2"), (4, "d:4")]
                    .into_iter()
                    .map(|(i, a)| (i, a.to_string()))
                    .collect(),
            },
            progress: vec![(1, 100), (2, 100), (4, 40)],
        };
        let t = table(&info);
        assert!(t.contains("b:2") && t.contains("leader"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with('4') && l.contains("learner") && l.ends_with("60")),
            "{t}"
        );
    }
}
