//! `ferrofs gc` and `ferrofs fsck` on a volume with a leaked object, a young one, and
//! then a missing block.

mod common;

use common::{ferrofs, stderr, stdout, Volume};
use std::time::{Duration, SystemTime};

fn plant(v: &Volume, name: &str, age: Duration) -> std::path::PathBuf {
    let p = v.data.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, b"not referenced").unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
    p
}

#[test]
fn gc_deletes_leaked_objects_and_fsck_names_missing_blocks() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    for i in 0..5 {
        std::fs::write(v.path(&format!("f{i}")), vec![i as u8; 100_000]).unwrap();
    }
    v.umount();
    let old = plant(&v, "chunks/0/999/999999_0_5", Duration::from_secs(7200));
    let young = plant(&v, "chunks/0/999/999998_0_5", Duration::from_secs(60));

    let o = ferrofs(&["fsck", &v.meta_url]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("the volume is consistent"),
        "{}",
        stdout(&o)
    );

    let o = ferrofs(&["gc", &v.meta_url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("leaked") && out.contains("--delete"), "{out}");
    assert!(old.exists(), "gc without --delete only reports");
    let o = ferrofs(&["gc", &v.meta_url, "--delete"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("deleted 1 leaked objects"),
        "{}",
        stdout(&o)
    );
    assert!(
        !old.exists() && young.exists(),
        "the young object is spared"
    );

    // The files are intact.
    v.mount();
    for i in 0..5 {
        assert_eq!(
            std::fs::read(v.path(&format!("f{i}"))).unwrap(),
            vec![i as u8; 100_000]
        );
    }
    v.umount();

    // A block gone from the store: fsck says which, and fails.
    let victim = walk(&v.data.join("chunks"))
        .into_iter()
        .find(|p| p != &young)
        .expect("block objects");
    std::fs::remove_file(&victim).unwrap();
    let o = ferrofs(&["fsck", &v.meta_url]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("is missing"), "{}", stdout(&o));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
