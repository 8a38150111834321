//! Reading `/proc/self/mountinfo`: is a path a mount point, and of what.

use std::path::Path;

/// What is mounted at a mount point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    /// File-system type, e.g. `fuse` or `ext4`.
    pub fs_type: String,
    /// Mount source, e.g. `ferrofs:myvol`.
    pub source: String,
}

impl Mounted {
    pub fn is_ferrofs(&self) -> bool {
        self.fs_type.starts_with("fuse") && self.source.starts_with("ferrofs:")
    }
}

/// What is mounted at `path`, if it is a mount point. `path` should be canonical.
pub fn mounted_at(path: &Path) -> Option<Mounted> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_string_lossy();
    // Fields: id parent major:minor root mount-point options... - fstype source super
    info.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let mount_point = unescape(fields.nth(4)?);
        if mount_point != want {
            return None;
        }
        let mut rest = line.split(" - ").nth(1)?.split(' ');
        Some(Mounted {
            fs_type: rest.next()?.to_string(),
            source: unescape(rest.next()?),
        })
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical path of `path` if a ferrofs volume is mounted there, else a message.
pub fn ferrofs_mount(path: &Path) -> Result<std::path::PathBuf, String> {
    let mnt = path
        .canonicalize()
        .map_err(|e| format!("cannot use {}: {e}", path.display()))?;
    if !mounted_at(&mnt).is_some_and(|m| m.is_ferrofs()) {
        return Err(format!("{} is not a ferrofs mount point", mnt.display()));
    }
    Ok(mnt)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescape_octal() {
        assert_eq!(super::unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(super::unescape("/plain"), "/plain");
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(super::mounted_at(std::path::Path::new("/")).is_some());
    }
}
