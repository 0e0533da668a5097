//! How many tokens to draft next (`--k-schedule`): fixed, transformers' heuristic for assisted
//! generation (`num_assistant_tokens_schedule="heuristic"`: +2 after a fully accepted draft,
//! -1 otherwise), or a controller that steers the acceptance rate towards a target.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// K stays at --k.
    Fixed,
    /// transformers' heuristic: K + 2 after a draft accepted whole, K - 1 otherwise.
    Heuristic,
    /// K + 1 while the recent acceptance rate is above --target-acceptance, K - 1 below.
    Target,
}

/// A K schedule with its bounds (validated by the caller: 1 <= min <= start <= max).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub start: usize,
    pub min: usize,
    pub max: usize,
    pub target_acceptance: f64,
}

/// Weight of the latest draft in the controller's running acceptance rate.
const TARGET_SMOOTHING: f64 = 0.3;

/// The schedule's state during one generation.
#[derive(Debug, Clone)]
pub struct KController {
    schedule: Schedule,
    k: usize,
    rate: Option<f64>,
}

impl KController {
    pub fn new(schedule: Schedule) -> Self {
        Self { schedule, k: schedule.start, rate: None }
    }

    pub fn reset(&mut self) {
        self.k = self.schedule.start;
        self.rate = None;
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Updates K after a draft of `drafted` tokens of which `accepted` were accepted.
    pub fn update(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        let s = self.schedule;
        self.k = match s.kind {
            ScheduleKind::Fixed => self.k,
            ScheduleKind::Heuristic if accepted == drafted => self.k + 2,
            ScheduleKind::Heuristic => self.k.saturating_sub(1),
            ScheduleKind::Target => {
                let latest = accepted as f64 / drafted as f64;
                let rate = self.rate.map_or(latest, |r| (1.0 - TARGET_SMOOTHING) * r + TARGET_SMOOTHING * latest);
                self.rate = Some(rate);
                if rate >= s.target_acceptance { self.k + 1 } else { self.k.saturating_sub(1) }
            }
        }
        .clamp(s.min, s.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> Schedule {
        Schedule { kind, start: 4, min: 1, max: 7, target_acceptance: 0.5 }
    }

    #[test]
    fn heuristic_grows_by_two_and_shrinks_by_one_within_bounds() {
        let mut c = KController::new(schedule(ScheduleKind::Heuristic));
        c.update(4, 4);
        assert_eq!(c.k(), 6);
        c.update(6, 6);
        assert_eq!(c.k(), 7, "capped at max");
        c.update(7, 2);
        assert_eq!(c.k(), 6);
        for _ in 0..10 {
            c.update(3, 0);
        }
        assert_eq!(c.k(), 1, "floored at min");
        c.update(0, 0);
        assert_eq!(c.k(), 1, "no draft, no change");
        c.reset();
        assert_eq!(c.k(), 4);
    }

    #[test]
    fn target_controller_moves_towards_the_target_rate() {
        let mut c = KController::new(schedule(ScheduleKind::Target));
        c.update(4, 4);
        assert_eq!(c.k(), 5, "rate 1 >= 0.5: draft more");
        // 0.7 * 1 + 0.3 * 0 = 0.7, still above; then 0.49 below.
        c.update(5, 0);
        assert_eq!(c.k(), 6);
        c.update(6, 0);
        assert_eq!(c.k(), 5);
        let mut fixed = KController::new(schedule(ScheduleKind::Fixed));
        fixed.update(4, 0);
        assert_eq!(fixed.k(), 4);
    }
}
