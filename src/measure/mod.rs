//! Measurement: statistics over raw samples, process memory, batched steps, and the provenance recorded with
//! every result.

pub mod memory;
pub mod stats;
pub mod steps;
pub mod system;
