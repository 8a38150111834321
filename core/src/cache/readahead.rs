//! Readahead: telling sequential readers from random ones, and how far ahead of a
//! sequential reader to fetch.
//!
//! One [`Readahead`] per open file. Each read reports its range; the answer says whether
//! the read continues a sequential stream (then the shell fetches whole blocks) and which
//! bytes of the file to fetch in the background. The window starts at one block and
//! doubles with every sequential read up to the shell's limit (a share of
//! `--buffer-size`), as Linux's own readahead does, so a reader that stops after one
//! block costs at most one block of wasted fetching.
//!
//! Several FUSE threads serve one reader's kernel readahead, so sequential reads arrive
//! slightly out of order: a read within `tolerance` of the previous end still counts as
//! sequential.

use std::ops::Range;

/// Readahead state of one open file.
#[derive(Clone, Debug)]
pub struct Readahead {
    block_size: u64,
    max_window: u64,
    tolerance: u64,
    /// Furthest end of the reads of the current stream.
    last_end: u64,
    window: u64,
    /// Bytes below this were already handed out for prefetching.
    ahead_until: u64,
}

/// What to do about one read.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReadAdvice {
    /// The read continues a sequential stream: fetch whole blocks.
    pub sequential: bool,
    /// Bytes of the file to fetch in the background (possibly empty).
    pub prefetch: Range<u64>,
}

impl Readahead {
    /// Readahead for a volume with `block_size` blocks, never more than `max_window`
    /// bytes ahead of the reader (0 turns readahead off).
    pub fn new(block_size: u32, max_window: u64) -> Readahead {
        let block_size = block_size as u64;
        Readahead {
            block_size,
            max_window,
            tolerance: block_size.min(1 << 20),
            last_end: 0,
            window: 0,
            ahead_until: 0,
        }
    }

    /// Reports a read of `[offset, offset+len)` of a file `file_len` bytes long.
    pub fn on_read(&mut self, offset: u64, len: u64, file_len: u64) -> ReadAdvice {
        let end = offset.saturating_add(len);
        let sequential = offset <= self.last_end.saturating_add(self.tolerance)
            && end.saturating_add(self.tolerance) >= self.last_end;
        if !sequential {
            self.last_end = end;
            self.window = 0;
            self.ahead_until = end;
            return ReadAdvice {
                sequential: false,
                prefetch: end..end,
            };
        }
        self.last_end = self.last_end.max(end);
        self.window = if self.window == 0 {
            self.block_size
        } else {
            self.window.saturating_mul(2)
        }
        .min(self.max_window);
        let target = self.last_end.saturating_add(self.window).min(file_len);
        let from = self.ahead_until.max(self.last_end);
        self.ahead_until = self.ahead_until.max(target);
        ReadAdvice {
            sequential: true,
            prefetch: from..target.max(from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn sequential_window_grows_to_the_limit_and_never_repeats() {
        let mut ra = Readahead::new(4 << 20, 32 * MIB);
        let file = 1024 * MIB;
        let mut asked = 0;
        let mut windows = Vec::new();
        for i in 0..64 {
            let a = ra.on_read(i * 128 * 1024, 128 * 1024, file);
            assert!(a.sequential);
            if !a.prefetch.is_empty() {
                assert_eq!(a.prefetch.start, asked.max(a.prefetch.start));
                assert!(a.prefetch.start >= asked, "a range is asked for twice");
                asked = a.prefetch.end;
                windows.push(a.prefetch.end - (i + 1) * 128 * 1024);
            }
        }
        assert_eq!(*windows.iter().max().unwrap(), 32 * MIB);
        assert_eq!(windows[0], 4 * MIB);
    }

    #[test]
    fn random_reads_prefetch_nothing_and_reset() {
        let mut ra = Readahead::new(4 << 20, 32 * MIB);
        let file = 1024 * MIB;
        ra.on_read(0, 4096, file);
        let a = ra.on_read(500 * MIB, 4096, file);
        assert!(!a.sequential);
        assert!(a.prefetch.is_empty());
        // Continuing from there is a new stream starting at one block.
        let b = ra.on_read(500 * MIB + 4096, 4096, file);
        assert!(b.sequential);
        assert_eq!(b.prefetch.end - b.prefetch.start, 4 * MIB);
    }

    #[test]
    fn slightly_reordered_reads_stay_sequential_and_prefetch_stops_at_eof() {
        let mut ra = Readahead::new(4 << 20, 64 * MIB);
        let file = 10 * MIB;
        assert!(ra.on_read(0, 128 << 10, file).sequential);
        assert!(ra.on_read(256 << 10, 128 << 10, file).sequential);
        assert!(ra.on_read(128 << 10, 128 << 10, file).sequential);
        let mut until = 0;
        for i in 3..80 {
            let a = ra.on_read(i * (128 << 10), 128 << 10, file);
            until = until.max(a.prefetch.end);
        }
        assert_eq!(until, file);
    }

    #[test]
    fn zero_window_turns_readahead_off() {
        let mut ra = Readahead::new(4 << 20, 0);
        for i in 0..10 {
            assert!(ra.on_read(i * 4096, 4096, 1 << 30).prefetch.is_empty());
        }
    }
}
