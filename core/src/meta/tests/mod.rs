//! Unit tests of the metadata operations over [`MemKv`], with an invariant checker
//! run over the whole keyspace after each scenario.

mod attrs;
mod create;
mod data;
mod format;
mod invariants;
mod locks;
mod open;
mod readdir;
mod remove;
mod rename;
mod xattr;

use super::keys;
use super::perm::{R_OK, W_OK, X_OK};
use super::Meta;
use crate::format::Format;
use crate::kv::MemKv;
use crate::types::*;
use crate::Errno;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub fn ts(sec: i64) -> Timespec {
    Timespec::new(sec, 0)
}

pub fn root() -> Ctx {
    Ctx::root()
}

/// A user whose primary group equals its uid.
pub fn user(uid: u32) -> Ctx {
    Ctx::new(uid, uid, vec![])
}

pub struct Fx {
    pub kv: Arc<MemKv>,
    pub m: Meta,
}

pub fn setup() -> Fx {
    setup_with(Format::new("test-vol", "uuid-1"))
}

pub fn setup_with(f: Format) -> Fx {
    let kv = Arc::new(MemKv::new());
    Meta::format(&*kv, &f, false, ts(1)).unwrap();
    let m = Meta::load(kv.clone()).unwrap();
    Fx { kv, m }
}

impl Fx {
    pub fn file(&self, ctx: &Ctx, parent: Ino, name: &str, mode: u32) -> Attr {
        self.m
            .mknod(
                ctx,
                parent,
                name.as_bytes(),
                FileType::RegularFile,
                mode,
                0,
                0,
                ts(10),
            )
            .unwrap()
    }

    pub fn dir(&self, ctx: &Ctx, parent: Ino, name: &str, mode: u32) -> Attr {
        self.m
            .mkdir(ctx, parent, name.as_bytes(), mode, 0, ts(10))
            .unwrap()
    }

    pub fn attr(&self, ino: Ino) -> Attr {
        self.m.getattr(ino).unwrap()
    }

    pub fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, Errno> {
        self.m.lookup(&root(), parent, name.as_bytes())
    }

    /// Names in a directory, listed fully.
    pub fn names(&self, dir: Ino) -> Vec<String> {
        self.m
            .readdir(&root(), dir, 2, usize::MAX, false)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect()
    }

    pub fn chmod(&self, ino: Ino, mode: u32) {
        let set = SetAttr {
            mode: Some(mode),
            ..Default::default()
        };
        self.m.setattr(&root(), ino, &set, ts(5)).unwrap();
    }

    pub fn chown(&self, ino: Ino, uid: u32, gid: u32) {
        let set = SetAttr {
            uid: Some(uid),
            gid: Some(gid),
            ..Default::default()
        };
        self.m.setattr(&root(), ino, &set, ts(5)).unwrap();
    }

    pub fn gc_ids(&self) -> Vec<u64> {
        self.m
            .gc_pending(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s.0)
            .collect()
    }

    /// Checks the invariants of ARCHITECTURE.md over the whole keyspace.
    pub fn check(&self) {
        check_invariants(&self.kv);
    }
}

/// Checks the invariants of ARCHITECTURE.md over the whole keyspace
/// ([`crate::meta::check`]) and panics listing every violation.
pub fn check_invariants(kv: &MemKv) {
    let dump = kv.dump();
    let found = crate::meta::check::check_keyspace(
        dump.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        Default::default(),
    );
    assert!(
        found.is_empty(),
        "invariants broken:\n{}",
        found
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
