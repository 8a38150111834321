//! `ferrofs umount`, and the unmount used by a mount process on SIGINT/SIGTERM.

use super::mountinfo::mounted_at;
use super::{CliResult, UmountArgs};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn run(a: UmountArgs) -> CliResult {
    let path = a
        .mountpoint
        .canonicalize()
        .map_err(|e| format!("cannot unmount {}: {e}", a.mountpoint.display()))?;
    match mounted_at(&path) {
        Some(m) if m.is_ferrofs() => {}
        Some(m) => {
            return Err(format!(
                "{} is a {} mount of {}, not ferrofs; use umount(8)",
                path.display(),
                m.fs_type,
                m.source
            ))
        }
        None => return Err(format!("{} is not mounted", path.display())),
    }
    let daemon = read_pid_file(&path);
    unmount(&path, a.force).map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => format!(
            "{} is busy: files are still open there; close them or use --force to detach",
            path.display()
        ),
        _ => format!("cannot unmount {}: {e}", path.display()),
    })?;
    // The mount process flushes and closes the metadata engine after the kernel lets
    // go; wait for it so that the volume can be mounted again at once.
    if let Some(pid) = daemon {
        let deadline = Instant::now() + Duration::from_secs(60);
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if process_alive(pid) {
            return Err(format!(
                "unmounted {}, but the mount process {pid} has not exited after 60 s",
                path.display()
            ));
        }
    }
    println!("unmounted {}", path.display());
    Ok(())
}

/// Unmounts `path`: directly when root, else through `fusermount3 -u`.
pub fn unmount(path: &Path, lazy: bool) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EPERM) {
        return Err(err);
    }
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd.arg(path).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Where a mount process records its pid, keyed by the mount point.
pub fn pid_file(mountpoint: &Path) -> PathBuf {
    let name: String = mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    std::env::temp_dir().join(format!("ferrofs{name}.pid"))
}

fn read_pid_file(mountpoint: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file(mountpoint))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn process_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); check its state too.
    // SAFETY: signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    if !exists {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .map(|r| r.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}
