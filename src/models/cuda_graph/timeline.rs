//! The arithmetic of `LLMBENCH_CUDA_TRACE` (`trace.rs` holds the device side): each replay's
//! stamps, four a launch (first block's start, first and last block's release from the wait on
//! the previous kernel, last block's end; %globaltimer ns), summed relative to the step's first
//! start, and the CSV of their means. Plain arithmetic, built and tested without the cuda feature.

/// Stamps a launch's slot holds (trace.cuh's order).
pub const STAMPS: usize = 4;

/// Running sums of microseconds from each step's first start, a launch at a time, and how many
/// replays each launch recorded in (a kernel that stamps nothing has no row values).
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    names: Vec<String>,
    sums: Vec<[f64; STAMPS]>,
    recorded: Vec<usize>,
    steps: usize,
}

impl Timeline {
    pub fn new(names: Vec<String>) -> Self {
        let sums = vec![[0.0; STAMPS]; names.len()];
        let recorded = vec![0; names.len()];
        Self { names, sums, recorded, steps: 0 }
    }

    pub fn launches(&self) -> usize {
        self.names.len()
    }

    /// Adds one replay's stamps (`launches() * STAMPS`, u64::MAX / 0 where a launch recorded
    /// nothing: those launches add nothing). A replay with no stamp at all is not counted.
    pub fn add(&mut self, stamps: &[u64]) {
        let recorded = |s: &[u64]| s[0] != u64::MAX && s[3] != 0;
        let Some(origin) = stamps.chunks(STAMPS).filter(|s| recorded(s)).map(|s| s[0]).min() else { return };
        for ((sum, count), s) in self.sums.iter_mut().zip(&mut self.recorded).zip(stamps.chunks(STAMPS)) {
            if recorded(s) {
                for (acc, &t) in sum.iter_mut().zip(s) {
                    *acc += t.saturating_sub(origin) as f64 / 1e3;
                }
                *count += 1;
            }
        }
        self.steps += 1;
    }

    /// Mean stamps per launch over the replays it recorded in, its duration, and how long
    /// after the previous launch's last block ended its first block was released (the launch
    /// gap). A launch that recorded nothing gets empty fields, and so does the gap after it.
    pub fn csv(&self) -> String {
        let mut out = String::from("launch,kernel,start_us,first_release_us,last_release_us,end_us,duration_us,released_after_previous_end_us\n");
        let mut previous_end = None;
        for (i, ((name, sum), &count)) in self.names.iter().zip(&self.sums).zip(&self.recorded).enumerate() {
            if count == 0 {
                out += &format!("{i},{name},,,,,,\n");
                previous_end = None;
                continue;
            }
            let [start, first, last, end] = sum.map(|t| t / count as f64);
            let gap = previous_end.map_or(String::new(), |p: f64| format!("{:.2}", first - p));
            out += &format!("{i},{name},{start:.2},{first:.2},{last:.2},{end:.2},{:.2},{gap}\n", end - start);
            previous_end = Some(end);
        }
        let step = self.sums.iter().zip(&self.recorded).filter(|(_, &c)| c > 0).map(|(s, &c)| s[3] / c as f64).fold(0.0, f64::max);
        out += &format!("# {} replays; mean step {step:.2} us from the first block's start to the last block's end\n", self.steps);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_are_relative_to_each_steps_first_start() {
        let mut t = Timeline::new(vec!["embed".into(), "0.qkv".into()]);
        // Two replays at different absolute times, the second 2 us slower in its second launch.
        t.add(&[1_000_000, 1_001_000, 1_001_500, 1_003_000, 1_002_000, 1_004_000, 1_004_000, 1_010_000]);
        t.add(&[9_000_000, 9_001_000, 9_001_500, 9_003_000, 9_002_000, 9_004_000, 9_004_000, 9_012_000]);
        let csv = t.csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[1], "0,embed,0.00,1.00,1.50,3.00,3.00,");
        // qkv: started at 2 us, released 1 us after embed ended, ended at 10 and 12 (mean 11).
        assert_eq!(lines[2], "1,0.qkv,2.00,4.00,4.00,11.00,9.00,1.00");
        assert_eq!(lines[3], "# 2 replays; mean step 11.00 us from the first block's start to the last block's end");
    }

    #[test]
    fn launches_that_recorded_nothing_add_nothing() {
        let mut t = Timeline::new(vec!["a".into(), "b".into()]);
        t.add(&[u64::MAX, u64::MAX, 0, 0, u64::MAX, u64::MAX, 0, 0]);
        assert_eq!(t.steps, 0);
        t.add(&[5_000, 6_000, 6_000, 7_000, u64::MAX, u64::MAX, 0, 0]);
        assert_eq!(t.sums, vec![[0.0, 1.0, 1.0, 2.0], [0.0; STAMPS]]);
        assert_eq!(t.steps, 1);
    }

    #[test]
    fn a_launch_that_never_stamps_leaves_its_row_and_the_next_gap_empty() {
        let mut t = Timeline::new(vec!["a".into(), "silent".into(), "c".into()]);
        t.add(&[1_000, 2_000, 2_000, 3_000, u64::MAX, u64::MAX, 0, 0, 5_000, 6_000, 6_000, 9_000]);
        // A launch recorded in only one of two replays is the mean of that one.
        t.add(&[1_000, 2_000, 2_000, 3_000, u64::MAX, u64::MAX, 0, 0, u64::MAX, u64::MAX, 0, 0]);
        let csv = t.csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[1], "0,a,0.00,1.00,1.00,2.00,2.00,");
        assert_eq!(lines[2], "1,silent,,,,,,");
        assert_eq!(lines[3], "2,c,4.00,5.00,5.00,8.00,4.00,");
        assert_eq!(lines[4], "# 2 replays; mean step 8.00 us from the first block's start to the last block's end");
    }
}
