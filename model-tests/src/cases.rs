//! Fixed operation sequences: each disagreement the random tests found, shrunk by hand
//! to a few operations. `model_vs_linux` checks that the model agrees with Linux on
//! every one (so they are ferrofs' bugs, not the model's); `model_vs_core` and
//! `fuse_differential` replay the ones about them.

use crate::ops::{Access, Op, OpT, OpenFlags, Path, RenameMode, Who};
use crate::target::{Outcome, Target};

/// Where a case shows: the library and core, or the FUSE mount.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layer {
    Core,
    Fuse,
}

/// A named sequence.
pub struct Case {
    pub name: &'static str,
    pub layer: Layer,
    pub ops: Vec<Op>,
}

fn p(s: &'static str) -> Path {
    Path(s.split('/').filter(|c| !c.is_empty()).collect())
}

const CREATE: OpenFlags = OpenFlags {
    access: Access::ReadWrite,
    creat: true,
    excl: true,
    trunc: false,
};
const READ: OpenFlags = OpenFlags {
    access: Access::Read,
    creat: false,
    excl: false,
    trunc: false,
};

/// Every case.
pub fn all() -> Vec<Case> {
    use Who::*;
    vec![
        Case {
            // Linux looks the exchange target up (ENOENT) before it checks whether the
            // source is an ancestor of the target's directory (EINVAL).
            name: "rename_exchange_missing_target_inside_source",
            layer: Layer::Core,
            ops: vec![
                OpT::Mkdir {
                    who: Root,
                    path: p("a"),
                    mode: 0o755,
                },
                OpT::Rename {
                    who: Root,
                    from: p("a"),
                    to: p("a/x"),
                    mode: RenameMode::Exchange,
                },
            ],
        },
        Case {
            // An open directory outlives its rmdir: fstat works and says nlink 0.
            name: "open_directory_survives_rmdir",
            layer: Layer::Core,
            ops: vec![
                OpT::Mkdir {
                    who: Root,
                    path: p("a"),
                    mode: 0o755,
                },
                OpT::Open {
                    who: Root,
                    path: p("a"),
                    flags: READ,
                    mode: 0,
                    slot: 0,
                },
                OpT::Rmdir {
                    who: Root,
                    path: p("a"),
                },
                OpT::Fstat { slot: 0 },
                OpT::Close { slot: 0 },
            ],
        },
        Case {
            // Search permission on a directory is checked on every path walk; a name the
            // kernel has cached (root just created it) must not let others through.
            name: "no_search_permission_through_cached_entries",
            layer: Layer::Fuse,
            ops: vec![
                OpT::Mkdir {
                    who: Root,
                    path: p("a"),
                    mode: 0o700,
                },
                OpT::Open {
                    who: Root,
                    path: p("a/f"),
                    flags: CREATE,
                    mode: 0o644,
                    slot: 0,
                },
                OpT::Write {
                    slot: 0,
                    offset: 0,
                    len: 6,
                    seed: 1,
                },
                OpT::Close { slot: 0 },
                OpT::Stat {
                    who: Alice,
                    path: p("a/f"),
                    follow: false,
                },
                OpT::Open {
                    who: Alice,
                    path: p("a/f"),
                    flags: READ,
                    mode: 0,
                    slot: 1,
                },
                OpT::Read {
                    slot: 1,
                    offset: 0,
                    len: 100,
                },
            ],
        },
        Case {
            // fs.protected_hardlinks=1: no hard link to another user's file one cannot
            // read and write.
            name: "protected_hardlinks",
            layer: Layer::Fuse,
            ops: vec![
                OpT::Open {
                    who: Root,
                    path: p("h"),
                    flags: CREATE,
                    mode: 0o640,
                    slot: 0,
                },
                OpT::Close { slot: 0 },
                OpT::Link {
                    who: Bob,
                    from: p("h"),
                    to: p("f"),
                },
            ],
        },
        Case {
            // unlink(2) of a directory one may not write: Linux checks write permission
            // on the parent (EACCES) before the victim's type (EISDIR).
            name: "unlink_checks_permission_before_type",
            layer: Layer::Fuse,
            ops: vec![
                OpT::Mkdir {
                    who: Root,
                    path: p("c"),
                    mode: 0o755,
                },
                OpT::Mkdir {
                    who: Root,
                    path: p("c/a"),
                    mode: 0o755,
                },
                OpT::Unlink {
                    who: Alice,
                    path: p("c/a"),
                },
            ],
        },
    ]
}

/// Runs `ops` on both targets; the first differing outcome, described.
pub fn replay(ops: &[Op], a: &mut dyn Target, b: &mut dyn Target) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let (x, y) = (a.apply(op), b.apply(op));
        if x != y {
            return Err(format!(
                "op #{i} {}: {} {x:?}, {} {y:?}",
                crate::ops::Show(op),
                a.name(),
                b.name()
            ));
        }
        outcomes.push(x);
    }
    Ok(outcomes)
}
