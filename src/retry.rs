//! The one retry policy: jittered exponential backoff. Job retries, reconnect loops and (later)
//! calls to Kubernetes and GitHub all take their delays from here instead of ad-hoc loops.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with "equal jitter": the n-th delay lies in `[d/2, d]` where
/// `d = min(base · 2^(n-1), max)`. Half is fixed so retries never come at once; half is random so
/// many clients failing together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The upper bound of the delay after the `failures`-th consecutive failure (1-based).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(32);
        self.base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max)
    }

    /// The delay after the `failures`-th failure for a jitter sample in `[0, 1)`.
    pub fn delay_with_jitter(&self, failures: u32, jitter: f64) -> Duration {
        let ceiling = self.ceiling(failures);
        ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    pub fn delay(&self, failures: u32) -> Duration {
        self.delay_with_jitter(failures, rand::rng().random::<f64>())
    }
}

/// Counts consecutive failures of a loop and sleeps accordingly; reset on success.
#[derive(Debug, Clone)]
pub struct Retrier {
    policy: Backoff,
    failures: u32,
}

impl Retrier {
    pub fn new(policy: Backoff) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

    #[test]
    fn ceiling_doubles_until_the_cap() {
        let ceilings: Vec<u64> = (1..=8).map(|n| POLICY.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn jitter_spans_the_upper_half_of_the_ceiling() {
        assert_eq!(POLICY.delay_with_jitter(3, 0.0), Duration::from_secs(2));
        assert_eq!(POLICY.delay_with_jitter(3, 0.999_999).as_millis(), 3999);
        assert_eq!(POLICY.delay_with_jitter(3, 0.5), Duration::from_secs(3));
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        assert_eq!(POLICY.ceiling(u32::MAX), Duration::from_secs(60));
        assert_eq!(POLICY.ceiling(0), Duration::from_secs(1));
    }

    #[test]
    fn random_delays_stay_within_bounds() {
        for n in 1..10 {
            let d = POLICY.delay(n);
            assert!(
                d >= POLICY.ceiling(n) / 2 && d <= POLICY.ceiling(n),
                "{n}: {d:?}"
            );
        }
    }

    #[test]
    fn retrier_grows_and_resets() {
        let mut r = Retrier::new(POLICY);
        assert!(r.next_delay() <= Duration::from_secs(1));
        assert!(r.next_delay() >= Duration::from_secs(1));
        assert!(r.next_delay() >= Duration::from_secs(2));
        r.reset();
        assert!(r.next_delay() <= Duration::from_secs(1));
    }
}
