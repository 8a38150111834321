//! The data layout: a file is a sequence of 64 MiB chunks; each chunk is a list of
//! slice records (one per flushed write, newest wins); each slice is stored as block
//! objects of the volume's block size.

pub mod slice;

pub use slice::{blocks_of_slice, decode_slices, encode_slices, BlockKey, SliceRef};
