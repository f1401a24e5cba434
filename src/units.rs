//! Durations as people read them in statuses, findings and logs: `250ms`, `1.5s`, `1m12s`,
//! `2h5m` — rounded, without the nanoseconds a measured duration carries.

use std::time::Duration;

/// `d` rounded for people: milliseconds below a second, one decimal below ten seconds, whole
/// seconds (as `1m12s`, `2h5m`) above.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 10_000 && !ms.is_multiple_of(1000) {
        let tenths = (ms + 50) / 100;
        if !tenths.is_multiple_of(10) {
            return format!("{}.{}s", tenths / 10, tenths % 10);
        }
    }
    let s = (ms + 500) / 1000;
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A measured value for people: four significant digits (at most six decimals), without
/// trailing zeros — `90.27`, `0.000123`, `1532`.
pub fn number(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(0, 6) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        let cases = [
            (Duration::from_nanos(1_234_567), "1ms"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1_000), "1s"),
            (Duration::from_millis(1_540), "1.5s"),
            (Duration::from_millis(9_980), "10s"),
            (Duration::from_millis(12_400), "12s"),
            (Duration::from_secs(72), "1m12s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(3_600 + 300), "1h5m"),
            (Duration::from_secs(7_200 + 1), "2h1s"),
            (Duration::new(150, 123_456_789), "2m30s"),
        ];
        for (d, want) in cases {
            assert_eq!(duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        let cases = [
            (90.26942645698426, "90.27"),
            (99.7, "99.7"),
            (0.000123456, "0.000123"),
            (1532.4, "1532"),
            (-0.5, "-0.5"),
            (100.0, "100"),
            (0.0, "0"),
        ];
        for (v, want) in cases {
            assert_eq!(number(v), want, "{v}");
        }
    }
}
