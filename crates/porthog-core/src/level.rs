//! How bad a pool is: levels, the thresholds that set them, and the rule that classifies a pool.
//! The verdict of a report is the level of its tightest pool.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Severity, ordered from harmless to broken. Pools and verdicts are never `Info`; findings
/// that only inform are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Info,
    Warn,
    Critical,
    Exhausted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Critical => "critical",
            Level::Exhausted => "exhausted",
        }
    }

    /// The number metrics carry (`porthog_pool_level`, `porthog_verdict_level`): 0 ok (and
    /// info), 1 warn, 2 critical, 3 exhausted.
    pub fn metric_value(self) -> u8 {
        match self {
            Level::Ok | Level::Info => 0,
            Level::Warn => 1,
            Level::Critical => 2,
            Level::Exhausted => 3,
        }
    }

    /// Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL (3 UNKNOWN is the caller's).
    pub fn exit_code(self) -> i32 {
        match self {
            Level::Ok | Level::Info => 0,
            Level::Warn => 1,
            Level::Critical | Level::Exhausted => 2,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Percent thresholds of a pool's capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warn_pct: f64,
    pub crit_pct: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds { warn_pct: 70.0, crit_pct: 90.0 }
    }
}

impl Thresholds {
    /// Level of a pool with `used` of `capacity` ports taken. `half_range` applies the Linux
    /// connect() rule: past half the pool, every connect() to that destination scans thousands
    /// of ports (`__inet_hash_connect` tries one parity of the range first), so warn already.
    pub fn classify(&self, used: u32, capacity: u32, half_range: bool) -> Level {
        if used >= capacity {
            return Level::Exhausted;
        }
        let pct = percent(used, capacity);
        if pct >= self.crit_pct {
            Level::Critical
        } else if pct >= self.warn_pct || (half_range && u64::from(used) * 2 > u64::from(capacity))
        {
            Level::Warn
        } else {
            Level::Ok
        }
    }
}

impl Thresholds {
    /// The fewest used ports at which a pool of `capacity` is at `level` or worse: `classify`'s
    /// boundary as a port count (for monitoring perfdata), found by searching `classify`
    /// itself so the two cannot disagree. `classify` only grows with `used`.
    pub fn first_used_at(&self, level: Level, capacity: u32, half_range: bool) -> u32 {
        let (mut lo, mut hi) = (0, capacity);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.classify(mid, capacity, half_range) >= level {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }
}

/// `part` as a percentage of `whole`; 100 when `whole` is 0 (a pool with no room is full).
pub fn percent(part: u32, whole: u32) -> f64 {
    if whole == 0 { 100.0 } else { f64::from(part) * 100.0 / f64::from(whole) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_used_at_is_where_classify_changes() {
        let t = Thresholds::default();
        for capacity in [1, 2, 3, 7, 100, 1_001, 28_232] {
            for half_range in [false, true] {
                for level in [Level::Warn, Level::Critical, Level::Exhausted] {
                    let n = t.first_used_at(level, capacity, half_range);
                    assert!(t.classify(n, capacity, half_range) >= level, "{capacity} {level}");
                    if n > 0 {
                        assert!(t.classify(n - 1, capacity, half_range) < level, "{capacity}");
                    }
                }
            }
        }
        assert_eq!(t.first_used_at(Level::Warn, 100, false), 70);
        assert_eq!(t.first_used_at(Level::Warn, 100, true), 51);
        assert_eq!(t.first_used_at(Level::Critical, 28_232, false), 25_409);
        assert_eq!(t.first_used_at(Level::Exhausted, 28_232, true), 28_232);
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries() {
        let t = Thresholds::default();
        assert_eq!(t.classify(100, 100, false), Level::Exhausted);
        assert_eq!(t.classify(0, 0, false), Level::Exhausted);
        assert_eq!(t.classify(99, 100, false), Level::Critical);
        assert_eq!(t.classify(90, 100, false), Level::Critical);
        assert_eq!(t.classify(89, 100, false), Level::Warn);
        assert_eq!(t.classify(70, 100, false), Level::Warn);
        assert_eq!(t.classify(69, 100, false), Level::Ok);
        assert_eq!(t.classify(51, 100, true), Level::Warn);
        assert_eq!(t.classify(50, 100, true), Level::Ok);
        assert_eq!(t.classify(60, 100, false), Level::Ok);
    }

    #[test]
    fn exit_codes_follow_nagios() {
        assert_eq!(Level::Ok.exit_code(), 0);
        assert_eq!(Level::Warn.exit_code(), 1);
        assert_eq!(Level::Critical.exit_code(), 2);
        assert_eq!(Level::Exhausted.exit_code(), 2);
    }

    proptest! {
        #[test]
        fn level_never_falls_as_usage_rises(cap in 1u32..70000, a in 0u32..70000, b in 0u32..70000,
                                            half in any::<bool>()) {
            let t = Thresholds::default();
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(t.classify(lo, cap, half) <= t.classify(hi, cap, half));
            prop_assert_eq!(t.classify(hi, cap, half) == Level::Exhausted, hi >= cap);
        }
    }
}
