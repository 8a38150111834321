//! Compaction: rewriting a chunk's many overlapping slice records as one slice.
//!
//! Every flushed write appends a record, so a chunk written in small pieces accumulates
//! records (slower reads, more objects). Compaction reads the chunk's visible data once
//! through [`read_plan`](super::read::read_plan), stores it as one new slice, and replaces
//! the old records. When to compact (a record-count threshold) is the metadata layer's
//! decision; this module only says what to rewrite.

use super::read::visible;
use super::slice::SliceRef;
use crate::types::SliceId;
use std::collections::BTreeMap;

/// What to rewrite: chunk bytes `[start, start+len)` become one new slice.
///
/// The range runs from the first to the last byte that some data record (not a hole)
/// still shows. Bytes outside it read as zeros both before and after, so they need no
/// record; zeros inside it are stored as data, which keeps the result a single record.
/// `len == 0` means the chunk shows no data at all: its records are simply dropped and
/// nothing is read or written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CompactionPlan {
    pub start: u32,
    pub len: u32,
}

impl CompactionPlan {
    /// Whether no data needs to be read or written (the records are all holes).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records that replace the compacted ones, `new_id` being the slice written
    /// with bytes `[start, start+len)`. Records committed after the compacted list was
    /// read must be kept after these (they are newer and still win).
    pub fn replacement(&self, new_id: SliceId) -> Vec<SliceRef> {
        if self.is_empty() {
            Vec::new()
        } else {
            vec![SliceRef::new(self.start, new_id, self.len)]
        }
    }
}

/// The compaction of a chunk's record list, or `None` when it would change nothing (no
/// records, or already a single record showing a whole slice).
pub fn compaction_plan(slices: &[SliceRef]) -> Option<CompactionPlan> {
    match slices {
        [] => return None,
        [only] if only.id != SliceId::ZERO && only.off == 0 && only.size == only.len => {
            return None
        }
        _ => {}
    }
    let mut data = visible(slices)
        .into_iter()
        .filter(|v| v.slice.id != SliceId::ZERO);
    let plan = match data.next() {
        None => CompactionPlan { start: 0, len: 0 },
        Some(first) => {
            let end = data.next_back().map_or(first.end, |v| v.end);
            CompactionPlan {
                start: first.start,
                len: end - first.start,
            }
        }
    };
    Some(plan)
}

/// The distinct non-hole slices a record list refers to, ascending.
pub fn referenced_slices(slices: &[SliceRef]) -> Vec<SliceId> {
    referenced_slice_sizes(slices)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// The distinct non-hole slices a record list refers to with their stored sizes
/// (what the gc queue needs to name their block objects), ascending by id.
pub fn referenced_slice_sizes(slices: &[SliceRef]) -> Vec<(SliceId, u32)> {
    let mut ids = BTreeMap::new();
    for s in slices.iter().filter(|s| s.id != SliceId::ZERO) {
        ids.entry(s.id).or_insert(s.size);
    }
    ids.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::read::read_plan;
    use crate::chunk::test_support::{arb_slices, content, execute, naive};
    use proptest::prelude::*;

    #[test]
    fn nothing_to_do() {
        assert_eq!(compaction_plan(&[]), None);
        assert_eq!(compaction_plan(&[SliceRef::new(5, SliceId(1), 9)]), None);
    }

    #[test]
    fn holes_only_are_dropped() {
        let p = compaction_plan(&[SliceRef::zero(0, 10), SliceRef::zero(5, 10)]).unwrap();
        assert!(p.is_empty());
        assert!(p.replacement(SliceId(9)).is_empty());
    }

    #[test]
    fn range_is_trimmed_to_visible_data() {
        let slices = [
            SliceRef::new(0, SliceId(1), 100),
            SliceRef::zero(0, 10),
            SliceRef::new(50, SliceId(2), 10),
            SliceRef::zero(80, 40),
        ];
        let p = compaction_plan(&slices).unwrap();
        assert_eq!(p, CompactionPlan { start: 10, len: 70 });
        assert_eq!(referenced_slices(&slices), vec![SliceId(1), SliceId(2)]);
        assert_eq!(
            referenced_slice_sizes(&slices),
            vec![(SliceId(1), 100), (SliceId(2), 10)]
        );
    }

    proptest! {
        #[test]
        fn compaction_preserves_reads(slices in arb_slices(40), block_size in 1u32..700) {
            let Some(plan) = compaction_plan(&slices) else {
                prop_assert!(slices.len() <= 1);
                return Ok(());
            };
            // The shell's side: read the range, store it as one new slice.
            let new_id = SliceId(1_000_000);
            let pieces = read_plan(&slices, plan.start, plan.len, block_size);
            let new_bytes = execute(&pieces, &slices, block_size, &content);
            let after = plan.replacement(new_id);
            prop_assert!(after.len() <= 1);
            let new_content = |id: SliceId, i: u64| {
                if id == new_id { new_bytes[i as usize] } else { content(id, i) }
            };
            let window = 4500;
            let plan_after = read_plan(&after, 0, window, block_size);
            let got = execute(&plan_after, &after, block_size, &new_content);
            prop_assert_eq!(got, naive(&slices, 0, window));
        }
    }
}
