//! What the tests compare: a [`Target`] applies [`Op`]s and reports comparable
//! [`Outcome`]s, and takes a canonical [`Tree`] snapshot of its whole namespace.
//!
//! Three targets implement the trait: the reference model ([`crate::model::ModelTarget`]),
//! the ferrofs client library driven directly ([`crate::vfs::VfsTarget`]) and a real
//! directory through the kernel ([`crate::posix::PosixTarget`], used for both a local
//! directory and a ferrofs FUSE mount). [`run_and_compare`] is the harness.

use crate::model::{Model, ModelConfig};
use crate::ops::{Op, OpGen, Show};
use ferrofs_core::Errno;
use std::collections::BTreeMap;
use std::fmt;

/// Something that runs file-system operations.
pub trait Target {
    /// A short name for failure reports ("model", "vfs", "linux", "ferrofs-fuse").
    fn name(&self) -> &str;
    /// Applies one operation and reports its comparable result.
    fn apply(&mut self, op: &Op) -> Outcome;
    /// A snapshot of the whole namespace reachable from the root, taken as root.
    /// Open handles stay open.
    fn tree(&mut self) -> Tree;
}

/// The comparable result of one operation.
pub type Outcome = Result<Value, Errno>;

/// The comparable value of a successful operation.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// Succeeded with nothing to report (mkdir, unlink, close, ...).
    Done,
    /// Bytes written.
    Written(u64),
    /// Bytes read.
    Data(Vec<u8>),
    /// `lstat`/`stat`/`fstat`.
    Stat(Stat),
    /// `readdir`: entry names except `.` and `..`, sorted.
    Names(Vec<String>),
    /// `readlink`.
    Target(String),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Done => write!(f, "Done"),
            Value::Written(n) => write!(f, "Written({n})"),
            Value::Data(d) => write!(f, "Data({})", DataSummary(d)),
            Value::Stat(s) => write!(f, "{s:?}"),
            Value::Names(n) => write!(f, "Names({n:?})"),
            Value::Target(t) => write!(f, "Target({t:?})"),
        }
    }
}

/// Prints a byte string as its length, hash and first bytes (contents can be 200 KiB).
pub struct DataSummary<'a>(pub &'a [u8]);

impl fmt::Display for DataSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: Vec<u8> = self.0.iter().take(8).copied().collect();
        write!(
            f,
            "len={} hash={:016x} head={:02x?}",
            self.0.len(),
            fnv64(self.0),
            head
        )
    }
}

/// The kind of a namespace entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// The attributes compared by `stat`. Deliberately excluded:
/// - times (atime/mtime/ctime): the model has no clock; Linux and the FUSE path stamp
///   them at different moments and the kernel caches them;
/// - inode numbers, `st_dev`, `st_blocks`, `st_blksize`: allocation details;
/// - the size of directories: ext4 reports 4096 per block, ferrofs 0; POSIX leaves it open.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stat {
    pub kind: Kind,
    /// `st_mode & 0o7777`.
    pub perm: u16,
    pub nlink: u32,
    /// `None` for directories (see above).
    pub size: Option<u64>,
    pub uid: u32,
    pub gid: u32,
}

impl Stat {
    /// Builds a comparable stat, dropping the size of directories.
    pub fn new(kind: Kind, perm: u32, nlink: u32, size: u64, uid: u32, gid: u32) -> Stat {
        Stat {
            kind,
            perm: (perm & 0o7777) as u16,
            nlink,
            size: if kind == Kind::Dir { None } else { Some(size) },
            uid,
            gid,
        }
    }
}

/// A canonical snapshot of a namespace: every path reachable from the root (the root is
/// `/`), in path order.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Tree(pub BTreeMap<String, TreeEntry>);

/// One path of a [`Tree`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TreeEntry {
    pub stat: Stat,
    /// Regular files: the whole contents, summarised as length and hash.
    pub content: Option<(u64, u64)>,
    /// Symlinks: the target.
    pub target: Option<String>,
    /// For hard links: the smallest path naming the same inode, if it is not this one.
    /// This compares the link structure without comparing inode numbers.
    pub same_inode_as: Option<String>,
}

impl Tree {
    /// Builds a tree from `(path, inode identity, entry)` triples, filling
    /// `same_inode_as` from the identities.
    pub fn from_walk<I: Ord + Clone>(items: Vec<(String, I, TreeEntry)>) -> Tree {
        let mut first: BTreeMap<I, String> = BTreeMap::new();
        let mut sorted = items;
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut map = BTreeMap::new();
        for (path, id, mut entry) in sorted {
            match first.get(&id) {
                Some(p) => entry.same_inode_as = Some(p.clone()),
                None => {
                    first.insert(id, path.clone());
                    entry.same_inode_as = None;
                }
            }
            map.insert(path, entry);
        }
        Tree(map)
    }

    /// A readable list of the differences between two trees, empty if equal.
    pub fn diff(&self, other: &Tree, a: &str, b: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (path, x) in &self.0 {
            match other.0.get(path) {
                None => out.push(format!("{path}: only in {a}: {x:?}")),
                Some(y) if x != y => out.push(format!("{path}:\n    {a}: {x:?}\n    {b}: {y:?}")),
                _ => {}
            }
        }
        for (path, y) in &other.0 {
            if !self.0.contains_key(path) {
                out.push(format!("{path}: only in {b}: {y:?}"));
            }
        }
        out
    }
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, e) in &self.0 {
            writeln!(f, "{path}: {e:?}")?;
        }
        Ok(())
    }
}

/// FNV-1a, 64 bit: a stable content hash with no dependency.
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Joins a parent path of a [`Tree`] and a name.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// A disagreement between two targets.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// Index of the operation in the sequence, or `None` for the final tree.
    pub step: Option<usize>,
    pub report: String,
}

/// Runs generated sequences: resolves each operation's selectors against a shadow model
/// (which only steers the choice of paths and slots; it is not compared), then applies
/// the concrete operation to the targets. Keeps the concrete history for reports.
pub struct Runner {
    shadow: Model,
    history: Vec<Op>,
}

impl Default for Runner {
    fn default() -> Self {
        Runner {
            shadow: Model::new(ModelConfig::default()),
            history: Vec::new(),
        }
    }
}

impl Runner {
    /// The concrete form of the next generated operation; records it.
    pub fn next(&mut self, gen: &OpGen) -> Op {
        let op = gen.concretize(&self.shadow);
        let _ = self.shadow.apply(&op);
        self.history.push(op.clone());
        op
    }

    /// The concrete operations so far, one a line.
    pub fn history(&self) -> String {
        let mut s = String::from("sequence:\n");
        for (i, op) in self.history.iter().enumerate() {
            s.push_str(&format!("  #{i:<3} {}\n", Show(op)));
        }
        s
    }
}

/// Runs `seq` against `a` and `b`, comparing every outcome and then the final trees.
/// Returns the first mismatch of outcomes (a sequence diverges after it, so later
/// differences are noise), or the tree differences.
pub fn run_and_compare(
    seq: &[OpGen],
    a: &mut dyn Target,
    b: &mut dyn Target,
) -> Result<(), Mismatch> {
    let mut runner = Runner::default();
    for (i, gen) in seq.iter().enumerate() {
        let op = runner.next(gen);
        let x = a.apply(&op);
        let y = b.apply(&op);
        if x != y {
            return Err(mismatch_at(i, &op, a.name(), &x, b.name(), &y, &runner));
        }
    }
    compare_trees(a, b).map_err(|report| Mismatch {
        step: None,
        report: format!("final trees differ:\n{report}\n{}", runner.history()),
    })
}

/// The report of outcome `x` of `a` differing from `y` of `b` at step `i`.
pub fn mismatch_at(
    i: usize,
    op: &Op,
    a: &str,
    x: &Outcome,
    b: &str,
    y: &Outcome,
    runner: &Runner,
) -> Mismatch {
    Mismatch {
        step: Some(i),
        report: format!(
            "op #{i} {}\n    {a}: {x:?}\n    {b}: {y:?}\n{}",
            Show(op),
            runner.history()
        ),
    }
}

/// Compares the trees of two targets; the error is a readable report.
pub fn compare_trees(a: &mut dyn Target, b: &mut dyn Target) -> Result<(), String> {
    let ta = a.tree();
    let tb = b.tree();
    let diff = ta.diff(&tb, a.name(), b.name());
    if diff.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "  {}\n{} tree:\n{ta:?}",
            diff.join("\n  "),
            a.name()
        ))
    }
}

/// The result of [`run_differential`].
pub struct Differential {
    /// The first disagreement of the subject with the oracle (outcomes or final trees).
    pub subject: Result<(), Mismatch>,
    /// The first disagreement of the side target with the oracle, if any. The side
    /// target stops being run after it (its state has diverged).
    pub side: Option<Mismatch>,
}

/// Runs `seq` against an oracle, a subject that must agree with it, and a side target
/// whose disagreements are only collected (the model, when Linux is the oracle).
pub fn run_differential(
    seq: &[OpGen],
    oracle: &mut dyn Target,
    subject: &mut dyn Target,
    side: &mut dyn Target,
) -> Differential {
    let mut runner = Runner::default();
    let mut side_mismatch = None;
    for (i, gen) in seq.iter().enumerate() {
        let op = runner.next(gen);
        let x = oracle.apply(&op);
        let y = subject.apply(&op);
        if side_mismatch.is_none() {
            let z = side.apply(&op);
            if z != x {
                side_mismatch = Some(mismatch_at(
                    i,
                    &op,
                    oracle.name(),
                    &x,
                    side.name(),
                    &z,
                    &runner,
                ));
            }
        }
        if x != y {
            return Differential {
                subject: Err(mismatch_at(
                    i,
                    &op,
                    oracle.name(),
                    &x,
                    subject.name(),
                    &y,
                    &runner,
                )),
                side: side_mismatch,
            };
        }
    }
    if side_mismatch.is_none() {
        if let Err(report) = compare_trees(oracle, side) {
            side_mismatch = Some(Mismatch {
                step: None,
                report: format!("final trees differ:\n{report}\n{}", runner.history()),
            });
        }
    }
    let subject = compare_trees(oracle, subject).map_err(|report| Mismatch {
        step: None,
        report: format!("final trees differ:\n{report}\n{}", runner.history()),
    });
    Differential {
        subject,
        side: side_mismatch,
    }
}
