//! Data patterns that say who wrote them.
//!
//! Every write puts down bytes of a *stream* named by who wrote what: (client, file,
//! version) for an owned file, (inode, write id) for a shared one. The byte at file
//! offset `o` of a stream is a hash of (stream, `o`), so a byte read back at `o` can be
//! attributed — or shown to belong to nobody. Pattern bytes are never 0, so a 0 is
//! always a hole.

use crate::rng::splitmix64;

/// The stream of version `version` of owned file `file` of `client`.
pub fn owned_stream(client: usize, file: u32, version: u32) -> u64 {
    splitmix64(splitmix64(0x0_77ED ^ client as u64) ^ ((file as u64) << 32 | version as u64))
}

/// The stream of write `write_id` into shared inode `ino`.
pub fn shared_stream(ino: u64, write_id: u64) -> u64 {
    splitmix64(splitmix64(0x5_4A8ED ^ ino) ^ write_id.rotate_left(17))
}

fn word(stream: u64, index: u64) -> u64 {
    splitmix64(stream ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

/// The byte of `stream` at file offset `off` (never 0).
pub fn byte_at(stream: u64, off: u64) -> u8 {
    (word(stream, off >> 3) >> ((off & 7) * 8)) as u8 | 1
}

/// Every byte of a pattern word has its low bit set, so no pattern byte is 0.
const ODD: u64 = 0x0101_0101_0101_0101;

/// Bytes `[off, off + buf.len())` of `stream`.
pub fn fill(stream: u64, off: u64, buf: &mut [u8]) {
    let mut i = 0;
    // The unaligned head, byte by byte.
    while i < buf.len() && (off + i as u64) & 7 != 0 {
        buf[i] = byte_at(stream, off + i as u64);
        i += 1;
    }
    // Whole words.
    while i + 8 <= buf.len() {
        let w = word(stream, (off + i as u64) >> 3) | ODD;
        buf[i..i + 8].copy_from_slice(&w.to_le_bytes());
        i += 8;
    }
    while i < buf.len() {
        buf[i] = byte_at(stream, off + i as u64);
        i += 1;
    }
}

/// Bytes `[off, off + len)` of `stream`, as a new buffer.
pub fn bytes(stream: u64, off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fill(stream, off, &mut v);
    v
}

/// The first index where `buf` (read at file offset `off`) differs from `stream`.
pub fn first_mismatch(stream: u64, off: u64, buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() && (off + i as u64) & 7 != 0 {
        if buf[i] != byte_at(stream, off + i as u64) {
            return Some(i);
        }
        i += 1;
    }
    while i + 8 <= buf.len() {
        let w = word(stream, (off + i as u64) >> 3) | ODD;
        let got = u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
        if got != w {
            return Some(i + ((got ^ w).trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < buf.len() {
        if buf[i] != byte_at(stream, off + i as u64) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Sets `ok[i]` for every `i` in `[from, to)` where `buf[i]` (read at file offset
/// `off`) equals `stream`'s byte there.
pub fn mark_matches(stream: u64, off: u64, buf: &[u8], from: usize, to: usize, ok: &mut [bool]) {
    let mut i = from;
    while i < to {
        let o = off + i as u64;
        let w = (word(stream, o >> 3) | ODD).to_le_bytes();
        let mut b = (o & 7) as usize;
        while b < 8 && i < to {
            if buf[i] == w[b] {
                ok[i] = true;
            }
            b += 1;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_agrees_with_byte_at_at_any_alignment() {
        let s = owned_stream(1, 2, 3);
        for off in [0u64, 1, 7, 8, 13, 65_535] {
            let b = bytes(s, off, 37);
            for (i, &x) in b.iter().enumerate() {
                assert_eq!(x, byte_at(s, off + i as u64));
                assert_ne!(x, 0);
            }
            assert_eq!(first_mismatch(s, off, &b), None);
        }
        let mut b = bytes(s, 5, 20);
        b[11] ^= 2;
        assert_eq!(first_mismatch(s, 5, &b), Some(11));
        assert_ne!(bytes(s, 0, 64), bytes(owned_stream(1, 2, 4), 0, 64));
        assert_ne!(
            bytes(shared_stream(9, 1), 0, 64),
            bytes(shared_stream(9, 2), 0, 64)
        );
    }
}
