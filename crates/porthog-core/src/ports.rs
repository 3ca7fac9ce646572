//! Port ranges and sets of ports: the ephemeral range, reserved ports, Windows exclusions.
//! Pure arithmetic on `u16`; parsing of the text forms lives in `sysctl.rs` and the importers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An inclusive range of ports, `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// Linux default `ip_local_port_range` (`inet_init_net`).
    pub const LINUX_DEFAULT: PortRange = PortRange { start: 32768, end: 60999 };
    /// Windows default dynamic port range since Vista / Server 2008.
    pub const WINDOWS_DEFAULT: PortRange = PortRange { start: 49152, end: 65535 };

    /// `None` when `start > end`.
    pub fn new(start: u16, end: u16) -> Option<PortRange> {
        (start <= end).then_some(PortRange { start, end })
    }

    /// Number of ports in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// A range always holds at least one port; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }

    /// Whether connect() tries `port` in its first pass: `__inet_hash_connect` scans the
    /// ports of the range start's parity first (`offset &= ~1U`), and bind(port 0) the others
    /// first (`offset |= 1U` in `inet_csk_find_open_port`, "to not pollute connect() users").
    pub fn connect_parity(&self, port: u16) -> bool {
        port.wrapping_sub(self.start).is_multiple_of(2)
    }

    /// The port an allocation reaches only by chance, in a range of an odd number of ports.
    /// connect() and bind(port 0) scan an even number per call (`remaining &= ~1U` in
    /// `__inet_hash_connect` and `inet_csk_find_open_port`) from a random even offset, and
    /// wrap by that even count: a call starting at offset 0 (2 starts in len-1) leaves out the
    /// range end, every other call the range start. So the start is the port a call almost
    /// never reaches; which call does is random. In a range of 3 every call starts at 0, and
    /// the end is never handed out. `None` for an even range, where every call scans every
    /// port (and for UDP autobind, which always does: `udp_lib_get_port`).
    pub fn chance_port(&self) -> Option<u16> {
        match self.len() {
            1 => None,
            3 => Some(self.end),
            n if n % 2 == 1 => Some(self.start),
            _ => None,
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A set of ports kept as sorted, disjoint, non-adjacent ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PortSet {
    ranges: Vec<PortRange>,
}

impl PortSet {
    pub fn new() -> PortSet {
        PortSet::default()
    }

    /// Builds a set from ranges in any order, overlapping or not.
    pub fn from_ranges(ranges: impl IntoIterator<Item = PortRange>) -> PortSet {
        let mut set = PortSet::new();
        for r in ranges {
            set.insert(r);
        }
        set
    }

    pub fn insert(&mut self, r: PortRange) {
        self.ranges.push(r);
        self.ranges.sort_unstable();
        let mut merged: Vec<PortRange> = Vec::with_capacity(self.ranges.len());
        for r in self.ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if u32::from(r.start) <= u32::from(last.end) + 1 => {
                    last.end = last.end.max(r.end);
                }
                _ => merged.push(r),
            }
        }
        self.ranges = merged;
    }

    pub fn ranges(&self) -> &[PortRange] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, port: u16) -> bool {
        // The ranges are sorted and disjoint: find the last one starting at or below `port`.
        let i = self.ranges.partition_point(|r| r.start <= port);
        i > 0 && self.ranges[i - 1].end >= port
    }

    /// Number of ports in the set.
    pub fn len(&self) -> u32 {
        self.ranges.iter().map(PortRange::len).sum()
    }

    /// Number of ports of the set that lie inside `range`.
    pub fn count_within(&self, range: PortRange) -> u32 {
        self.within(range).iter().map(PortRange::len).sum()
    }

    /// The parts of the set that lie inside `range`.
    pub fn within(&self, range: PortRange) -> Vec<PortRange> {
        self.ranges
            .iter()
            .filter_map(|r| PortRange::new(r.start.max(range.start), r.end.min(range.end)))
            .collect()
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_and_the_chance_port_of_odd_ranges() {
        let odd = PortRange::new(40000, 40100).unwrap();
        assert_eq!(odd.chance_port(), Some(40000));
        assert!(odd.connect_parity(40000) && odd.connect_parity(40100));
        assert!(!odd.connect_parity(40001));
        assert_eq!(PortRange::new(40000, 40099).unwrap().chance_port(), None);
        assert_eq!(PortRange::LINUX_DEFAULT.chance_port(), None, "28,232 ports");
        assert_eq!(PortRange::new(5, 5).unwrap().chance_port(), None);
        assert_eq!(PortRange::new(5, 7).unwrap().chance_port(), Some(7));
        assert!(PortRange::new(65535, 65535).unwrap().connect_parity(65535));
    }
    use proptest::prelude::*;

    fn r(a: u16, b: u16) -> PortRange {
        PortRange::new(a, b).unwrap()
    }

    #[test]
    fn merges_overlapping_and_adjacent() {
        let s = PortSet::from_ranges([r(10, 20), r(5, 9), r(30, 30), r(15, 25)]);
        assert_eq!(s.ranges(), &[r(5, 25), r(30, 30)]);
        assert_eq!(s.len(), 22);
        assert_eq!(s.to_string(), "5-25,30");
    }

    #[test]
    fn counts_inside_a_range() {
        let s = PortSet::from_ranges([r(100, 200), r(300, 400)]);
        assert_eq!(s.count_within(r(150, 350)), 51 + 51);
        assert_eq!(s.count_within(r(201, 299)), 0);
        assert_eq!(PortRange::LINUX_DEFAULT.len(), 28232);
        assert_eq!(PortRange::WINDOWS_DEFAULT.len(), 16384);
        assert_eq!(r(0, 65535).len(), 65536);
    }

    proptest! {
        #[test]
        fn set_agrees_with_a_bitmap(ranges in prop::collection::vec((0u16..2000, 0u16..60), 0..12),
                                    probe in 0u16..2100) {
            let ranges: Vec<PortRange> = ranges.iter().map(|&(a, w)| r(a, a + w)).collect();
            let set = PortSet::from_ranges(ranges.clone());
            let mut bitmap = vec![false; 2100];
            for x in &ranges { for p in x.start..=x.end { bitmap[p as usize] = true; } }
            prop_assert_eq!(set.contains(probe), bitmap[probe as usize]);
            prop_assert_eq!(set.len() as usize, bitmap.iter().filter(|&&b| b).count());
            let win = r(500, 1500);
            prop_assert_eq!(set.count_within(win) as usize, bitmap[500..=1500].iter().filter(|&&b| b).count());
        }
    }
}
