//! Statistical comparisons of canary with stable: a Bayesian test on pooled error counts and a
//! one-sided Mann-Whitney U test on per-scrape values. Pure: no I/O. Distributions come from
//! `statrs`; the formulas and decision rules are documented in docs/analysis.md.

use statrs::distribution::{Beta, Continuous, ContinuousCDF, Normal};

/// Why a statistical test could not run. None of these goes away by retrying: they describe the
/// input, which the caller must fix (or treat as "no data").
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error(
        "{side} has {errors} errors in {requests} requests; errors must be between 0 and requests"
    )]
    BadCounts {
        side: &'static str,
        errors: f64,
        requests: f64,
    },
    #[error("confidence {0} must lie strictly between 0.5 and 1")]
    BadConfidence(f64),
    #[error(
        "tolerance {0} must be a finite number of 0 or more (and below 1 for a relative tolerance on a higher-is-better metric)"
    )]
    BadTolerance(f64),
}

/// What a test concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The canary is worse than stable by more than the tolerance, with the stated confidence.
    Worse,
    /// The data say the canary is not worse by more than the tolerance.
    NotWorse,
    /// Not enough evidence either way.
    Undecided,
}

/// Requests and 5xx errors of one subset, pooled over the rounds of a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    pub requests: f64,
    pub errors: f64,
}

impl Counts {
    /// The observed error rate (0 without requests).
    pub fn rate(&self) -> f64 {
        if self.requests > 0.0 {
            self.errors / self.requests
        } else {
            0.0
        }
    }

    fn posterior(&self, side: &'static str) -> Result<Beta, StatsError> {
        self.posterior_with(side, 0.0, 0.0)
    }

    /// The Beta posterior from a Jeffreys prior plus `prior_requests` pseudo-requests at the
    /// error rate `prior_rate`.
    fn posterior_with(
        &self,
        side: &'static str,
        prior_requests: f64,
        prior_rate: f64,
    ) -> Result<Beta, StatsError> {
        let bad = || StatsError::BadCounts {
            side,
            errors: self.errors,
            requests: self.requests,
        };
        if !(self.requests >= 0.0 && self.errors >= 0.0 && self.errors <= self.requests) {
            return Err(bad());
        }
        // Jeffreys prior Beta(1/2, 1/2), shifted by the pseudo-requests.
        let a = self.errors + 0.5 + prior_requests * prior_rate;
        let b = self.requests - self.errors + 0.5 + prior_requests * (1.0 - prior_rate);
        Beta::new(a, b).map_err(|_| bad())
    }
}

/// The result of the counts test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountsResult {
    /// Posterior probability that the canary's error rate exceeds the stable's by more than
    /// the tolerance.
    pub posterior: f64,
    /// Observed canary error rate minus stable error rate, as a fraction (0.02 = 2 points).
    pub difference: f64,
    pub decision: Decision,
}

fn check_confidence(confidence: f64) -> Result<(), StatsError> {
    if confidence > 0.5 && confidence < 1.0 {
        Ok(())
    } else {
        Err(StatsError::BadConfidence(confidence))
    }
}

/// Pseudo-requests of the canary's prior: before any data the canary is believed to behave
/// like stable, with the weight of this many requests. Without it a handful of requests with
/// one or two errors would be "evidence" (a Jeffreys prior alone puts much weight on high
/// error rates), and low-traffic canaries would be rolled back by chance.
pub const CANARY_PRIOR_REQUESTS: f64 = 100.0;

/// Bayesian comparison of error rates: `posterior = P(p_c - p_s > t)` with `p_s` from a
/// Jeffreys prior and `p_c` from a Jeffreys prior plus `CANARY_PRIOR_REQUESTS` pseudo-requests
/// at the stable's observed error rate. Fails (`Worse`) when `posterior >= confidence`, passes
/// (`NotWorse`) when `posterior <= 1 - confidence`, else `Undecided`. `tolerance` is a fraction
/// (0.005 = 0.5 percentage points).
pub fn counts_test(
    canary: Counts,
    stable: Counts,
    tolerance: f64,
    confidence: f64,
) -> Result<CountsResult, StatsError> {
    check_confidence(confidence)?;
    if !(tolerance.is_finite() && (0.0..1.0).contains(&tolerance)) {
        return Err(StatsError::BadTolerance(tolerance));
    }
    let s = stable.posterior("stable")?;
    let c = canary.posterior_with("canary", CANARY_PRIOR_REQUESTS, stable.rate())?;
    let posterior = prob_exceeds(&c, &s, tolerance);
    let decision = if posterior >= confidence {
        Decision::Worse
    } else if posterior <= 1.0 - confidence {
        Decision::NotWorse
    } else {
        Decision::Undecided
    };
    Ok(CountsResult {
        posterior,
        difference: canary.rate() - stable.rate(),
        decision,
    })
}

/// `P(X - Y > t)` for independent `X ~ c`, `Y ~ s`: `∫_t^1 f_c(x) F_s(x - t) dx`, by Simpson's
/// rule over the bulk of `c` (±12 standard deviations, clipped to `[t, 1]`).
fn prob_exceeds(c: &Beta, s: &Beta, t: f64) -> f64 {
    let (a, b) = (c.shape_a(), c.shape_b());
    let mean = a / (a + b);
    let sd = (a * b / ((a + b).powi(2) * (a + b + 1.0))).sqrt();
    let lo = (mean - 12.0 * sd).max(t).max(1e-12);
    let hi = (mean + 12.0 * sd).min(1.0);
    if lo >= hi {
        return 0.0;
    }
    const N: usize = 200; // even; the integrand is smooth over ±12 sd
    let h = (hi - lo) / N as f64;
    let f = |x: f64| {
        let v = c.pdf(x) * s.cdf(x - t);
        if v.is_finite() { v } else { 0.0 }
    };
    let mut sum = f(lo) + f(hi);
    for i in 1..N {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        sum += w * f(lo + h * i as f64);
    }
    // The mass of `c` below `lo` (beyond 12 sd, or below t) contributes nothing or next to it.
    (sum * h / 3.0).clamp(0.0, 1.0)
}

/// The result of the Mann-Whitney test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitneyResult {
    /// U of the canary (tolerance applied) against stable, counted in the "worse" direction:
    /// pairs where the canary is worse, ties counting one half.
    pub u: f64,
    /// One-sided p-value of U under "the canary is not worse than stable by more than the
    /// tolerance".
    pub p_value: f64,
    /// Hodges-Lehmann estimate of the ratio canary / stable: the median of the pairwise ratios.
    pub effect: f64,
    pub canary_points: usize,
    pub stable_points: usize,
    /// True when the exact distribution of U was used (no ties, small samples).
    pub exact: bool,
    pub decision: Decision,
}

pub use crate::plan::min_points;

fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// One-sided Mann-Whitney U test of "the canary is worse than stable by more than a relative
/// `tolerance`". For lower-is-better metrics each canary value is divided by `1 + tolerance`;
/// for higher-is-better ones by `1 - tolerance` and the direction flips. `Worse` needs
/// `p < 1 - confidence` and a Hodges-Lehmann ratio beyond the tolerance; too few points to
/// ever reach the confidence give `Undecided`; otherwise `NotWorse`.
pub fn mann_whitney(
    canary: &[f64],
    stable: &[f64],
    tolerance: f64,
    lower_is_better: bool,
    confidence: f64,
) -> Result<MannWhitneyResult, StatsError> {
    check_confidence(confidence)?;
    let valid = tolerance.is_finite() && tolerance >= 0.0 && (lower_is_better || tolerance < 1.0);
    if !valid {
        return Err(StatsError::BadTolerance(tolerance));
    }
    let canary: Vec<f64> = canary.iter().copied().filter(|v| !v.is_nan()).collect();
    let stable: Vec<f64> = stable.iter().copied().filter(|v| !v.is_nan()).collect();
    // "Badness": larger is worse. Ranks are invariant under the monotone map, so the shifted
    // canary values are compared directly.
    let (scale, sign) = if lower_is_better {
        (1.0 + tolerance, 1.0)
    } else {
        (1.0 - tolerance, -1.0)
    };
    let x: Vec<f64> = canary.iter().map(|v| sign * v / scale).collect();
    let y: Vec<f64> = stable.iter().map(|v| sign * v).collect();
    let (n, m) = (x.len(), y.len());
    let effect = hodges_lehmann_ratio(&canary, &stable);
    let undecided = |u, p, exact| MannWhitneyResult {
        u,
        p_value: p,
        effect,
        canary_points: n,
        stable_points: m,
        exact,
        decision: Decision::Undecided,
    };
    if n == 0 || m == 0 || 1.0 / binomial(n + m, n.min(m)) >= 1.0 - confidence {
        return Ok(undecided(f64::NAN, f64::NAN, false));
    }
    let (u, ties) = u_statistic(&x, &y);
    let exact = !ties && n + m <= 120;
    let p = if exact {
        exact_upper_tail(n, m, u)
    } else {
        normal_upper_tail(&x, &y, u)
    };
    let beyond = if lower_is_better {
        effect > 1.0 + tolerance
    } else {
        effect < 1.0 - tolerance
    };
    let decision = if p < 1.0 - confidence && (beyond || effect.is_nan()) {
        Decision::Worse
    } else {
        Decision::NotWorse
    };
    Ok(MannWhitneyResult {
        decision,
        ..undecided(u, p, exact)
    })
}

/// U = #{x_i > y_j} + #{x_i = y_j} / 2, and whether any value is tied across or within.
fn u_statistic(x: &[f64], y: &[f64]) -> (f64, bool) {
    let mut u = 0.0;
    for a in x {
        for b in y {
            if a > b {
                u += 1.0;
            } else if a == b {
                u += 0.5;
            }
        }
    }
    let mut all: Vec<f64> = x.iter().chain(y).copied().collect();
    all.sort_by(f64::total_cmp);
    let ties = all.windows(2).any(|w| w[0] == w[1]);
    (u, ties)
}

/// P(U >= u) under H0 without ties: the coefficients of the Gaussian binomial coefficient
/// `[n+m choose n]_q` count the arrangements with each U.
fn exact_upper_tail(n: usize, m: usize, u: f64) -> f64 {
    let max = n * m;
    let mut poly = vec![0.0f64; max + 1];
    poly[0] = 1.0;
    // ∏_{i=1..n} (1 - q^{m+i}) / (1 - q^i), degree n·m.
    for i in 1..=n {
        for k in (m + i..=max).rev() {
            poly[k] -= poly[k - m - i];
        }
        for k in i..=max {
            poly[k] += poly[k - i];
        }
    }
    let total: f64 = poly.iter().sum();
    let from = u.ceil().max(0.0) as usize;
    let tail: f64 = poly.iter().skip(from).sum();
    (tail / total).clamp(0.0, 1.0)
}

/// P(U >= u) by the normal approximation with tie and continuity corrections.
fn normal_upper_tail(x: &[f64], y: &[f64], u: f64) -> f64 {
    let (n, m) = (x.len() as f64, y.len() as f64);
    let big_n = n + m;
    let mut all: Vec<f64> = x.iter().chain(y).copied().collect();
    all.sort_by(f64::total_cmp);
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let j = all[i..].iter().take_while(|v| **v == all[i]).count();
        let t = j as f64;
        tie_term += t * t * t - t;
        i += j;
    }
    let var = n * m / 12.0 * ((big_n + 1.0) - tie_term / (big_n * (big_n - 1.0)));
    let mean = n * m / 2.0;
    if var <= 0.0 {
        // Every value tied: no evidence of any difference.
        return if u > mean { 0.0 } else { 1.0 };
    }
    let z = (u - mean - 0.5) / var.sqrt();
    Normal::standard().sf(z)
}

/// The median of the pairwise ratios canary / stable (NaN when none is defined).
fn hodges_lehmann_ratio(canary: &[f64], stable: &[f64]) -> f64 {
    let mut ratios: Vec<f64> = canary
        .iter()
        .flat_map(|c| stable.iter().map(move |s| c / s))
        .filter(|r| !r.is_nan())
        .collect();
    if ratios.is_empty() {
        return f64::NAN;
    }
    ratios.sort_by(f64::total_cmp);
    let k = ratios.len();
    if k % 2 == 1 {
        ratios[k / 2]
    } else {
        let (a, b) = (ratios[k / 2 - 1], ratios[k / 2]);
        if a.is_infinite() || b.is_infinite() {
            if a == b { a } else { b }
        } else {
            (a + b) / 2.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(requests: f64, errors: f64) -> Counts {
        Counts { requests, errors }
    }

    /// The same probability integrated the other way round, `∫ f_s(y) (1 - F_c(y + t)) dy`,
    /// by the midpoint rule on a fine grid over the stable posterior.
    fn other_order(c: Counts, s: Counts, t: f64) -> f64 {
        let bc = c.posterior("canary").expect("valid");
        let bs = s.posterior("stable").expect("valid");
        let (a, b) = (bs.shape_a(), bs.shape_b());
        let mean = a / (a + b);
        let sd = (a * b / ((a + b).powi(2) * (a + b + 1.0))).sqrt();
        let (lo, hi) = ((mean - 15.0 * sd).max(0.0), (mean + 15.0 * sd).min(1.0));
        let n = 200_000;
        let h = (hi - lo) / n as f64;
        (0..n)
            .map(|i| {
                let y = lo + h * (i as f64 + 0.5);
                bs.pdf(y) * bc.sf(y + t) * h
            })
            .sum()
    }

    #[test]
    fn posterior_is_right() {
        for (c, s, t) in [
            (counts(600.0, 6.0), counts(5400.0, 54.0), 0.005),
            (counts(600.0, 18.0), counts(5400.0, 27.0), 0.005),
            (counts(1200.0, 3.0), counts(10800.0, 1.0), 0.0),
            (counts(60.0, 9.0), counts(540.0, 5.0), 0.01),
        ] {
            let ours = prob_exceeds(
                &c.posterior("canary").expect("valid"),
                &s.posterior("stable").expect("valid"),
                t,
            );
            let other = other_order(c, s, t);
            assert!(
                (ours - other).abs() < 1e-3,
                "{c:?} {s:?} {t}: {ours} vs {other}"
            );
        }
        // Identical data and no tolerance: one half by symmetry.
        let same = counts(5000.0, 40.0);
        let p = prob_exceeds(
            &same.posterior("canary").expect("valid"),
            &same.posterior("stable").expect("valid"),
            0.0,
        );
        assert!((p - 0.5).abs() < 1e-3, "{p}");
        // Large counts: the normal approximation of the difference.
        let (c, s, t) = (counts(20000.0, 600.0), counts(180000.0, 3600.0), 0.005);
        let var =
            c.rate() * (1.0 - c.rate()) / c.requests + s.rate() * (1.0 - s.rate()) / s.requests;
        let normal = Normal::standard().sf((t - (c.rate() - s.rate())) / var.sqrt());
        let ours = prob_exceeds(
            &c.posterior("canary").expect("valid"),
            &s.posterior("stable").expect("valid"),
            t,
        );
        assert!((ours - normal).abs() < 0.01, "{ours} vs {normal}");
    }

    #[test]
    fn counts_decisions_follow_the_rule() {
        // Same rate, plenty of data: clearly not worse by 0.5 points.
        let r = counts_test(counts(12000.0, 60.0), counts(108000.0, 540.0), 0.005, 0.95)
            .expect("valid");
        assert_eq!(r.decision, Decision::NotWorse);
        assert!(r.posterior <= 0.05);
        // Canary 3 % vs stable 1 % over 1,200 requests: worse by more than 0.5 points.
        let r =
            counts_test(counts(1200.0, 36.0), counts(10800.0, 108.0), 0.005, 0.95).expect("valid");
        assert_eq!(r.decision, Decision::Worse);
        assert!((r.difference - 0.02).abs() < 1e-12);
        // Two errors in sixty requests is no evidence against a canary believed to be like
        // stable (a Jeffreys prior alone would call it worse).
        let r = counts_test(counts(60.0, 2.0), counts(5400.0, 27.0), 0.005, 0.95).expect("valid");
        assert_ne!(r.decision, Decision::Worse, "{r:?}");
        let alone = prob_exceeds(
            &counts(60.0, 2.0).posterior("canary").expect("valid"),
            &counts(5400.0, 27.0).posterior("stable").expect("valid"),
            0.005,
        );
        assert!(alone > r.posterior, "{alone} vs {}", r.posterior);
        // Sixty requests cannot tell.
        let r = counts_test(counts(60.0, 1.0), counts(540.0, 5.0), 0.005, 0.95).expect("valid");
        assert_eq!(r.decision, Decision::Undecided);
        assert!(r.posterior > 0.05 && r.posterior < 0.95);
        assert!(counts_test(counts(10.0, 11.0), counts(10.0, 0.0), 0.0, 0.95).is_err());
        assert!(counts_test(counts(10.0, 1.0), counts(10.0, 0.0), 0.0, 1.0).is_err());
    }

    /// P(U >= u) by enumerating every way of choosing the canary's ranks.
    fn brute_force_tail(n: usize, m: usize, u: f64) -> f64 {
        let total = n + m;
        let (mut hits, mut all) = (0usize, 0usize);
        for mask in 0u32..(1 << total) {
            if mask.count_ones() as usize != n {
                continue;
            }
            all += 1;
            // Canary ranks are the set bits; U = Σ rank_i - n(n+1)/2 (ranks from 1).
            let rank_sum: usize = (0..total)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| i + 1)
                .sum();
            if (rank_sum - n * (n + 1) / 2) as f64 >= u {
                hits += 1;
            }
        }
        hits as f64 / all as f64
    }

    #[test]
    fn exact_tail_matches_enumeration() {
        for (n, m) in [(3, 4), (5, 5), (6, 4), (2, 9)] {
            for u in 0..=(n * m) {
                let a = exact_upper_tail(n, m, u as f64);
                let b = brute_force_tail(n, m, u as f64);
                assert!((a - b).abs() < 1e-12, "n={n} m={m} u={u}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn mann_whitney_detects_a_shift_beyond_the_tolerance_only() {
        let stable: Vec<f64> = (0..12).map(|i| 200.0 + i as f64).collect();
        let slow: Vec<f64> = (0..6).map(|i| 300.0 + i as f64).collect();
        let same: Vec<f64> = (0..6).map(|i| 201.5 + 2.0 * i as f64).collect();
        let r = mann_whitney(&slow, &stable, 0.1, true, 0.98).expect("valid");
        assert_eq!(r.decision, Decision::Worse);
        assert!(r.exact);
        assert_eq!(r.u, 72.0);
        assert!((r.p_value - 1.0 / binomial(18, 6)).abs() < 1e-15);
        assert!(r.effect > 1.4 && r.effect < 1.6, "{}", r.effect);
        let r = mann_whitney(&same, &stable, 0.1, true, 0.98).expect("valid");
        assert_eq!(r.decision, Decision::NotWorse);
        // 5 % slower is within a 10 % tolerance even though the canary is slower.
        let a_bit: Vec<f64> = stable.iter().skip(6).map(|v| v * 1.05).collect();
        let r = mann_whitney(&a_bit, &stable, 0.1, true, 0.98).expect("valid");
        assert_eq!(r.decision, Decision::NotWorse, "{r:?}");
        // Higher is better: a canary success rate well below stable's fails.
        let r = mann_whitney(
            &[80.0, 81.0, 82.0, 79.0, 80.5],
            &[99.0, 99.5, 98.9, 99.2, 99.9],
            0.05,
            false,
            0.98,
        )
        .expect("valid");
        assert_eq!(r.decision, Decision::Worse);
    }

    #[test]
    fn too_few_points_or_all_ties_never_fail() {
        let r = mann_whitney(&[900.0, 901.0], &[1.0, 2.0], 0.1, true, 0.98).expect("valid");
        assert_eq!(r.decision, Decision::Undecided);
        // `min_points` is the first size at which a perfect separation fails.
        for c in [0.9, 0.95, 0.98, 0.99, 0.999] {
            let k = min_points(c);
            let low: Vec<f64> = (0..k).map(|i| i as f64 + 1.0).collect();
            let high: Vec<f64> = (0..k).map(|i| i as f64 + 100.0).collect();
            let r = mann_whitney(&high, &low, 0.0, true, c).expect("valid");
            assert_eq!(r.decision, Decision::Worse, "c={c} k={k}");
            let r = mann_whitney(&high[1..], &low[1..], 0.0, true, c).expect("valid");
            assert_eq!(r.decision, Decision::Undecided, "c={c} k={k}");
        }
        let tied = [5.0; 8];
        let r = mann_whitney(&tied, &tied, 0.0, true, 0.98).expect("valid");
        assert_eq!(r.decision, Decision::NotWorse);
        assert!(!r.exact);
        let r = mann_whitney(&[f64::NAN; 8], &tied, 0.1, true, 0.98).expect("valid");
        assert_eq!(r.decision, Decision::Undecided);
        assert_eq!(r.canary_points, 0);
    }

    #[test]
    fn normal_approximation_agrees_with_exact_on_large_samples() {
        let x: Vec<f64> = (0..40).map(|i| (i * 7 % 41) as f64 + 3.3).collect();
        let y: Vec<f64> = (0..50).map(|i| (i * 11 % 53) as f64).collect();
        let (u, ties) = u_statistic(&x, &y);
        assert!(!ties);
        let exact = exact_upper_tail(40, 50, u);
        let approx = normal_upper_tail(&x, &y, u);
        assert!((exact - approx).abs() < 0.01, "{exact} vs {approx}");
    }
}
