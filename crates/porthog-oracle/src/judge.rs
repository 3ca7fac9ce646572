//! Comparing porthog's claim about a pool with what the kernel granted. A claim agrees when
//! the free ports reported equal the allocations that succeeded and the verdict is exhausted
//! exactly when the first allocation failed. A disagreement is "declared" when porthog said
//! in its report that it assumed the very fact the scenario breaks (see `DECLARED`), and
//! "wrong" otherwise. Pure: no sockets here.

use std::fmt;

use porthog_core::{Level, Pool, PoolKind, Report};

use crate::probe::{Granted, Probe};
use crate::scenario::Scenario;

/// Which way porthog was off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// porthog promised more free ports than the kernel granted.
    Over,
    /// porthog promised fewer free ports than the kernel granted.
    Under,
    /// The counts agree, the exhausted verdict does not.
    Verdict,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Over => "porthog-free>kernel",
            Direction::Under => "porthog-free<kernel",
            Direction::Verdict => "verdict-only",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Agreed,
    /// Off, but porthog declared the assumption behind it: the text it declared.
    Declared(String),
    Wrong,
}

/// One probed pool.
#[derive(Debug, Clone)]
pub struct Check {
    pub pool: String,
    pub kind: PoolKind,
    pub probe: Probe,
    /// porthog: free = capacity - effective, and whether it said exhausted.
    pub claimed_free: u32,
    pub claimed_exhausted: bool,
    pub level: Level,
    pub granted: Granted,
    pub judgement: Judgement,
    /// For disagreements: the class (pool kind, probe, direction, scenario ingredients).
    pub class: Option<String>,
}

/// A scenario ingredient, a disagreement it can cause, and the report texts that declare the
/// assumption it breaks (today's wording and the wording of report schema 1). Extend when
/// porthog declares new assumptions.
struct DeclaredRule {
    tag: &'static str,
    kind: PoolKind,
    direction: Direction,
    needles: &'static [&'static str],
    /// The most ports the assumption can move the count by; None: any number.
    at_most: Option<u32>,
}

/// "connected sockets were taken to have their port from connect(), not bind() first".
const BIND_FIRST: &[&str] = &["bind() first"];
/// Whether a TIME_WAIT recorded timestamps is not seen.
const TW_TIMESTAMPS: &[&str] =
    &["whether they recorded TCP timestamps is not shown", "negotiated TCP timestamps"];
/// "IPV6_V6ONLY is not shown, so off (the default) was assumed".
const V6ONLY: &[&str] = &["IPV6_V6ONLY is not shown"];
/// Which connected sockets did bind first was guessed from the pattern of unshared ports.
const PROBABLE: &[&str] = &["PROBABLE bind-before-connect"];
/// "... holds an odd number of ports ...: port LOW is handed out only by chance".
const ODD_RANGE: &[&str] = &["handed out only by chance"];

const DECLARED: &[DeclaredRule] = &[
    // When they did bind first, every connect() pool has fewer ports than claimed; the
    // PROBABLE guess may also take the wrong destination's connections as connect()'s own.
    DeclaredRule {
        tag: "bind-before-connect",
        kind: PoolKind::Connect,
        direction: Direction::Over,
        needles: &["bind() first", "PROBABLE bind-before-connect"],
        at_most: None,
    },
    // The PROBABLE guess took plain connect()s as bind-first: their ports were shareable.
    DeclaredRule {
        tag: "bind-before-connect",
        kind: PoolKind::Connect,
        direction: Direction::Under,
        needles: PROBABLE,
        at_most: None,
    },
    // Bind-first sockets unseen: the bind() pool is capped at warn ("latent") for want of a
    // bind(0) caller, yet bind(0) fails (the fallback path cannot see their buckets).
    DeclaredRule {
        tag: "bind-before-connect",
        kind: PoolKind::Bind,
        direction: Direction::Verdict,
        needles: BIND_FIRST,
        at_most: None,
    },
    // An odd-sized range: each connect() or bind(0) scans one port fewer than the range, and
    // the one left out (the range start, almost always) is reached only by chance. Declared
    // for a count off by that one port, never more.
    DeclaredRule {
        tag: "odd-range",
        kind: PoolKind::Connect,
        direction: Direction::Over,
        needles: ODD_RANGE,
        at_most: Some(1),
    },
    DeclaredRule {
        tag: "odd-range",
        kind: PoolKind::Bind,
        direction: Direction::Over,
        needles: ODD_RANGE,
        at_most: Some(1),
    },
    // A peer without timestamps: TIME_WAIT claimed reusable is not.
    DeclaredRule {
        tag: "peer-timestamps-off",
        kind: PoolKind::Connect,
        direction: Direction::Over,
        needles: TW_TIMESTAMPS,
        at_most: None,
    },
    // Local timestamps switched on after the closes: TIME_WAIT claimed reusable recorded none.
    DeclaredRule {
        tag: "timestamps-toggled-after",
        kind: PoolKind::Connect,
        direction: Direction::Over,
        needles: &["whether they recorded TCP timestamps is not shown"],
        at_most: None,
    },
    // Local timestamps switched off after the closes: TIME_WAIT claimed blocking is reusable.
    DeclaredRule {
        tag: "timestamps-toggled-after",
        kind: PoolKind::Connect,
        direction: Direction::Under,
        needles: &["whether they recorded TCP timestamps is not shown"],
        at_most: None,
    },
    // A connection bound to a device (lo included) holds nothing for the unbound caller.
    DeclaredRule {
        tag: "so-bindtodevice",
        kind: PoolKind::Connect,
        direction: Direction::Under,
        needles: &["taken as bound to no device"],
        at_most: None,
    },
    // v6only holders claimed to block IPv4 callers.
    DeclaredRule {
        tag: "tcp-ipv6",
        kind: PoolKind::Bind,
        direction: Direction::Under,
        needles: V6ONLY,
        at_most: None,
    },
    DeclaredRule {
        tag: "udp-v6only",
        kind: PoolKind::Udp,
        direction: Direction::Under,
        needles: V6ONLY,
        at_most: None,
    },
];

/// Judges one probed pool of `report` against what the kernel granted. `bind0`: the scenario
/// holds sockets whose port came from bind(port 0).
pub fn judge(
    scn: &Scenario,
    report: &Report,
    pool: &Pool,
    probe: Probe,
    granted: Granted,
    bind0: bool,
) -> Check {
    let claimed_free = pool.capacity.saturating_sub(pool.effective);
    let claimed_exhausted = pool.level == Level::Exhausted;
    let kernel_exhausted = granted.granted == 0;
    let direction = if claimed_free > granted.granted {
        Some(Direction::Over)
    } else if claimed_free < granted.granted {
        Some(Direction::Under)
    } else if claimed_exhausted != kernel_exhausted {
        Some(Direction::Verdict)
    } else {
        None
    };
    let (judgement, class) = match direction {
        None => (Judgement::Agreed, None),
        Some(direction) => {
            let tags = suspects(scn, pool, direction, bind0);
            let class = format!(
                "{} pool, {} probe: {direction} [{}]",
                kind_name(pool.kind),
                probe_kind(probe),
                if tags.is_empty() { "unexplained".to_owned() } else { tags.join(" + ") }
            );
            let off = claimed_free.abs_diff(granted.granted);
            (declared(report, pool, direction, off, &tags, bind0), Some(class))
        }
    };
    Check {
        pool: pool.label(),
        kind: pool.kind,
        probe,
        claimed_free,
        claimed_exhausted,
        level: pool.level,
        granted,
        judgement,
        class,
    }
}

fn declared(
    report: &Report,
    pool: &Pool,
    direction: Direction,
    off: u32,
    tags: &[&str],
    bind0: bool,
) -> Judgement {
    let said = |needle: &str| {
        report.assumptions.iter().find(|a| a.contains(needle)).cloned().or_else(|| {
            report.gaps.iter().find(|g| g.message.contains(needle)).map(|g| g.message.clone())
        })
    };
    for rule in DECLARED {
        if rule.kind == pool.kind
            && rule.direction == direction
            && tags.contains(&rule.tag)
            && rule.at_most.is_none_or(|most| off <= most)
            && let Some(text) = rule.needles.iter().find_map(|n| said(n))
        {
            return Judgement::Declared(text);
        }
    }
    // The bind() pool capped at warn ("latent") says itself that it is fuller than its level:
    // declared, unless the scenario holds a socket whose port came from bind(port 0) (an
    // ephemeral listener, a bound socket, bind-before-connect), which issue 7 (wrong 6) says
    // porthog must not cap.
    if pool.latent && direction == Direction::Verdict && !bind0 {
        return Judgement::Declared("latent bind() pool (capped at warn)".to_owned());
    }
    Judgement::Wrong
}

/// The scenario's ingredients that can move this pool's count in this direction, per the
/// kernel rules of issue 7 and what the oracle found; a disagreement with none is
/// "unexplained", the class to read first.
fn suspects(scn: &Scenario, pool: &Pool, direction: Direction, bind0: bool) -> Vec<&'static str> {
    if direction == Direction::Verdict {
        return match (pool.latent, bind0) {
            // The bind(0) sockets may be bind-before-connect ones the report could not see.
            (true, true) => std::iter::once("latent cap beside a bind(0) socket")
                .chain(scn.tags().into_iter().filter(|t| *t == "bind-before-connect"))
                .collect(),
            (true, false) => vec!["latent cap"],
            _ => Vec::new(),
        };
    }
    let can_cause: &[&str] = match (pool.kind, direction) {
        (PoolKind::Connect, Direction::Over) => &[
            "bind-before-connect",
            "peer-timestamps-off",
            "timestamps-toggled-after",
            "odd-range",
            "ephemeral-listener",
        ],
        (PoolKind::Connect, Direction::Under) => &[
            "so-bindtodevice",
            "timestamps-toggled-after",
            "local-timestamps-off",
            "bind-before-connect",
        ],
        (PoolKind::Bind, Direction::Over) => &["odd-range", "bind-before-connect"],
        (PoolKind::Bind, Direction::Under) => &["tcp-ipv6", "so-bindtodevice"],
        (PoolKind::Udp, Direction::Under) => &["udp-v6only", "udp-dual-stack"],
        _ => &[],
    };
    scn.tags().into_iter().filter(|t| can_cause.contains(t)).collect()
}

fn kind_name(kind: PoolKind) -> &'static str {
    match kind {
        PoolKind::Connect => "connect()",
        PoolKind::Bind => "bind()",
        PoolKind::Udp => "udp",
        PoolKind::Global => "global",
        PoolKind::Snat => "snat",
    }
}

fn probe_kind(probe: Probe) -> String {
    match probe {
        Probe::Connect { local, remote } => {
            let scope =
                |ip: std::net::IpAddr| if ip.is_loopback() { "loopback" } else { "non-loopback" };
            format!("connect {}->{}", scope(local), scope(remote.ip()))
        }
        p => p.to_string(),
    }
}
