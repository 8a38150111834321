//! Checker: no data loss, no garbage.
//!
//! - **No data loss.** A whole-file read of an owned file that no rewrite raced must show
//!   one of the shapes the oracle accepts: after a successful close, exactly the version
//!   written (close-to-open, from any client, across crashes of other clients); after a
//!   system crash, the newest version covered by an acknowledged sync or a later one.
//! - **No garbage.** Every byte any read returns is 0 or a byte some write put at that
//!   offset of that file ([`crate::pattern`] makes bytes attributable). Corruption must
//!   surface as an error, never as data.
//! - **Errors have causes.** A read may fail with EIO only if the store returned an
//!   injected error to that client during the read, or if the objects it was reading
//!   were deleted under it (a rewrite or truncation and gc raced it); an owned file may
//!   be missing only if the oracle allows it. Faults of the local cache disks never
//!   explain an error: a damaged copy or a failed cache dir must be a miss.

use crate::oracle::{Shape, SharedWrite};
use crate::pattern;

/// Checks a whole-file read of owned file `/c{client}/f{file}` (`None`: it did not
/// exist) against the shapes the oracle accepted when the read began.
pub fn check_owned(
    client: usize,
    file: u32,
    accepted: &[Shape],
    got: Option<&[u8]>,
) -> Result<(), String> {
    let fits = |s: &Shape| match (*s, got) {
        (Shape::Absent, None) => true,
        (Shape::Exact { version, len }, Some(b)) => {
            b.len() as u64 == len
                && pattern::first_mismatch(pattern::owned_stream(client, file, version), 0, b)
                    .is_none()
        }
        (Shape::Prefix { version, len }, Some(b)) => {
            b.len() as u64 <= len
                && pattern::first_mismatch(pattern::owned_stream(client, file, version), 0, b)
                    .is_none()
        }
        _ => false,
    };
    if accepted.iter().any(fits) {
        return Ok(());
    }
    let what = match got {
        None => "it does not exist".to_string(),
        Some(b) => {
            let mut d = format!("{} bytes", b.len());
            for s in accepted {
                if let Some(v) = s.version() {
                    let stream = pattern::owned_stream(client, file, v);
                    let m = pattern::first_mismatch(stream, 0, b).unwrap_or(b.len());
                    d.push_str(&format!("; matches v{v} for {m} bytes"));
                }
            }
            d
        }
    };
    Err(format!(
        "data loss: /c{client}/f{file} should be one of {accepted:?}, but {what}"
    ))
}

/// Checks that every byte of `data`, read at `off` from owned file `/c{client}/f{file}`
/// while a rewrite raced the read, is 0 or a byte of one of `versions`.
pub fn check_owned_attributable(
    client: usize,
    file: u32,
    versions: &[(u32, u64)],
    off: u64,
    data: &[u8],
) -> Result<(), String> {
    let mut ok: Vec<bool> = data.iter().map(|&b| b == 0).collect();
    for &(v, len) in versions {
        let to = len.saturating_sub(off).min(data.len() as u64) as usize;
        let stream = pattern::owned_stream(client, file, v);
        pattern::mark_matches(stream, off, data, 0, to, &mut ok);
    }
    match ok.iter().position(|o| !o) {
        None => Ok(()),
        Some(i) => Err(format!(
            "garbage: /c{client}/f{file} byte {} is {:#04x}, written by none of versions {:?}",
            off + i as u64,
            data[i],
            versions.iter().map(|v| v.0).collect::<Vec<_>>()
        )),
    }
}

/// Checks that every byte of `data`, read at `off` from shared inode `ino`, is 0 or a
/// byte some logged write put there.
pub fn check_shared(ino: u64, writes: &[SharedWrite], off: u64, data: &[u8]) -> Result<(), String> {
    let end = off + data.len() as u64;
    let mut ok: Vec<bool> = data.iter().map(|&b| b == 0).collect();
    for w in writes.iter().filter(|w| w.start < end && w.end > off) {
        let from = (w.start.max(off) - off) as usize;
        let to = (w.end.min(end) - off) as usize;
        pattern::mark_matches(w.stream, off, data, from, to, &mut ok);
    }
    let bad = ok.iter().filter(|o| !**o).count();
    match ok.iter().position(|o| !o) {
        None => Ok(()),
        Some(i) => Err(format!(
            "garbage: inode {ino} byte {} is {:#04x}, which no write put there ({bad} such bytes in {} read at {off})",
            off + i as u64,
            data[i],
            data.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_reads_match_shapes_exactly() {
        let v1 = pattern::bytes(pattern::owned_stream(0, 1, 1), 0, 100);
        let exact = [Shape::Exact {
            version: 1,
            len: 100,
        }];
        assert!(check_owned(0, 1, &exact, Some(&v1)).is_ok());
        assert!(check_owned(0, 1, &exact, Some(&v1[..99])).is_err());
        assert!(check_owned(0, 1, &exact, None).is_err());
        let prefix = [Shape::Prefix {
            version: 1,
            len: 100,
        }];
        assert!(check_owned(0, 1, &prefix, Some(&v1[..40])).is_ok());
        assert!(check_owned(0, 1, &prefix, Some(&[])).is_ok());
        assert!(
            check_owned(0, 2, &exact, Some(&v1)).is_err(),
            "another file's bytes"
        );
        assert!(check_owned(0, 1, &[Shape::Absent], None).is_ok());
    }

    #[test]
    fn shared_reads_accept_zeros_and_logged_bytes_only() {
        let w = SharedWrite {
            stream: pattern::shared_stream(5, 1),
            start: 10,
            end: 30,
        };
        let mut data = vec![0u8; 40];
        pattern::fill(w.stream, 10, &mut data[10..30]);
        assert!(check_shared(5, &[w], 0, &data).is_ok());
        assert!(check_shared(5, &[w], 5, &data[5..25]).is_ok());
        data[35] = 7;
        assert!(check_shared(5, &[w], 0, &data).is_err());
        assert!(check_owned_attributable(0, 0, &[(1, 10)], 0, &[0, 0]).is_ok());
    }
}
