//! Sample times are CLOCK_MONOTONIC; failures are printed in wall-clock time. `Clock` pairs one
//! reading of each and converts; the conversion is pure, so it is tested with made-up readings.

/// One reading of CLOCK_MONOTONIC and CLOCK_REALTIME, taken together.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    mono0_ns: i64,
    wall0_ms: i64,
}

impl Clock {
    pub fn now() -> Clock {
        let mono0_ns = ns(rustix::time::clock_gettime(rustix::time::ClockId::Monotonic));
        let wall0_ns = ns(rustix::time::clock_gettime(rustix::time::ClockId::Realtime));
        Clock::at(mono0_ns, wall0_ns / 1_000_000)
    }

    /// The clock of a reading: monotonic ns `mono0_ns` was wall-clock ms `wall0_ms`.
    pub fn at(mono0_ns: i64, wall0_ms: i64) -> Clock {
        Clock { mono0_ns, wall0_ms }
    }

    /// CLOCK_MONOTONIC now, in seconds (the unit of the lifecycle join).
    pub fn mono_now_s() -> f64 {
        ns(rustix::time::clock_gettime(rustix::time::ClockId::Monotonic)) as f64 / 1e9
    }

    /// Wall-clock milliseconds since the epoch of a monotonic time in seconds.
    pub fn wall_ms(&self, mono_s: f64) -> i64 {
        self.wall0_ms + ((mono_s * 1e9) as i64 - self.mono0_ns) / 1_000_000
    }
}

fn ns(t: rustix::time::Timespec) -> i64 {
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_times_map_to_wall_clock_milliseconds() {
        // Booted 1000 s before 2026-11-29T02:30:00Z.
        let clock = Clock::at(1_000_000_000_000, 1_795_919_400_000);
        assert_eq!(clock.wall_ms(1000.0), 1_795_919_400_000);
        assert_eq!(clock.wall_ms(1001.2345), 1_795_919_401_234, "truncated to the millisecond");
        assert_eq!(clock.wall_ms(999.5), 1_795_919_399_500, "events before the reading too");
    }

    #[test]
    fn the_live_clock_reads_now() {
        let clock = Clock::now();
        let wall_now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                as i64;
        let mapped = clock.wall_ms(Clock::mono_now_s());
        assert!((mapped - wall_now).abs() < 1000, "{mapped} vs {wall_now}");
    }
}
