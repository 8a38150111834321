//! The event trace of a run and its hash.
//!
//! Every yield point, fault and lifecycle change is an event: (virtual time, client, kind,
//! key, outcome). Their FNV-1a hash over the whole run is the run's fingerprint: the same
//! seed must give the same hash, byte for byte. With `--trace` each event is also printed
//! as it happens.

use std::fmt::Write as _;

/// 64-bit FNV-1a.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    pub fn u64(&mut self, x: u64) -> &mut Self {
        self.bytes(&x.to_le_bytes())
    }

    /// A digest of a large buffer, eight bytes at a time (much faster than byte-wise
    /// FNV on object data; as good for telling runs apart).
    pub fn data(&mut self, b: &[u8]) -> &mut Self {
        let mut h: u64 = b.len() as u64;
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            h = (h ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        }
        self.u64(h).field(words.remainder())
    }

    /// A field of variable length: its length first, so fields cannot run together.
    pub fn field(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64).bytes(b)
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Who caused an event: a client (by number) or the simulator itself.
pub const WORLD: usize = usize::MAX;

/// The running trace of one run.
#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv,
    events: u64,
    print: bool,
}

impl Trace {
    pub fn new(print: bool) -> Trace {
        Trace {
            print,
            ..Trace::default()
        }
    }

    /// Records one event. `detail` is only evaluated when the trace is printed.
    pub fn record(
        &mut self,
        time: u64,
        client: usize,
        kind: &str,
        key: &[u8],
        outcome: u64,
        detail: impl FnOnce() -> String,
    ) {
        self.events += 1;
        self.hash
            .u64(time)
            .u64(client as u64)
            .field(kind.as_bytes())
            .field(key)
            .u64(outcome);
        if self.print {
            let who = if client == WORLD {
                "world".to_string()
            } else {
                format!("c{client}")
            };
            let mut line = format!(
                "{:>6} {:>12.6}s {who:>5} {kind:<14} {}",
                self.events,
                time as f64 / 1e9,
                show_key(key)
            );
            let d = detail();
            if !d.is_empty() {
                let _ = write!(line, "  {d}");
            }
            println!("{line}");
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    pub fn events(&self) -> u64 {
        self.events
    }
}

/// A key for people: metadata keys decoded (`A#259.C0`, `A#1.D"c0"`, `G#77`,
/// `CnextSlice`), other keys as printable bytes with `\xNN` escapes, long ones cut.
pub fn show_key(key: &[u8]) -> String {
    let id = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let s = match key {
        [b'A', rest @ ..] if rest.len() >= 9 => {
            let (ino, tag, tail) = (id(&rest[..8]), rest[8], &rest[9..]);
            match (tag, tail.len()) {
                (b'C', 4) => format!(
                    "A#{ino}.C{}",
                    u32::from_be_bytes(tail.try_into().unwrap_or([0; 4]))
                ),
                (b'E', 8) => format!("A#{ino}.E{}", id(tail)),
                (b'D' | b'X', _) => format!("A#{ino}.{}{:?}", tag as char, text(tail)),
                _ => format!("A#{ino}.{}{}", tag as char, escaped(tail)),
            }
        }
        [t @ (b'G' | b'U' | b'H'), rest @ ..] if rest.len() == 8 => {
            format!("{}#{}", *t as char, id(rest))
        }
        _ => escaped(key),
    };
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(60).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn escaped(key: &[u8]) -> String {
    let mut s = String::new();
    for &b in key {
        if b.is_ascii_graphic() {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_and_fields_do_not_run_together() {
        let mut h = Fnv::default();
        h.bytes(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        let (mut a, mut b) = (Fnv::default(), Fnv::default());
        a.field(b"ab").field(b"c");
        b.field(b"a").field(b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn metadata_keys_read_well() {
        let mut chunk = vec![b'A'];
        chunk.extend_from_slice(&259u64.to_be_bytes());
        chunk.push(b'C');
        chunk.extend_from_slice(&2u32.to_be_bytes());
        assert_eq!(show_key(&chunk), "A#259.C2");
        let mut d = vec![b'A'];
        d.extend_from_slice(&1u64.to_be_bytes());
        d.extend_from_slice(b"Dc0");
        assert_eq!(show_key(&d), "A#1.D\"c0\"");
        assert_eq!(show_key(b"CnextSlice"), "CnextSlice");
        assert_eq!(show_key(b"chunks/0/0/5_0_1"), "chunks/0/0/5_0_1");
    }
}
