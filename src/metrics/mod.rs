//! Quality metrics as pure functions of ids and distributions (no engine, no model).

pub mod distribution;
pub mod quantization;
