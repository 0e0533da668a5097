//! Activation sparsity (issue 17: TEAL, LaRoSA): what makes skipping zeroed activations pay.
//! `gemv` holds the sparse matrix-vector products on column-major weights, `histogram` the
//! magnitude histograms TEAL's thresholds come from; the calibration pass over a text and the
//! model integration build on them.

pub mod gemv;
pub mod histogram;
