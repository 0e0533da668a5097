//! Activation sparsity (issue 17: TEAL, LaRoSA): what makes skipping zeroed activations pay.
//! `gemv` holds the sparse matrix-vector products on column-major weights, `histogram` the
//! magnitude histograms TEAL's thresholds come from, `eigen` the symmetric eigensolver for
//! LaRoSA's rotations, `gemv_cuda` the CUDA kernel, `calibration` the statistics collected over a calibration text (and
//! their cache). The model side (which inputs are sparsified, the folded weights) is
//! `models::sparse_projection`.

pub mod calibration;
pub mod eigen;
pub mod gemv;
/// The CUDA kernel (`kernels/sparse_gemv.cu`); only the GPU benchmark calls it, so no twin.
#[cfg(feature = "cuda")]
pub mod gemv_cuda;
pub mod histogram;

use serde::{Deserialize, Serialize};

/// An activation-sparsity method and its target share of zeroed projection inputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SparsityMethod {
    /// TEAL (Liu et al. 2024, FasterDecoding/TEAL): every projection input's entries under a
    /// magnitude threshold zeroed; thresholds per layer and projection from calibration
    /// histograms, so the share zeroed on other text is near, not exactly, the target.
    Teal(f64),
    /// LaRoSA (Liu et al., ICML 2025): the hidden-size projection inputs rotated into the
    /// principal axes of their calibration second moment, then the top-k entries by magnitude
    /// kept (k = (1 - S) x width on every token, so the share is exact); the o and down
    /// inputs keep their top-k unrotated (see `models::sparse_projection` for why).
    Larosa(f64),
}

impl SparsityMethod {
    pub fn share(self) -> f64 {
        match self {
            Self::Teal(s) | Self::Larosa(s) => s,
        }
    }
    pub fn kind(self) -> &'static str {
        match self {
            Self::Teal(_) => "teal",
            Self::Larosa(_) => "larosa",
        }
    }
    /// Whether calibration must collect second moments (LaRoSA's rotations) or histograms.
    pub fn needs_moments(self) -> bool {
        matches!(self, Self::Larosa(_))
    }
}

impl std::fmt::Display for SparsityMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind(), self.share())
    }
}

impl std::str::FromStr for SparsityMethod {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let usage =
            "write teal:S or larosa:S with S the share of zeroed inputs in [0, 1), e.g. teal:0.4";
        let (kind, share) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}`: {usage}"))?;
        let share: f64 = share
            .trim()
            .parse()
            .map_err(|_| format!("`{text}`: {usage}"))?;
        if !(0.0..1.0).contains(&share) {
            return Err(format!(
                "`{text}`: sparsity {share} is outside [0, 1); {usage}"
            ));
        }
        match kind.trim() {
            "teal" => Ok(Self::Teal(share)),
            "larosa" => Ok(Self::Larosa(share)),
            other => Err(format!("`{text}`: unknown method `{other}`; {usage}")),
        }
    }
}

impl TryFrom<String> for SparsityMethod {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SparsityMethod> for String {
    fn from(m: SparsityMethod) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_and_print_back() {
        for text in ["teal:0.4", "larosa:0.25", "teal:0"] {
            assert_eq!(text.parse::<SparsityMethod>().unwrap().to_string(), text);
        }
        for bad in [
            "teal",
            "teal:1",
            "teal:-0.1",
            "larosa:1.5",
            "cats:0.4",
            "teal:x",
            "teal:NaN",
        ] {
            assert!(bad.parse::<SparsityMethod>().is_err(), "{bad}");
        }
        assert!("teal:1"
            .parse::<SparsityMethod>()
            .unwrap_err()
            .contains("[0, 1)"));
    }
}
