//! Where a pool is heading: a fixed-length history of its `effective` ports, the slope of the
//! last samples (least squares, ports per second), the time left before exhaustion at that
//! rate (the churn a pool can sustain is the core's `Pool::sustainable_rate`). Pure arithmetic.

use std::collections::VecDeque;

use porthog_core::Pool;

/// Samples kept per pool (the sparkline's width at most).
pub const HISTORY: usize = 120;
/// Samples the slope is fitted over.
pub const TREND: usize = 10;

/// One pool over time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// (seconds, effective ports, capacity), oldest first, at most `HISTORY`.
    points: VecDeque<(f64, u32, u32)>,
    /// Index of the last sample that showed this pool.
    pub last_seen: u64,
}

impl History {
    pub fn push(&mut self, at: f64, effective: u32, capacity: u32, sample: u64) {
        if self.points.len() == HISTORY {
            self.points.pop_front();
        }
        self.points.push_back((at, effective, capacity));
        self.last_seen = sample;
    }

    /// Usage in percent of capacity, oldest first (0 for a pool of no capacity).
    pub fn percents(&self) -> impl Iterator<Item = f64> + '_ {
        self.points
            .iter()
            .map(|&(_, e, c)| if c == 0 { 100.0 } else { 100.0 * f64::from(e) / f64::from(c) })
    }

    /// Ports per second over the last `TREND` samples; None with fewer than two.
    pub fn slope(&self) -> Option<f64> {
        let skip = self.points.len().saturating_sub(TREND);
        slope(self.points.iter().skip(skip).map(|&(t, e, _)| (t, f64::from(e))))
    }

    pub fn time_left(&self, pool: &Pool) -> TimeLeft {
        time_left(self.slope(), pool.capacity, pool.effective)
    }
}

/// When a pool runs out at the current rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeLeft {
    /// Fewer than two samples yet.
    Measuring,
    /// Not growing (flat or shrinking).
    Stable,
    /// No port left now (or a pool of no capacity at all).
    Exhausted,
    /// Seconds before it is full.
    Seconds(f64),
}

impl TimeLeft {
    pub fn text(self) -> String {
        match self {
            TimeLeft::Measuring => "…".to_owned(),
            TimeLeft::Stable => "stable".to_owned(),
            TimeLeft::Exhausted => "none left".to_owned(),
            TimeLeft::Seconds(s) => duration_text(s),
        }
    }
}

/// `capacity - effective` over the slope when it grows.
pub fn time_left(slope: Option<f64>, capacity: u32, effective: u32) -> TimeLeft {
    if effective >= capacity {
        return TimeLeft::Exhausted;
    }
    match slope {
        None => TimeLeft::Measuring,
        // Below one port per hour is noise in the fit, not growth.
        Some(s) if s <= 1.0 / 3600.0 || !s.is_finite() => TimeLeft::Stable,
        Some(s) => TimeLeft::Seconds(f64::from(capacity - effective) / s),
    }
}

/// Least-squares slope of (x, y) points; None with fewer than two distinct x.
pub fn slope(points: impl Iterator<Item = (f64, f64)> + Clone) -> Option<f64> {
    let n = points.clone().count() as f64;
    if n < 2.0 {
        return None;
    }
    let (sx, sy) = points.clone().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den <= f64::EPSILON { None } else { Some(num / den) }
}

/// "45 s", "12 min", "3.5 h", "> 1 day".
pub fn duration_text(s: f64) -> String {
    if s < 1.0 {
        "< 1 s".to_owned()
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 86_400.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        "> 1 day".to_owned()
    }
}

/// "12.5/s", "0/s", "1,234/s".
pub fn rate_text(r: f64) -> String {
    if r == 0.0 {
        "0/s".to_owned()
    } else if r < 10.0 {
        format!("{r:.1}/s")
    } else {
        format!("{}/s", porthog_core::report::grouped(r.round() as u64))
    }
}

/// Unicode block sparkline of percentages (0-100), one character per point, the last `width`.
pub fn sparkline(percents: impl Iterator<Item = f64>, width: usize) -> String {
    const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let all: Vec<f64> = percents.collect();
    let skip = all.len().saturating_sub(width);
    all[skip..]
        .iter()
        // Any use at all shows as at least the lowest bar.
        .map(|&p| match ((p.clamp(0.0, 100.0) / 100.0) * 8.0).round() as usize {
            0 if p > 0.0 => BARS[1],
            i => BARS[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(points: &[(f64, u32)], capacity: u32) -> History {
        let mut h = History::default();
        for (i, &(t, e)) in points.iter().enumerate() {
            h.push(t, e, capacity, i as u64);
        }
        h
    }

    #[test]
    fn growth_gives_the_time_left() {
        // 10 ports per second, 60 of 100 used: 4 s left.
        let h = history(&[(0.0, 20), (1.0, 30), (2.0, 40), (3.0, 50), (4.0, 60)], 100);
        assert!((h.slope().unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(time_left(h.slope(), 100, 60), TimeLeft::Seconds(4.0));
        assert_eq!(TimeLeft::Seconds(4.0).text(), "4 s");
    }

    #[test]
    fn no_growth_and_shrinking_are_stable() {
        let flat = history(&[(0.0, 50), (1.0, 50), (2.0, 50)], 100);
        assert_eq!(time_left(flat.slope(), 100, 50), TimeLeft::Stable);
        let shrinking = history(&[(0.0, 90), (1.0, 70), (2.0, 50)], 100);
        assert!(shrinking.slope().unwrap() < 0.0);
        assert_eq!(time_left(shrinking.slope(), 100, 50), TimeLeft::Stable);
    }

    #[test]
    fn edge_cases() {
        // One sample: nothing to fit yet.
        assert_eq!(time_left(history(&[(0.0, 5)], 100).slope(), 100, 5), TimeLeft::Measuring);
        // Two samples at the same instant: no slope.
        assert_eq!(slope([(1.0, 1.0), (1.0, 5.0)].into_iter()), None);
        // Capacity 0 (every port reserved or held by listeners): nothing to allocate.
        assert_eq!(time_left(Some(10.0), 0, 0), TimeLeft::Exhausted);
        // Already full, whatever the trend.
        assert_eq!(time_left(Some(-3.0), 100, 100), TimeLeft::Exhausted);
        assert_eq!(history(&[(0.0, 0)], 0).percents().collect::<Vec<_>>(), vec![100.0]);
    }

    #[test]
    fn the_slope_follows_the_recent_trend() {
        // Flat for a long time, then 5 ports/s over the last TREND samples.
        let mut points: Vec<(f64, u32)> = (0..50).map(|t| (f64::from(t), 10)).collect();
        points.extend((50..50 + TREND as u32).map(|t| (f64::from(t), 10 + 5 * (t - 49))));
        let h = history(&points, 1000);
        assert!((h.slope().unwrap() - 5.0).abs() < 1e-9, "{:?}", h.slope());
    }

    #[test]
    fn history_is_bounded() {
        let points: Vec<(f64, u32)> = (0..1000).map(|t| (f64::from(t), t)).collect();
        let h = history(&points, 2000);
        assert_eq!(h.percents().count(), HISTORY);
    }

    #[test]
    fn texts() {
        assert_eq!(duration_text(0.2), "< 1 s");
        assert_eq!(duration_text(90.0), "90 s");
        assert_eq!(duration_text(600.0), "10 min");
        assert_eq!(duration_text(9000.0), "2.5 h");
        assert_eq!(duration_text(1e9), "> 1 day");
        assert_eq!(rate_text(0.0), "0/s");
        assert_eq!(rate_text(2.54), "2.5/s");
        assert_eq!(rate_text(1234.4), "1,234/s");
        assert_eq!(sparkline([0.0, 50.0, 100.0, 120.0].into_iter(), 3), "▄██");
        assert_eq!(sparkline([0.0, 1.0].into_iter(), 5), " ▁");
    }
}
