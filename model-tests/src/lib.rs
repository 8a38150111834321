//! # ferrofs-model-tests
//!
//! (draft)

pub mod model;
pub mod ops;
pub mod posix;
pub mod target;
pub mod walk;
