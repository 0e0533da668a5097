//! Verification of drafted tokens against the target: pure functions over distributions, so
//! the rules are tested on hand-made numbers. Lossless rules: greedy (longest prefix equal to
//! the target's argmax) and rejection sampling (Leviathan et al. 2023, "Fast Inference from
//! Transformers via Speculative Decoding", algorithm 1; Chen et al. 2023). Lossy rules accept
//! tokens the target would not have chosen, for speed: a confidence threshold, top-k
//! agreement, and Medusa's typical acceptance (Cai et al. 2024, section 2.3.1).

use super::super::sampling::{argmax, sample_index};
use serde::{Deserialize, Serialize};

/// Medusa's typical-acceptance defaults (epsilon, delta) from the paper's experiments.
pub const TYPICAL_EPS: f32 = 0.09;
pub const TYPICAL_DELTA: f32 = 0.3;

/// How drafted tokens are accepted (`--policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Accept while the draft token is the target's argmax (lossless; temperature 0).
    Greedy,
    /// Accept with probability min(1, p/q), resample from norm(max(0, p - q)) (lossless).
    Rejection,
    /// Lossy: accept a token the target gives probability >= --tau.
    #[value(name = "conf_threshold")]
    ConfThreshold,
    /// Lossy: accept a token among the target's --agree-k most likely.
    #[value(name = "topk_agree")]
    TopkAgree,
    /// Lossy: Medusa's typical acceptance, p(x) > min(eps, delta * exp(-H(p))).
    Typical,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Greedy => "greedy",
            Self::Rejection => "rejection",
            Self::ConfThreshold => "conf_threshold",
            Self::TopkAgree => "topk_agree",
            Self::Typical => "typical",
        }
    }

    /// Whether the output is distributed exactly as the target's own (token for token under greedy).
    pub fn is_lossless(self) -> bool {
        matches!(self, Self::Greedy | Self::Rejection)
    }
}

/// A policy with its options (validated by the caller).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    Greedy,
    Rejection,
    ConfThreshold { tau: f32 },
    TopkAgree { k: usize },
    Typical { eps: f32, delta: f32 },
}

impl Policy {
    pub fn kind(self) -> PolicyKind {
        match self {
            Self::Greedy => PolicyKind::Greedy,
            Self::Rejection => PolicyKind::Rejection,
            Self::ConfThreshold { .. } => PolicyKind::ConfThreshold,
            Self::TopkAgree { .. } => PolicyKind::TopkAgree,
            Self::Typical { .. } => PolicyKind::Typical,
        }
    }

    /// "greedy", "conf_threshold:0.3", "typical:0.09/0.3" for results.
    pub fn label(self) -> String {
        match self {
            Self::Greedy | Self::Rejection => self.kind().name().into(),
            Self::ConfThreshold { tau } => format!("conf_threshold:{tau}"),
            Self::TopkAgree { k } => format!("topk_agree:{k}"),
            Self::Typical { eps, delta } => format!("typical:{eps}/{delta}"),
        }
    }

    /// Whether a lossy rule accepts `token` given the target's probabilities `p` there.
    fn lossy_accepts(self, p: &[f32], token: u32) -> bool {
        let px = p.get(token as usize).copied().unwrap_or(0.0);
        match self {
            Self::Greedy | Self::Rejection => false,
            Self::ConfThreshold { tau } => px >= tau,
            Self::TopkAgree { k } => p.iter().filter(|&&other| other > px).count() < k,
            Self::Typical { eps, delta } => px > eps.min(delta * (-entropy(p)).exp()),
        }
    }
}

/// Shannon entropy in nats.
fn entropy(p: &[f32]) -> f32 {
    -p.iter().filter(|&&x| x > 0.0).map(|&x| x * x.ln()).sum::<f32>()
}

/// What the target and the draft said about the drafted positions.
pub struct Rows<'a> {
    /// The target's sampling distribution after each prefix (one-hot at the argmax when
    /// greedy): `drafts.len() + 1` rows, the last one for the bonus token.
    pub target: &'a [Vec<f32>],
    /// The draft's distribution at each drafted position; `None` for a deterministic proposer
    /// (prompt lookup), whose proposal is a point mass.
    pub draft: Option<&'a [Vec<f32>]>,
    /// The target's probabilities that lossy rules judge with (softmax at the sampling
    /// temperature, at 1 when greedy); needed for lossy policies only.
    pub judge: Option<&'a [Vec<f32>]>,
    /// Whether the target picks by argmax (temperature 0) rather than by sampling.
    pub greedy: bool,
}

/// How many drafted tokens were accepted and the token the target adds after them (the
/// correction at the first rejection, or the bonus token when all were accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub accepted: usize,
    pub next: u32,
}

/// Verifies `drafts` under `policy`. `uniform` draws from [0, 1) (the sampler's seeded generator).
pub fn verify(policy: Policy, drafts: &[u32], rows: &Rows, uniform: &mut dyn FnMut() -> f32) -> Verdict {
    let choose = |row: &[f32], uniform: &mut dyn FnMut() -> f32| if rows.greedy { argmax(row) } else { sample_index(row, uniform()) };
    for (i, &x) in drafts.iter().enumerate() {
        let p = &rows.target[i];
        let accept = match policy {
            Policy::Greedy => argmax(p) == x,
            Policy::Rejection => {
                let q = rows.draft.map_or(1.0, |d| d[i][x as usize]);
                let px = p[x as usize];
                // min(1, p/q) with q = 0 read as "always": the draft never proposes what it gives 0.
                q <= 0.0 || uniform() < px / q
            }
            lossy => {
                let judge = rows.judge.map_or(p.as_slice(), |j| j[i].as_slice());
                (rows.greedy && argmax(p) == x) || lossy.lossy_accepts(judge, x)
            }
        };
        if accept {
            continue;
        }
        let next = match policy {
            Policy::Rejection => {
                let residual: Vec<f32> = match rows.draft {
                    Some(d) => p.iter().zip(&d[i]).map(|(&a, &b)| (a - b).max(0.0)).collect(),
                    None => p.iter().enumerate().map(|(j, &a)| if j == x as usize { 0.0 } else { a }).collect(),
                };
                // p == q leaves nothing: then rejection never happens in exact arithmetic; sample p.
                if residual.iter().sum::<f32>() > 0.0 { sample_index(&residual, uniform()) } else { choose(p, uniform) }
            }
            _ => choose(p, uniform),
        };
        return Verdict { accepted: i, next };
    }
    Verdict { accepted: drafts.len(), next: choose(&rows.target[drafts.len()], uniform) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn one_hot(n: usize, at: usize) -> Vec<f32> {
        let mut v = vec![0.0; n];
        v[at] = 1.0;
        v
    }

    #[test]
    fn greedy_accepts_the_longest_prefix_of_argmaxes_then_corrects() {
        let target = vec![one_hot(5, 2), one_hot(5, 4), one_hot(5, 1), one_hot(5, 3)];
        let rows = Rows { target: &target, draft: None, judge: None, greedy: true };
        let mut never = || -> f32 { panic!("greedy draws nothing") };
        assert_eq!(verify(Policy::Greedy, &[2, 4, 0], &rows, &mut never), Verdict { accepted: 2, next: 1 });
        assert_eq!(verify(Policy::Greedy, &[3, 4, 1], &rows, &mut never), Verdict { accepted: 0, next: 2 });
        assert_eq!(verify(Policy::Greedy, &[2, 4, 1], &rows, &mut never), Verdict { accepted: 3, next: 3 });
        // Rejection sampling over one-hot rows is the same rule.
        let draft = vec![one_hot(5, 2), one_hot(5, 4), one_hot(5, 0)];
        let rows = Rows { target: &target, draft: Some(&draft), judge: None, greedy: true };
        let mut u = || 0.5;
        assert_eq!(verify(Policy::Rejection, &[2, 4, 0], &rows, &mut u), Verdict { accepted: 2, next: 1 });
    }

    #[test]
    fn lossy_rules_accept_by_their_thresholds() {
        // Target probabilities with entropy H = 1.0297 nats: exp(-H) = 0.357.
        let p = vec![0.5f32, 0.3, 0.15, 0.05];
        let target = vec![one_hot(4, 0), one_hot(4, 0)];
        let judge = vec![p.clone(), p.clone()];
        let rows = Rows { target: &target, draft: None, judge: Some(&judge), greedy: true };
        let mut u = || 0.0;
        let mut accepted = |policy, token| verify(policy, &[token], &rows, &mut u).accepted;
        assert_eq!(accepted(Policy::ConfThreshold { tau: 0.3 }, 1), 1);
        assert_eq!(accepted(Policy::ConfThreshold { tau: 0.31 }, 1), 0);
        assert_eq!(accepted(Policy::TopkAgree { k: 3 }, 2), 1);
        assert_eq!(accepted(Policy::TopkAgree { k: 2 }, 2), 0);
        // Typical: threshold min(0.09, 0.3 * 0.357 = 0.107) = 0.09: 0.15 passes, 0.05 does not.
        assert_eq!(accepted(Policy::Typical { eps: TYPICAL_EPS, delta: TYPICAL_DELTA }, 2), 1);
        assert_eq!(accepted(Policy::Typical { eps: TYPICAL_EPS, delta: TYPICAL_DELTA }, 3), 0);
        // delta small enough that delta * exp(-H) decides: 0.1 * 0.357 = 0.036 < 0.05.
        assert_eq!(accepted(Policy::Typical { eps: TYPICAL_EPS, delta: 0.1 }, 3), 1);
        // The argmax is always accepted under greedy, whatever the threshold.
        assert_eq!(accepted(Policy::ConfThreshold { tau: 0.9 }, 0), 1);
    }

    /// Chi-square statistic of observed counts against expected probabilities.
    fn chi_square(counts: &[u64], expected: &[f64]) -> f64 {
        let n: u64 = counts.iter().sum();
        counts
            .iter()
            .zip(expected)
            .filter(|(_, &e)| e > 0.0)
            .map(|(&c, &e)| {
                let expect = e * n as f64;
                (c as f64 - expect).powi(2) / expect
            })
            .sum()
    }

    /// Chi-square critical value for 4 degrees of freedom (the 5 tokens the target can emit)
    /// at p = 0.001, from the tables.
    const CHI2_4DOF_P001: f64 = 18.467;
    const DRAWS: usize = 200_000;

    /// Target p and draft q differ everywhere that matters: q puts mass where p has none
    /// (token 5) and little where p has much (token 0).
    fn hand_made() -> (Vec<f32>, Vec<f32>) {
        (vec![0.40, 0.25, 0.15, 0.10, 0.10, 0.0], vec![0.05, 0.30, 0.30, 0.05, 0.10, 0.20])
    }

    /// The first token emitted after one drafted token, `DRAWS` times, under `rule`.
    /// A rule that emits the first token after one drafted token: (p, q, rng) -> token.
    type Rule<'a> = &'a dyn Fn(&[f32], &[f32], &mut StdRng) -> u32;

    fn first_tokens(rule: Rule) -> Vec<u64> {
        let (p, q) = hand_made();
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u64; p.len()];
        for _ in 0..DRAWS {
            counts[rule(&p, &q, &mut rng) as usize] += 1;
        }
        counts
    }

    fn ours(p: &[f32], q: &[f32], rng: &mut StdRng) -> u32 {
        let x = sample_index(q, rng.random());
        let target = vec![p.to_vec(), p.to_vec()];
        let draft = vec![q.to_vec()];
        let rows = Rows { target: &target, draft: Some(&draft), judge: None, greedy: false };
        let v = verify(Policy::Rejection, &[x], &rows, &mut || rng.random());
        if v.accepted == 1 { x } else { v.next }
    }

    #[test]
    fn rejection_sampling_reproduces_the_target_distribution() {
        let (p, _) = hand_made();
        let expected: Vec<f64> = p.iter().map(|&x| x as f64).collect();
        let counts = first_tokens(&ours);
        assert_eq!(counts[5], 0, "emitted a token the target gives probability 0");
        let stat = chi_square(&counts, &expected);
        eprintln!("rejection sampling: chi-square {stat:.2} over {DRAWS} draws (4 dof, critical {CHI2_4DOF_P001} at p = 0.001)");
        assert!(stat < CHI2_4DOF_P001, "chi-square {stat:.1} over {DRAWS} draws: not the target's distribution");
    }

    #[test]
    fn the_same_test_rejects_a_wrong_rule() {
        // A plausible bug: on rejection, resample from p itself instead of norm(max(0, p - q)).
        let wrong = |p: &[f32], q: &[f32], rng: &mut StdRng| -> u32 {
            let x = sample_index(q, rng.random());
            if rng.random::<f32>() < (p[x as usize] / q[x as usize]).min(1.0) { x } else { sample_index(p, rng.random()) }
        };
        let (p, _) = hand_made();
        let expected: Vec<f64> = p.iter().map(|&x| x as f64).collect();
        let stat = chi_square(&first_tokens(&wrong), &expected);
        eprintln!("wrong rule: chi-square {stat:.0} over {DRAWS} draws");
        assert!(stat > CHI2_4DOF_P001 * 10.0, "chi-square {stat:.1}: the test cannot tell the wrong rule apart");
    }

    #[test]
    fn rejection_with_a_point_mass_draft_is_exact_too() {
        // Prompt lookup proposes token 1 deterministically: accepted with probability p(1).
        let (p, _) = hand_made();
        let mut rng = StdRng::seed_from_u64(11);
        let mut counts = vec![0u64; p.len()];
        let target = vec![p.clone(), p.clone()];
        for _ in 0..DRAWS {
            let rows = Rows { target: &target, draft: None, judge: None, greedy: false };
            let v = verify(Policy::Rejection, &[1], &rows, &mut || rng.random());
            counts[if v.accepted == 1 { 1 } else { v.next as usize }] += 1;
        }
        let expected: Vec<f64> = p.iter().map(|&x| x as f64).collect();
        let stat = chi_square(&counts, &expected);
        assert!(stat < CHI2_4DOF_P001, "chi-square {stat:.1}");
    }
}
