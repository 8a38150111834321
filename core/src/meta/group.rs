//! Cache-group registrations (`N len group id` keys) and the volume's peer secret
//! (`N 0`), from which members derive the key they authenticate each other with.
//! What a member does with them is [`crate::cache::group`]'s business.

use super::keys;
use super::Meta;
use crate::cache::group::{check_name, Registration};
use crate::errno::{Errno, Result};
use crate::kv;

impl Meta {
    /// The volume's peer secret: the one stored, or `fresh` (random bytes the caller
    /// drew) stored now if there is none yet. Every member of every group of the volume
    /// gets the same secret.
    pub fn peer_secret(&self, fresh: [u8; 32]) -> Result<[u8; 32]> {
        kv::txn(&**self.kv(), |t| match t.get(keys::PEER_SECRET)? {
            Some(v) => v.as_slice().try_into().map_err(|_| Errno::EIO),
            None => {
                t.set(keys::PEER_SECRET, &fresh);
                Ok(fresh)
            }
        })
    }

    /// Registers (or renews) member `id` of `group`. Names are checked: EINVAL for a
    /// group or id that is empty, too long, or not printable ASCII.
    pub fn register_member(&self, group: &str, id: &str, r: &Registration) -> Result<()> {
        check_member_names(group, id)?;
        kv::txn(&**self.kv(), |t| {
            t.set(&keys::group_member(group, id), &r.encode());
            Ok(())
        })
    }

    /// Removes member `id` from `group` (a member leaving cleanly).
    pub fn unregister_member(&self, group: &str, id: &str) -> Result<()> {
        check_member_names(group, id)?;
        kv::txn(&**self.kv(), |t| {
            t.delete(&keys::group_member(group, id));
            Ok(())
        })
    }

    /// Every registration of `group`, by id; registrations that do not decode are left
    /// out (a newer client's format).
    pub fn group_members(&self, group: &str) -> Result<Vec<(String, Registration)>> {
        check_name("cache group", group, keys::GROUP_NAME_MAX).map_err(|_| Errno::EINVAL)?;
        let (start, end) = keys::group_range(group);
        kv::read(&**self.kv(), |t| {
            let mut out = Vec::new();
            for (k, v) in super::store::scan_all(t, &start, &end)? {
                let Some((_, id)) = keys::group_member_of(&k) else {
                    continue;
                };
                if let Some(r) = Registration::decode(&v) {
                    out.push((id.to_string(), r));
                }
            }
            Ok(out)
        })
    }

    /// Every registration of every group: (group, id, registration), by group and id.
    pub fn all_group_members(&self) -> Result<Vec<(String, String, Registration)>> {
        let (start, end) = keys::all_groups_range();
        kv::read(&**self.kv(), |t| {
            let mut out = Vec::new();
            for (k, v) in super::store::scan_all(t, &start, &end)? {
                let (Some((group, id)), Some(r)) =
                    (keys::group_member_of(&k), Registration::decode(&v))
                else {
                    continue;
                };
                out.push((group.to_string(), id.to_string(), r));
            }
            Ok(out)
        })
    }
}

fn check_member_names(group: &str, id: &str) -> Result<()> {
    check_name("cache group", group, keys::GROUP_NAME_MAX).map_err(|_| Errno::EINVAL)?;
    check_name("member id", id, keys::MEMBER_ID_MAX).map_err(|_| Errno::EINVAL)
}

#[cfg(test)]
mod tests {
    use crate::cache::group::Registration;
    use crate::meta::tests::setup;

    #[test]
    fn members_register_renew_and_leave_per_group() {
        let m = setup().m;
        let r = |addr: &str, seen| Registration {
            addr: addr.into(),
            weight: 1,
            seen,
        };
        m.register_member("gpu", "n1", &r("h:1", 1)).unwrap();
        m.register_member("gpu", "n2", &r("h:2", 1)).unwrap();
        m.register_member("gpu2", "n3", &r("h:3", 1)).unwrap();
        m.register_member("gpu", "n1", &r("h:1", 5)).unwrap();
        let got = m.group_members("gpu").unwrap();
        assert_eq!(
            got,
            vec![("n1".into(), r("h:1", 5)), ("n2".into(), r("h:2", 1))]
        );
        m.unregister_member("gpu", "n1").unwrap();
        assert_eq!(m.group_members("gpu").unwrap().len(), 1);
        assert_eq!(m.group_members("gpu2").unwrap().len(), 1);
        let all = m.all_group_members().unwrap();
        let names: Vec<(&str, &str)> = all
            .iter()
            .map(|(g, id, _)| (g.as_str(), id.as_str()))
            .collect();
        assert_eq!(names, vec![("gpu", "n2"), ("gpu2", "n3")]);
        assert!(m.register_member("", "n1", &r("h", 1)).is_err());
        assert!(m.register_member("g", "a b", &r("h", 1)).is_err());
    }

    #[test]
    fn the_peer_secret_is_created_once() {
        let m = setup().m;
        let s = m.peer_secret([7; 32]).unwrap();
        assert_eq!(s, [7; 32]);
        assert_eq!(m.peer_secret([9; 32]).unwrap(), [7; 32]);
    }
}
