//! Measurement: statistics over raw samples, process memory, and the provenance recorded with
//! every result.

pub mod memory;
pub mod stats;
pub mod system;
