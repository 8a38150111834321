//! `ferrofs dump` and `ferrofs load` through the real binary: a volume written through a
//! mount is dumped, loaded into a new engine over the same object store, and mounted
//! again; every path reads the same (types, modes, owners, times, contents, targets,
//! xattrs, hard links), fsck finds it consistent, and a damaged dump loads nothing.

mod common;

use common::{ferrofs, stderr, stdout, Volume};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn getxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

fn setxattr(p: &Path, name: &str, value: &[u8]) {
    let path = CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {}", p.display());
}

/// Everything a user can see of every path under `root`, keyed by relative path.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let kind = m.file_type();
            let what = if kind.is_symlink() {
                format!("-> {:?}", std::fs::read_link(&p).unwrap())
            } else if kind.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if kind.is_file() {
                let data = std::fs::read(&p).unwrap();
                let sum = data
                    .iter()
                    .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(b as u64));
                format!("file {} bytes sum {sum}", data.len())
            } else {
                "special".to_string()
            };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                format!(
                    "{what} ino {} mode {:o} uid {} gid {} nlink {} mtime {}.{} xattr {:?}",
                    m.ino(),
                    m.permissions().mode(),
                    m.uid(),
                    m.gid(),
                    m.nlink(),
                    m.mtime(),
                    m.mtime_nsec(),
                    getxattr(&p, "user.tag"),
                ),
            );
        }
    }
    out
}

/// A second engine over the same object store (no format: the load brings settings).
fn restored(from: &Volume) -> Volume {
    let mut v = Volume::new();
    v.data = from.data.clone();
    v
}

#[test]
fn a_dumped_volume_loads_into_a_new_engine_and_reads_the_same() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    std::fs::create_dir_all(v.path("a/b")).unwrap();
    std::fs::write(v.path("a/empty"), b"").unwrap();
    std::fs::write(v.path("a/b/small"), b"hello").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(v.path("a/b/big"), &big).unwrap();
    std::fs::hard_link(v.path("a/b/big"), v.path("big-link")).unwrap();
    std::os::unix::fs::symlink("a/b/small", v.path("ln")).unwrap();
    std::fs::set_permissions(v.path("a/b/small"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    setxattr(&v.path("a/b/small"), "user.tag", b"\x00\xffbin");
    setxattr(&v.path("a"), "user.tag", b"dir");
    for i in 0..300 {
        std::fs::write(v.path(&format!("a/many-{i}")), format!("{i}")).unwrap();
    }
    std::fs::remove_file(v.path("a/many-7")).unwrap();
    let before = snapshot(&v.mnt);
    v.umount();

    let file = v.dir.path().join("meta.json");
    let o = ferrofs(&["dump", &v.meta_url, file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("dumped 306 inodes"), "{}", stderr(&o));
    let doc = std::fs::read_to_string(&file).unwrap();
    assert!(doc.starts_with("{\"ferrofs_dump\":1,"));
    assert!(!v.dir.path().join("meta.json.partial").exists());

    let mut r = restored(&v);
    let o = ferrofs(&["load", &r.meta_url, file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("loaded 306 inodes"), "{}", stderr(&o));
    let o = ferrofs(&["load", &r.meta_url, file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already holds a volume"),
        "{}",
        stderr(&o)
    );

    let o = ferrofs(&["fsck", &r.meta_url]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // The restored volume's dump (to standard output) is the original's, byte for byte.
    let o = ferrofs(&["dump", &r.meta_url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout == doc.as_bytes(), "the dumps differ");

    r.mount();
    assert_eq!(snapshot(&r.mnt), before);
    std::fs::write(r.path("a/new"), b"written after the load").unwrap();
    assert_eq!(std::fs::read(r.path("a/b/big")).unwrap(), big);
    r.umount();
}

#[test]
fn a_damaged_dump_loads_nothing_and_the_engine_can_take_a_good_one() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    for i in 0..50 {
        std::fs::write(v.path(&format!("f{i}")), vec![i as u8; 1000]).unwrap();
    }
    v.umount();
    let good = v.dir.path().join("good.json");
    let o = ferrofs(&["dump", &v.meta_url, good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = std::fs::read(&good).unwrap();
    let cut = v.dir.path().join("cut.json");
    std::fs::write(&cut, &doc[..doc.len() * 2 / 3]).unwrap();

    let r = restored(&v);
    let o = ferrofs(&["load", &r.meta_url, cut.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("not valid") && err.contains("line") && err.contains("nothing was loaded"),
        "{err}"
    );
    let o = ferrofs(&["status", &r.meta_url]);
    assert!(!o.status.success(), "a failed load leaves no volume");
    let o = ferrofs(&["load", &r.meta_url, good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ferrofs(&["fsck", &r.meta_url]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    let o = ferrofs(&["dump", "sled:///nonexistent/ferrofs-meta"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("run `ferrofs format` first"),
        "{}",
        stderr(&o)
    );
}

/// A sled volume's dump loads into a replicated engine (one `meta-server`) and dumps
/// back byte for byte: the format is the engines' common language.
#[test]
fn a_sled_dump_loads_into_raft_and_dumps_the_same() {
    const SECRET: &str = "dump-load-raft-secret";
    let mut v = Volume::new();
    v.format();
    v.mount();
    std::fs::create_dir(v.path("d")).unwrap();
    for i in 0..40 {
        std::fs::write(v.path(&format!("d/f{i}")), vec![i as u8; 70_000]).unwrap();
    }
    std::os::unix::fs::symlink("d/f1", v.path("ln")).unwrap();
    v.umount();
    let file = v.dir.path().join("meta.json");
    let o = ferrofs(&["dump", &v.meta_url, file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let addr = common::free_addr();
    let log = std::fs::File::create(v.dir.path().join("replica.log")).unwrap();
    let mut server = std::process::Command::new(common::bin())
        .env("FERROFS_META_SECRET", SECRET)
        .args(["meta-server", "--id", "1", "--peers", &format!("1={addr}")])
        .args(["--data-dir", v.dir.path().join("r1").to_str().unwrap()])
        .args(["--tick", "50ms"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a meta server");
    let url = format!("raft://:{SECRET}@{addr}");
    let mut loaded = None;
    for _ in 0..100 {
        let o = ferrofs(&["load", &url, file.to_str().unwrap()]);
        if o.status.success() {
            loaded = Some(o);
            break;
        }
        // Until the replica has elected itself, the load cannot start (and writes nothing).
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = loaded.expect("the load into raft never succeeded");
    assert!(stderr(&o).contains("loaded 43 inodes"), "{}", stderr(&o));
    let o = ferrofs(&["dump", &url]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        o.stdout == std::fs::read(&file).unwrap(),
        "the raft volume dumps differently"
    );
}
