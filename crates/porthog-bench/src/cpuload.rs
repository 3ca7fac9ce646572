//! How busy the rest of the machine was while a tool ran: /proc/stat's machine-wide busy time
//! over the run, minus the tool's own CPU time, in cores. On a shared machine a run with another
//! core's worth of work beside it is not comparable to one without, and this says which is which.
//! It includes the load's own churn (a few hundredths of a core).

use std::time::Duration;

/// Busy time of all CPUs since boot (user, nice, system, irq, softirq, steal), from /proc/stat.
pub fn busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse(&stat)
}

fn parse(stat: &str) -> Option<Duration> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> =
        line.split_whitespace().skip(1).map(|v| v.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum();
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_secs_f64(busy as f64 / hz as f64))
}

/// Cores busy with other work during a run of `wall` whose own CPU time was `own`.
pub fn others(
    before: Option<Duration>,
    after: Option<Duration>,
    wall: Duration,
    own: Duration,
) -> Option<f64> {
    let total = after?.checked_sub(before?)?;
    let wall = wall.as_secs_f64();
    (wall > 0.0).then(|| ((total.as_secs_f64() - own.as_secs_f64()) / wall).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_busy_columns() {
        let stat = "cpu  100 5 50 1000 7 3 2 1 0 0\ncpu0 50 2 25 500 3 1 1 0 0 0\n";
        // SAFETY: as above.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let busy = parse(stat).unwrap().as_secs_f64();
        assert!((busy - 161.0 / hz).abs() < 1e-9);
        assert!(parse("intr 1 2 3\n").is_none());
    }

    #[test]
    fn others_is_the_rest_per_second() {
        let s = Duration::from_secs;
        let o = others(Some(s(10)), Some(s(13)), s(2), s(1)).unwrap();
        assert!((o - 1.0).abs() < 1e-9);
        assert_eq!(others(None, Some(s(1)), s(1), s(0)), None);
    }
}
