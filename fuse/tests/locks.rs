//! File locks through real mounts (root and /dev/fuse needed): `fcntl` record locks
//! and `flock` between processes of one mount, and between two mounts of one
//! replicated volume, including a mount that is killed while it holds locks.

mod common;

use common::{bin, ferrofs, stderr, Volume};
use std::ffi::CString;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::{Child as Proc, Command, Stdio};
use std::time::{Duration, Instant};

const EOF: i64 = 0; // l_len 0: to the end of the file

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn flock_struct(typ: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: plain data.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start;
    fl.l_len = len;
    fl
}

/// fcntl(F_SETLK/F_SETLKW) of `[start, start+len)`; Err(errno) on failure.
fn setlk(fd: i32, cmd: i32, typ: i32, start: i64, len: i64) -> Result<(), i32> {
    let fl = flock_struct(typ, start, len);
    // SAFETY: `fl` outlives the call.
    match unsafe { libc::fcntl(fd, cmd, &fl) } {
        0 => Ok(()),
        _ => Err(errno()),
    }
}

/// fcntl(F_GETLK): (type, start, len, pid) of the lock in the way, or F_UNLCK.
fn getlk(fd: i32, typ: i32, start: i64, len: i64) -> (i32, i64, i64, i32) {
    let mut fl = flock_struct(typ, start, len);
    // SAFETY: `fl` outlives the call.
    assert_eq!(
        unsafe { libc::fcntl(fd, libc::F_GETLK, &mut fl) },
        0,
        "F_GETLK: {}",
        errno()
    );
    (fl.l_type as i32, fl.l_start, fl.l_len, fl.l_pid)
}

fn flock(fd: i32, op: i32) -> Result<(), i32> {
    // SAFETY: a plain syscall on an open descriptor.
    match unsafe { libc::flock(fd, op) } {
        0 => Ok(()),
        _ => Err(errno()),
    }
}

fn open(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Polls `f` until it is true or `limit` passes; returns how long it took.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A forked child process (another lock owner): it opens a file, runs one lock
/// operation, reports its errno (0: success) on a pipe, and keeps its descriptor (and
/// so its locks) until told to exit or killed.
struct Child {
    pid: i32,
    report: i32,
    go: i32,
}

#[derive(Clone, Copy)]
enum Op {
    SetLk(i32, i32, i64, i64),
    Flock(i32),
}

impl Child {
    fn start(path: &Path, op: Op) -> Child {
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let (mut up, mut down) = ([0i32; 2], [0i32; 2]);
        // SAFETY: pipe(2) into local arrays.
        unsafe {
            assert_eq!(libc::pipe(up.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(down.as_mut_ptr()), 0);
        }
        // SAFETY: the child only makes async-signal-safe calls (open, fcntl, flock,
        // write, read, _exit) on data prepared before the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", errno());
        if pid == 0 {
            unsafe {
                let fd = libc::open(c_path.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o644);
                let r = if fd < 0 {
                    -1
                } else {
                    match op {
                        Op::SetLk(cmd, typ, start, len) => {
                            let mut fl: libc::flock = std::mem::zeroed();
                            fl.l_type = typ as i16;
                            fl.l_whence = libc::SEEK_SET as i16;
                            fl.l_start = start;
                            fl.l_len = len;
                            libc::fcntl(fd, cmd, &fl)
                        }
                        Op::Flock(o) => libc::flock(fd, o),
                    }
                };
                let code: u8 = if r == 0 {
                    0
                } else {
                    *libc::__errno_location() as u8
                };
                libc::write(up[1], &code as *const u8 as *const libc::c_void, 1);
                let mut b = 0u8;
                libc::read(down[0], &mut b as *mut u8 as *mut libc::c_void, 1);
                libc::_exit(0);
            }
        }
        // SAFETY: closing the ends the parent does not use.
        unsafe {
            libc::close(up[1]);
            libc::close(down[0]);
        }
        Child {
            pid,
            report: up[0],
            go: down[1],
        }
    }

    /// The errno its operation ended with, if it ended within `limit`.
    fn result(&self, limit: Duration) -> Option<i32> {
        let mut p = libc::pollfd {
            fd: self.report,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, then a one-byte read into a local.
        unsafe {
            if libc::poll(&mut p, 1, limit.as_millis() as i32) != 1 {
                return None;
            }
            let mut b = 0u8;
            if libc::read(self.report, &mut b as *mut u8 as *mut libc::c_void, 1) != 1 {
                return None;
            }
            Some(b as i32)
        }
    }

    /// Lets it exit (closing its descriptor) and reaps it.
    fn exit(self) {
        // SAFETY: a one-byte write, then waitpid of our own child.
        unsafe {
            libc::write(self.go, b"x".as_ptr() as *const libc::c_void, 1);
        }
        assert!(
            self.reaped_within(Duration::from_secs(10)),
            "child did not exit"
        );
    }

    /// SIGKILLs it; whether it was gone within `limit`.
    fn kill(self, limit: Duration) -> bool {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
        self.reaped_within(limit)
    }

    fn reaped_within(&self, limit: Duration) -> bool {
        eventually(limit, || {
            let mut status = 0;
            // SAFETY: waitpid of our own child.
            unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) == self.pid }
        })
        .is_some()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: our own descriptors and child.
        unsafe {
            libc::close(self.report);
            libc::close(self.go);
            libc::kill(self.pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(self.pid, &mut status, libc::WNOHANG);
        }
    }
}

#[test]
fn locks_between_processes_of_one_mount() {
    let mut v = Volume::new();
    v.format();
    v.mount();
    let f = v.path("posix");
    let g = v.path("flocked");
    let me = open(&f);
    let fd = me.as_raw_fd();

    // A write lock of another process excludes this one where they overlap only.
    let holder = Child::start(&f, Op::SetLk(libc::F_SETLK, libc::F_WRLCK, 0, 100));
    assert_eq!(holder.result(Duration::from_secs(10)), Some(0));
    assert_eq!(
        setlk(fd, libc::F_SETLK, libc::F_WRLCK, 50, 10),
        Err(libc::EAGAIN)
    );
    assert_eq!(
        setlk(fd, libc::F_SETLK, libc::F_RDLCK, 99, 1),
        Err(libc::EAGAIN)
    );
    setlk(fd, libc::F_SETLK, libc::F_WRLCK, 100, 100).unwrap();
    assert_eq!(
        getlk(fd, libc::F_RDLCK, 0, EOF),
        (libc::F_WRLCK, 0, 100, holder.pid)
    );
    assert_eq!(getlk(fd, libc::F_WRLCK, 300, 10).0, libc::F_UNLCK);
    // flock and POSIX locks share one table (as on NFS): the record lock is in the
    // way of a whole-file flock.
    let other = open(&f);
    assert_eq!(
        flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB),
        Err(libc::EWOULDBLOCK)
    );
    // POSIX: closing any descriptor of the file drops this process's [100, 200).
    drop(other);
    let after = Child::start(&f, Op::SetLk(libc::F_SETLK, libc::F_WRLCK, 100, 100));
    assert_eq!(after.result(Duration::from_secs(10)), Some(0));
    after.exit();

    // F_SETLKW waits until the holder exits (its close releases the lock).
    let waiter = {
        let f = f.clone();
        std::thread::spawn(move || {
            let me = open(&f);
            let t = Instant::now();
            let r = setlk(me.as_raw_fd(), libc::F_SETLKW, libc::F_WRLCK, 0, 100);
            (r, t.elapsed(), me)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !waiter.is_finished(),
        "F_SETLKW returned while the lock was held"
    );
    holder.exit();
    let (r, waited, mine) = waiter.join().unwrap();
    assert_eq!(r, Ok(()));
    assert!(
        waited >= Duration::from_millis(400),
        "waited only {waited:?}"
    );
    // Now this process holds [0, 100); unlock a middle piece: another process gets
    // the hole and nothing around it.
    setlk(mine.as_raw_fd(), libc::F_SETLK, libc::F_UNLCK, 40, 10).unwrap();
    let hole = Child::start(&f, Op::SetLk(libc::F_SETLK, libc::F_WRLCK, 40, 10));
    assert_eq!(hole.result(Duration::from_secs(10)), Some(0));
    let edge = Child::start(&f, Op::SetLk(libc::F_SETLK, libc::F_RDLCK, 39, 2));
    assert_eq!(edge.result(Duration::from_secs(10)), Some(libc::EAGAIN));
    hole.exit();
    edge.exit();
    drop(mine);
    drop(me);

    // flock: exclusive and shared between open files.
    let first = Child::start(&g, Op::Flock(libc::LOCK_EX));
    assert_eq!(first.result(Duration::from_secs(10)), Some(0));
    let mine = open(&g);
    assert_eq!(
        flock(mine.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB),
        Err(libc::EWOULDBLOCK)
    );
    // A blocked flock is killable, and a signal with a handler interrupts it
    // (flock(1) -w times out with SIGALRM).
    let stuck = Child::start(&g, Op::Flock(libc::LOCK_EX));
    assert_eq!(stuck.result(Duration::from_millis(300)), None);
    assert!(
        stuck.kill(Duration::from_secs(5)),
        "a SIGKILLed waiter stayed"
    );
    let t = Instant::now();
    let timed = Command::new("flock")
        .args(["-w", "1", "-x"])
        .arg(&g)
        .arg("true")
        .status()
        .expect("run flock(1)");
    assert_eq!(timed.code(), Some(1), "flock -w 1 got the lock");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "flock -w 1 took {:?}",
        t.elapsed()
    );
    first.exit();
    // The holder's file was released: shared locks now, for two open files.
    eventually(Duration::from_secs(5), || {
        flock(mine.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB).is_ok()
    })
    .expect("flock after the holder exited");
    let sharer = Child::start(&g, Op::Flock(libc::LOCK_SH | libc::LOCK_NB));
    assert_eq!(sharer.result(Duration::from_secs(10)), Some(0));
    let excl = Child::start(&g, Op::Flock(libc::LOCK_EX | libc::LOCK_NB));
    assert_eq!(
        excl.result(Duration::from_secs(10)),
        Some(libc::EWOULDBLOCK)
    );
    sharer.exit();
    excl.exit();
    drop(mine);
    v.umount();
}

/// A replicated volume on one `ferrofs meta-server` process.
struct Server {
    child: Proc,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SECRET: &str = "locks-test-secret";

fn start_server(dir: &Path) -> Server {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let log = std::fs::File::create(dir.join("replica.log")).unwrap();
    let child = Command::new(bin())
        .env("FERROFS_META_SECRET", SECRET)
        .args(["meta-server", "--id", "1", "--peers", &format!("1={addr}")])
        .args(["--data-dir", dir.join("r1").to_str().unwrap()])
        .args(["--tick", "50ms"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a meta server");
    Server {
        child,
        url: format!("raft://:{SECRET}@{addr}"),
    }
}

/// Detaches a mount point when dropped (the test may fail with mounts up).
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = ferrofs(&["umount", "--force", self.0.to_str().unwrap()]);
    }
}

/// Mounts `v` with a 3 s session TTL; returns the mount process's pid.
fn mount_short_ttl(v: &Volume) -> i32 {
    let log = v.dir.path().join("mount.log");
    let cache = v.dir.path().join("cache");
    let o = Command::new(bin())
        .env("FERROFS_SESSION_TTL", "3")
        .args(["mount", &v.meta_url, v.mnt.to_str().unwrap(), "-d"])
        .args(["--log", log.to_str().unwrap()])
        .args(["--cache-dir", cache.to_str().unwrap()])
        .output()
        .expect("run ferrofs mount");
    assert!(o.status.success(), "mount failed: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.split("(pid ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"))
}

#[test]
fn locks_hold_across_two_mounts_and_go_with_a_killed_mount() {
    let mut a = Volume::new();
    let server = start_server(a.dir.path());
    a.meta_url = server.url.clone();
    a.format();
    let a_pid = mount_short_ttl(&a);
    let a_mounted = Mounted(a.mnt.clone());
    let mut b = Volume::new();
    b.meta_url = server.url.clone();
    mount_short_ttl(&b);
    let b_mounted = Mounted(b.mnt.clone());

    // A record lock taken through A is seen and conflicts through B.
    let fa = open(&a.path("f"));
    setlk(fa.as_raw_fd(), libc::F_SETLK, libc::F_WRLCK, 0, 100).unwrap();
    let fb = open(&b.path("f"));
    let bfd = fb.as_raw_fd();
    assert_eq!(
        setlk(bfd, libc::F_SETLK, libc::F_WRLCK, 50, 10),
        Err(libc::EAGAIN)
    );
    setlk(bfd, libc::F_SETLK, libc::F_RDLCK, 100, EOF).unwrap();
    let me = std::process::id() as i32;
    assert_eq!(
        getlk(bfd, libc::F_RDLCK, 10, 1),
        (libc::F_WRLCK, 0, 100, me)
    );
    // F_SETLKW through B waits for A's close (found by polling the metadata).
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let r = setlk(bfd, libc::F_SETLKW, libc::F_WRLCK, 0, 100);
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !waiter.is_finished(),
        "F_SETLKW through B returned while A held the lock"
    );
    drop(fa);
    let (r, waited) = waiter.join().unwrap();
    assert_eq!(r, Ok(()));
    assert!(
        waited < Duration::from_secs(5),
        "B waited {waited:?} after A closed"
    );
    // And now A sees B's lock.
    let fa = open(&a.path("f"));
    assert_eq!(
        getlk(fa.as_raw_fd(), libc::F_WRLCK, 0, EOF),
        (libc::F_WRLCK, 0, 100, me)
    );
    drop(fa);
    drop(fb);

    // flock through A excludes B until A's file is released.
    let ga = open(&a.path("g"));
    flock(ga.as_raw_fd(), libc::LOCK_EX).unwrap();
    let gb = open(&b.path("g"));
    assert_eq!(
        flock(gb.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB),
        Err(libc::EWOULDBLOCK)
    );
    drop(ga);
    eventually(Duration::from_secs(5), || {
        flock(gb.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB).is_ok()
    })
    .expect("B's flock after A released the file");
    drop(gb);

    // A is killed while it holds both kinds of lock; B's requests fail until A's
    // session expires (TTL 3 s) and B's cleanup removes A's locks.
    let ha = open(&a.path("h"));
    setlk(ha.as_raw_fd(), libc::F_SETLK, libc::F_WRLCK, 0, EOF).unwrap();
    let ka = open(&a.path("k"));
    flock(ka.as_raw_fd(), libc::LOCK_EX).unwrap();
    // SAFETY: signalling the mount process this test started.
    unsafe {
        libc::kill(a_pid, libc::SIGKILL);
    }
    let hb = open(&b.path("h"));
    let kb = open(&b.path("k"));
    assert_eq!(
        setlk(hb.as_raw_fd(), libc::F_SETLK, libc::F_RDLCK, 0, 1),
        Err(libc::EAGAIN)
    );
    let t = Instant::now();
    let took = eventually(Duration::from_secs(30), || {
        setlk(hb.as_raw_fd(), libc::F_SETLK, libc::F_WRLCK, 0, EOF).is_ok()
    })
    .expect("A's record lock outlived its session");
    assert!(
        took >= Duration::from_secs(2),
        "A's lock went after {took:?}, before its TTL"
    );
    flock(kb.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB).expect("A's flock outlived its session");
    eprintln!("a killed mount's locks went after {:?}", t.elapsed());
    drop((ha, ka, hb, kb));
    // A's mount point is dead: detach it, and remove the files its process left.
    drop(a_mounted);
    let name: String = a
        .mnt
        .canonicalize()
        .unwrap_or_else(|_| a.mnt.clone())
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    for ext in ["pid", "sock"] {
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("ferrofs{name}.{ext}")));
    }
    let o = ferrofs(&["umount", b.mnt.to_str().unwrap()]);
    assert!(o.status.success(), "umount B: {}", stderr(&o));
    std::mem::forget(b_mounted);
    drop(server);
}
