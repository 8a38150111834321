//! Reading `/proc/self/mountinfo`: is a path a mount point, and of what.

use std::path::Path;

/// The file-system type mounted at `path` (e.g. `fuse.ferrofs`), if `path` is a mount
/// point. `path` should be canonical.
pub fn mounted_fs_type(path: &Path) -> Option<String> {
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
        rest.next().map(str::to_string)
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

#[cfg(test)]
mod tests {
    #[test]
    fn unescape_octal() {
        assert_eq!(super::unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(super::unescape("/plain"), "/plain");
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(super::mounted_fs_type(std::path::Path::new("/")).is_some());
    }
}
