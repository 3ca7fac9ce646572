//! The C floor (floor.c beside Cargo.toml): the least work porthog's collector must do, and
//! the parser for the counts it prints.

use std::path::{Path, PathBuf};

use anyhow::Result;

const SOURCE: &str = include_str!("../floor.c");

/// Compiles floor.c into `dir`; returns the binary's path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    crate::cc::compile(dir, "floor", SOURCE, &[])
}

/// What the floor printed: `sockets=N v4=N ... fds=N socket_fds=N`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FloorCounts {
    pub sockets: u64,
    pub attributed: u64,
    pub processes: u64,
    pub fds: u64,
    pub socket_fds: u64,
}

pub fn parse(out: &str) -> Option<FloorCounts> {
    let mut c = FloorCounts::default();
    let mut seen_sockets = false;
    for word in out.split_whitespace() {
        let (key, value) = word.split_once('=')?;
        let value: u64 = value.parse().ok()?;
        match key {
            "sockets" => {
                c.sockets = value;
                seen_sockets = true;
            }
            "attributed" => c.attributed = value,
            "processes" => c.processes = value,
            "fds" => c.fds = value,
            "socket_fds" => c.socket_fds = value,
            _ => {}
        }
    }
    seen_sockets.then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_floor_line() {
        let line =
            "sockets=12 v4=12 v6=0 with_inode=10 attributed=9 processes=80 fds=500 socket_fds=40\n";
        let c = parse(line).unwrap();
        assert_eq!(
            c,
            FloorCounts { sockets: 12, attributed: 9, processes: 80, fds: 500, socket_fds: 40 }
        );
        assert!(parse("garbage").is_none());
        assert!(parse("").is_none());
    }
}
