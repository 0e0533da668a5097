//! Measurement helpers the engine uses: process memory (sampled peak RSS).

pub mod memory;
