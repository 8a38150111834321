//! The data layout: a file is a sequence of 64 MiB chunks; each chunk is a list of
//! slice records (one per flushed write, newest wins); each slice is stored as block
//! objects of the volume's block size.

pub mod block;
pub mod compact;
pub mod read;
pub mod slice;
pub mod write_buffer;

#[cfg(test)]
mod test_support;

pub use compact::{compaction_plan, referenced_slice_sizes, referenced_slices, CompactionPlan};
pub use read::{read_plan, visible, ReadPiece, Visible};
pub use slice::{blocks_of_slice, decode_slices, encode_slices, BlockKey, SliceRef};
pub use write_buffer::WriteBuffer;
