//! Activation sparsity (issue 17: TEAL, LaRoSA): what makes skipping zeroed activations pay.
//! `gemv` holds the sparse matrix-vector products on column-major weights; calibration,
//! thresholds and the model integration build on them.

pub mod gemv;
