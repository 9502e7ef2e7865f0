//! Learning-rate schedule: linear warm-up, then cosine decay to a tenth of the peak
//! (nanoGPT's `get_lr`) or constant.

/// Shape of the schedule after warm-up.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Cosine decay to `lr / 10` at the last step.
    Cosine,
    /// Constant after warm-up.
    Constant,
}

/// Learning rate at `step` (0-based) of `total`.
pub fn lr_at(step: usize, total: usize, peak: f64, warmup: usize, schedule: Schedule) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    match schedule {
        Schedule::Constant => peak,
        Schedule::Cosine => {
            let span = total.saturating_sub(warmup).max(1);
            let progress = ((step - warmup) as f64 / span as f64).min(1.0);
            let min = peak / 10.0;
            min + 0.5 * (peak - min) * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_a_tenth() {
        assert!((lr_at(0, 100, 1.0, 10, Schedule::Cosine) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, 1.0, 10, Schedule::Cosine) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, 1.0, 10, Schedule::Cosine) - 1.0).abs() < 1e-12);
        assert!((lr_at(100, 100, 1.0, 10, Schedule::Cosine) - 0.1).abs() < 1e-12);
        assert!(
            lr_at(55, 100, 1.0, 10, Schedule::Cosine) < lr_at(30, 100, 1.0, 10, Schedule::Cosine)
        );
        assert_eq!(lr_at(80, 100, 1.0, 10, Schedule::Constant), 1.0);
    }
}
