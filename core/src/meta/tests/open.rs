use super::*;

const O_RDONLY: i32 = 0;
const O_WRONLY: i32 = 1;
const O_RDWR: i32 = 2;
const O_TRUNC: i32 = 0o1000;

#[test]
fn open_checks_access_mode() {
    let fx = setup();
    let u = user(1000);
    let f =
        fx.m.mknod(
            &u,
            Ino::ROOT,
            b"f",
            FileType::RegularFile,
            0o400,
            0,
            0,
            ts(2),
        )
        .unwrap();
    assert_eq!(fx.m.open(&u, f.ino, O_RDONLY).unwrap().ino, f.ino);
    assert_eq!(fx.m.open(&u, f.ino, O_WRONLY).err(), Some(Errno::EACCES));
    assert_eq!(fx.m.open(&u, f.ino, O_RDWR).err(), Some(Errno::EACCES));
    assert_eq!(
        fx.m.open(&u, f.ino, O_RDONLY | O_TRUNC).err(),
        Some(Errno::EACCES)
    );
    fx.chmod(f.ino, 0o200);
    assert_eq!(fx.m.open(&u, f.ino, O_RDONLY).err(), Some(Errno::EACCES));
    fx.m.open(&u, f.ino, O_WRONLY | O_TRUNC).unwrap();
    assert_eq!(fx.m.open(&u, f.ino, O_RDWR).err(), Some(Errno::EACCES));
    fx.chmod(f.ino, 0o600);
    fx.m.open(&u, f.ino, O_RDWR).unwrap();
    // Root opens anything for reading and writing.
    fx.chmod(f.ino, 0o000);
    fx.m.open(&root(), f.ino, O_RDWR).unwrap();
    assert_eq!(fx.m.open_count(f.ino), 4);
    for _ in 0..4 {
        fx.m.release(f.ino).unwrap();
    }
    assert_eq!(fx.m.open_count(f.ino), 0);
    assert_eq!(fx.m.open(&u, Ino(999), O_RDONLY).err(), Some(Errno::ENOENT));
}

#[test]
fn directories_open_read_only() {
    let fx = setup();
    let u = user(1000);
    let d = fx.dir(&root(), Ino::ROOT, "d", 0o755);
    fx.m.open(&u, d.ino, O_RDONLY).unwrap();
    fx.m.release(d.ino).unwrap();
    assert_eq!(
        fx.m.open(&root(), d.ino, O_WRONLY).err(),
        Some(Errno::EISDIR)
    );
    assert_eq!(fx.m.open(&root(), d.ino, O_RDWR).err(), Some(Errno::EISDIR));
    assert_eq!(fx.m.opendir(&u, d.ino, O_RDONLY).unwrap().ino, d.ino);
    fx.chmod(d.ino, 0o311);
    assert_eq!(fx.m.opendir(&u, d.ino, O_RDONLY).err(), Some(Errno::EACCES));
    fx.m.opendir(&root(), d.ino, O_RDONLY).unwrap();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    assert_eq!(
        fx.m.opendir(&root(), f.ino, O_RDONLY).err(),
        Some(Errno::ENOTDIR)
    );
    assert_eq!(
        fx.m.opendir(&root(), Ino(999), O_RDONLY).err(),
        Some(Errno::ENOENT)
    );
}

#[test]
fn release_of_linked_file_keeps_it() {
    let fx = setup();
    let f = fx.file(&root(), Ino::ROOT, "f", 0o644);
    fx.m.open(&root(), f.ino, O_RDONLY).unwrap();
    fx.m.release(f.ino).unwrap();
    assert_eq!(fx.attr(f.ino).nlink, 1);
    fx.check();
}
