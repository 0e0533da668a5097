//! Growing buffers of quantized values, appended and read through our kernels
//! (`quant::kv_int`). The quantized caches keep one per head: plain bytes and f32 scales, so
//! the bytes they report are exactly their lengths.

use crate::quant::kv_int::{dequantize_asym, dequantize_sym8, quantize_asym, quantize_sym8, Bits};

/// Symmetric 8-bit codes, one f32 scale per row of `row` values.
#[derive(Debug, Clone)]
pub struct SymCodes {
    row: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

/// Asymmetric codes packed `8 / bits` to a byte, an f32 scale and zero point per `group` values.
#[derive(Debug, Clone)]
pub struct AsymCodes {
    bits: Bits,
    group: usize,
    codes: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<f32>,
}

/// One of the two, chosen by bits: 8 symmetric per row, 2 or 4 asymmetric per group.
#[derive(Debug, Clone)]
pub enum Codes {
    Sym(SymCodes),
    Asym(AsymCodes),
}

impl AsymCodes {
    pub fn new(bits: Bits, group: usize) -> Self {
        Self { bits, group, codes: Vec::new(), scales: Vec::new(), zeros: Vec::new() }
    }

    /// Appends whole groups.
    pub fn push(&mut self, x: &[f32]) {
        quantize_asym(x, self.group, self.bits, &mut self.codes, &mut self.scales, &mut self.zeros);
    }

    /// Dequantizes `out.len() / group` groups starting at group `first`.
    pub fn read_groups(&self, first: usize, out: &mut [f32]) {
        let n = out.len() / self.group;
        let bytes = self.group * self.bits.bits() as usize / 8;
        dequantize_asym(
            &self.codes[first * bytes..(first + n) * bytes],
            &self.scales[first..first + n],
            &self.zeros[first..first + n],
            self.group,
            self.bits,
            out,
        );
    }

    fn truncate(&mut self, values: usize) {
        let groups = values / self.group;
        self.codes.truncate(groups * self.group * self.bits.bits() as usize / 8);
        self.scales.truncate(groups);
        self.zeros.truncate(groups);
    }

    pub fn bytes(&self) -> u64 {
        (self.codes.len() + 4 * (self.scales.len() + self.zeros.len())) as u64
    }
}

impl Codes {
    /// Rows of `row` values: 8 bits symmetric per row, else asymmetric per `group` values.
    pub fn new(bits: Bits, row: usize, group: usize) -> Self {
        match bits {
            Bits::Eight => Self::Sym(SymCodes { row, codes: Vec::new(), scales: Vec::new() }),
            _ => Self::Asym(AsymCodes::new(bits, group)),
        }
    }

    pub fn push(&mut self, x: &[f32]) {
        match self {
            Self::Sym(s) => quantize_sym8(x, s.row, &mut s.codes, &mut s.scales),
            Self::Asym(a) => a.push(x),
        }
    }

    /// Dequantizes everything into `out` (its length is the number of values held).
    pub fn read(&self, out: &mut [f32]) {
        match self {
            Self::Sym(s) => dequantize_sym8(&s.codes, &s.scales, s.row, out),
            Self::Asym(a) => a.read_groups(0, out),
        }
    }

    /// Keeps the first `values` values (a whole number of rows).
    pub fn truncate(&mut self, values: usize) {
        match self {
            Self::Sym(s) => {
                s.codes.truncate(values);
                s.scales.truncate(values / s.row);
            }
            Self::Asym(a) => a.truncate(values),
        }
    }

    pub fn bytes(&self) -> u64 {
        match self {
            Self::Sym(s) => (s.codes.len() + 4 * s.scales.len()) as u64,
            Self::Asym(a) => a.bytes(),
        }
    }
}
