//! Eigenvectors of a symmetric matrix, for LaRoSA's rotations (the principal axes of a
//! projection input's second moment). Householder reduction to tridiagonal form, then the
//! implicit QL iteration with Wilkinson shifts: EISPACK's tred2 / tql2, as in the public-domain
//! JAMA library. f64 throughout: a 576 x 576 moment matrix summed over thousands of tokens
//! spans many orders of magnitude.

use anyhow::Result;

/// Eigenvalues (descending) and unit eigenvectors of the symmetric `n x n` row-major `a`:
/// `vectors[i * n + j]` is component `i` of eigenvector `j`, so the columns are the vectors
/// and `Q = vectors` satisfies `a = Q diag(values) Q^T`.
pub struct SymmetricEigen {
    pub values: Vec<f64>,
    pub vectors: Vec<f64>,
}

impl SymmetricEigen {
    pub fn of(a: &[f64], n: usize) -> Result<Self> {
        anyhow::ensure!(
            a.len() == n * n && n > 0,
            "eigen: {} values for a {n} x {n} matrix",
            a.len()
        );
        anyhow::ensure!(
            a.iter().all(|v| v.is_finite()),
            "eigen: the matrix has non-finite entries"
        );
        let mut v = a.to_vec();
        let mut d = vec![0f64; n];
        let mut e = vec![0f64; n];
        tridiagonalize(&mut v, &mut d, &mut e, n);
        diagonalize(&mut v, &mut d, &mut e, n)?;
        // Descending order, vectors moved with their values.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&x, &y| d[y].total_cmp(&d[x]));
        let values = order.iter().map(|&j| d[j]).collect();
        let mut vectors = vec![0f64; n * n];
        for i in 0..n {
            for (to, &from) in order.iter().enumerate() {
                vectors[i * n + to] = v[i * n + from];
            }
        }
        Ok(Self { values, vectors })
    }
}

/// Householder reduction of the symmetric `v` to tridiagonal form (diagonal `d`, subdiagonal
/// `e[1..]`), `v` left holding the accumulated orthogonal transformation.
fn tridiagonalize(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    let at = |i: usize, j: usize| i * n + j;
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for dk in d[..i].iter_mut() {
                *dk /= scale;
                h += *dk * *dk;
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].iter_mut().for_each(|x| *x = 0.0);
            for j in 0..i {
                f = d[j];
                v[at(j, i)] = f;
                g = e[j] + v[at(j, j)] * f;
                for k in j + 1..i {
                    g += v[at(k, j)] * d[k];
                    e[k] += v[at(k, j)] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                let (f, g) = (d[j], e[j]);
                for k in j..i {
                    v[at(k, j)] -= f * e[k] + g * d[k];
                }
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for i in 0..n - 1 {
        v[at(n - 1, i)] = v[at(i, i)];
        v[at(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[at(k, i + 1)] / h;
            }
            for j in 0..=i {
                let g: f64 = (0..=i).map(|k| v[at(k, i + 1)] * v[at(k, j)]).sum();
                for k in 0..=i {
                    v[at(k, j)] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[at(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
        v[at(n - 1, j)] = 0.0;
    }
    v[at(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// Iterations one eigenvalue may take before the matrix is called ill-conditioned (tql2
/// converges in 1-2 per value on moment matrices; 30 is EISPACK's bound).
const MAX_ITERATIONS: usize = 30;

/// Implicit QL iteration on the tridiagonal (`d`, `e`), rotating `v`'s columns along.
fn diagonalize(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) -> Result<()> {
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let (mut f, mut tst1) = (0.0f64, 0.0f64);
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            let mut iterations = 0;
            loop {
                iterations += 1;
                anyhow::ensure!(
                    iterations <= MAX_ITERATIONS,
                    "eigen: no convergence for eigenvalue {l}"
                );
                let g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let h = g - d[l];
                for x in d.iter_mut().skip(l + 2) {
                    *x -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0f64, 1.0f64, 1.0f64);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0f64, 0.0f64);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    let g = c * e[i];
                    let h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    for k in 0..n {
                        let row = &mut v[k * n..(k + 1) * n];
                        let h = row[i + 1];
                        row[i + 1] = s * row[i] + c * h;
                        row[i] = c * row[i] - s * h;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A random symmetric positive semi-definite matrix `X^T X`, as a second moment is.
    fn moment(n: usize, rows: usize, seed: u64) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x: Vec<f64> = (0..rows * n)
            .map(|_| rng.random_range(-1.0..1.0) * if rng.random_bool(0.1) { 20.0 } else { 1.0 })
            .collect();
        let mut a = vec![0f64; n * n];
        for r in 0..rows {
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] += x[r * n + i] * x[r * n + j];
                }
            }
        }
        a
    }

    #[test]
    fn vectors_are_orthonormal_and_rebuild_the_matrix() {
        for (n, seed) in [(1, 1), (2, 2), (7, 3), (64, 4)] {
            let a = moment(n, 3 * n, seed);
            let e = SymmetricEigen::of(&a, n).unwrap();
            let q = &e.vectors;
            let scale = a.iter().fold(0f64, |m, v| m.max(v.abs()));
            for i in 0..n {
                for j in 0..n {
                    let qtq: f64 = (0..n).map(|k| q[k * n + i] * q[k * n + j]).sum();
                    assert!(
                        (qtq - f64::from(i == j)).abs() < 1e-10,
                        "Q^T Q [{i},{j}] = {qtq} (n {n})"
                    );
                    let rebuilt: f64 = (0..n)
                        .map(|k| q[i * n + k] * e.values[k] * q[j * n + k])
                        .sum();
                    assert!(
                        (rebuilt - a[i * n + j]).abs() < 1e-9 * scale,
                        "A [{i},{j}]: {rebuilt} vs {} (n {n})",
                        a[i * n + j]
                    );
                }
            }
            assert!(
                e.values.windows(2).all(|w| w[0] >= w[1]),
                "descending: {:?}",
                e.values
            );
        }
    }

    #[test]
    fn a_diagonal_matrix_gives_its_entries_and_the_unit_axes() {
        let a = [1.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 3.0];
        let e = SymmetricEigen::of(&a, 3).unwrap();
        assert_eq!(e.values, [5.0, 3.0, 1.0]);
        // The first vector is the y axis (up to sign).
        assert!((e.vectors[3].abs() - 1.0).abs() < 1e-12 && e.vectors[0].abs() < 1e-12);
        assert!(SymmetricEigen::of(&[f64::NAN], 1).is_err());
    }
}
