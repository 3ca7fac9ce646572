//! The known disagreements, as named fixed scenarios (issue 7, "What was wrong", and what the
//! oracle found since). Each says what porthog must show on it today, per path: `Agree` once
//! the model follows that rule, `Declared` where the fallback path cannot see the fact and
//! says what it assumed, `Disagree` while the model is wrong. The test fails when a case shows
//! anything else, also when it does better, so the expectation is raised then.

use std::net::SocketAddr;

use porthog_core::PoolKind;

use crate::judge::Judgement;
use crate::run::Path;
use crate::scenario::{Dest, End, LO4, LO6, Mix, ON_LO, Origin, PEER, Scenario, Step, TwAge};

/// What a regression case must show today about the pools of its kind, on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expect {
    /// Every probed pool of the case's kind agrees.
    Agree,
    /// None is wrong and at least one disagrees as declared: porthog cannot see the fact on
    /// this path and says what it assumed instead (the fallback path's honest answer).
    Declared,
    /// One of them is wrong: a known model error, not fixed yet.
    Disagree,
}

impl Expect {
    /// What the judgements of the case's pools show.
    fn of(judgements: &[&Judgement]) -> Expect {
        if judgements.iter().any(|j| **j == Judgement::Wrong) {
            Expect::Disagree
        } else if judgements.iter().any(|j| matches!(j, Judgement::Declared(_))) {
            Expect::Declared
        } else {
            Expect::Agree
        }
    }
}

/// A named regression case.
pub struct Case {
    pub name: &'static str,
    /// The kernel rule at stake.
    pub rule: &'static str,
    /// On the BPF path, which reads the kernel's facts.
    pub expect: Expect,
    /// On the sock_diag fallback (`--no-bpf`).
    pub fallback: Expect,
    /// The kind of pool the rule is about (the others may disagree for other reasons).
    pub about: PoolKind,
    pub scenario: Scenario,
}

impl Case {
    /// What the case must show on `path`.
    pub fn expect_on(&self, path: Path) -> Expect {
        match path {
            Path::Bpf => self.expect,
            Path::Fallback => self.fallback,
        }
    }

    /// Whether the outcome shows what the case expects on its path; Err says what it showed
    /// instead.
    pub fn check(&self, outcome: &crate::Outcome) -> Result<(), String> {
        let judgements = outcome.judgements_of(self.about);
        if judgements.is_empty() {
            return Err(format!("{}: no {:?} pool was probed", self.name, self.about));
        }
        let (want, got) = (self.expect_on(outcome.path), Expect::of(&judgements));
        if want == got {
            return Ok(());
        }
        let field = match outcome.path {
            Path::Bpf => "expect",
            Path::Fallback => "fallback",
        };
        Err(format!(
            "{} ({}), {} path: expected {want:?} on the {:?} pools, porthog shows {got:?}{}",
            self.name,
            self.rule,
            outcome.path.name(),
            self.about,
            if got < want {
                format!(
                    " (better than expected: set `{field}: Expect::{got:?}` in \
                     crates/porthog-oracle/src/regress.rs)"
                )
            } else {
                String::new()
            }
        ))
    }
}

fn base(range: (u16, u16)) -> Scenario {
    Scenario {
        seed: 0,
        mix: Mix::Full,
        range,
        reserved: Vec::new(),
        tw_reuse: 2,
        tw_age: TwAge::Old,
        timestamps: true,
        timestamps_after: None,
        addr_on_lo: false,
        peer: None,
        dests: Vec::new(),
        steps: Vec::new(),
    }
}

fn dest(ip: std::net::IpAddr, port: u16) -> Dest {
    Dest { addr: SocketAddr::new(ip, port), in_peer: ip == PEER }
}

/// Every named case, in issue 7's order.
pub fn cases() -> Vec<Case> {
    let range = (40000, 40099);
    let mut v = Vec::new();

    // 1. bind(addr, 0) + connect() makes a bind-type bucket: every other destination loses
    // the port (`__inet_hash_connect` skips fastreuse >= 0).
    let mut s = base(range);
    s.dests = vec![dest(LO4, 5000), dest(LO4, 6000)];
    s.steps = vec![
        Step::Connect { dest: 0, origin: Origin::BindFirst(LO4), count: 50, end: End::Open },
        Step::Connect { dest: 1, origin: Origin::Plain, count: 1, end: End::Open },
    ];
    v.push(Case {
        name: "bind_before_connect_shrinks_other_destinations",
        rule: "a port from bind(addr, 0) + connect() is skipped by connect() to every destination",
        expect: Expect::Agree,
        fallback: Expect::Agree,
        about: PoolKind::Connect,
        scenario: s,
    });

    // 1b. ... and its TIME_WAIT keeps the bucket (tw_tb): tw_reuse cannot give it back.
    let mut s = base(range);
    s.tw_reuse = 1;
    s.dests = vec![dest(LO4, 5000)];
    s.steps = vec![Step::Connect {
        dest: 0,
        origin: Origin::BindFirst(LO4),
        count: 100,
        end: End::TimeWait,
    }];
    v.push(Case {
        name: "bind_before_connect_time_wait_is_not_reusable",
        rule: "a TIME_WAIT keeps its bind-type bucket, so tw_reuse cannot take the port",
        expect: Expect::Agree,
        fallback: Expect::Declared,
        about: PoolKind::Connect,
        scenario: s,
    });

    // 2. A peer without timestamps: its TIME_WAIT recorded none, tw_reuse=1 cannot reuse it.
    let mut s = base(range);
    s.tw_reuse = 1;
    s.peer = Some(false);
    s.dests = vec![dest(PEER, 7000)];
    s.steps =
        vec![Step::Connect { dest: 0, origin: Origin::Plain, count: 100, end: End::TimeWait }];
    v.push(Case {
        name: "peer_without_timestamps_time_wait_is_not_reusable",
        rule: "tcp_twsk_unique needs the timestamps the TIME_WAIT socket recorded",
        expect: Expect::Agree,
        fallback: Expect::Declared,
        about: PoolKind::Connect,
        scenario: s,
    });

    // 2b. Local timestamps switched off after the closes: the TIME_WAIT still has them.
    let mut s = base(range);
    s.tw_reuse = 1;
    s.peer = Some(true);
    s.timestamps_after = Some(false);
    s.dests = vec![dest(PEER, 7000)];
    s.steps =
        vec![Step::Connect { dest: 0, origin: Origin::Plain, count: 100, end: End::TimeWait }];
    v.push(Case {
        name: "timestamps_switched_off_later_do_not_stop_reuse",
        rule: "reusability follows the TIME_WAIT socket, not today's tcp_timestamps",
        expect: Expect::Agree,
        fallback: Expect::Declared,
        about: PoolKind::Connect,
        scenario: s,
    });

    // 3. UDP per family: v6only sockets exhaust IPv6 autobind, IPv4 still gets ports.
    let mut s = base(range);
    s.steps =
        vec![Step::Udp { v6: true, v6only: true, to: Some(SocketAddr::new(LO6, 53)), count: 100 }];
    v.push(Case {
        name: "udp_v6only_ports_do_not_block_ipv4",
        rule: "udp_lib_get_port compares family and address (v6only)",
        expect: Expect::Agree,
        fallback: Expect::Declared,
        about: PoolKind::Udp,
        scenario: s,
    });

    // 3b. TCP ports bound on [::1] (bind() makes them v6only) block bind([::], 0) but not
    // bind(0.0.0.0, 0). (Ports connect() took from [::1] do block IPv4: not v6only.)
    let mut s = base(range);
    s.steps = vec![Step::Bound { ip: LO6, count: 100 }];
    v.push(Case {
        name: "tcp_ipv6_ports_do_not_block_ipv4_bind",
        rule: "inet_csk_bind_conflict compares family and address",
        expect: Expect::Agree,
        fallback: Expect::Agree,
        about: PoolKind::Bind,
        scenario: s,
    });

    // 4. tw_reuse=2 covers a TIME_WAIT bound to lo (tw_bound_dev_if), whatever its address.
    let mut s = base(range);
    s.addr_on_lo = true;
    s.dests = vec![dest(ON_LO, 7000)];
    s.steps =
        vec![Step::Connect { dest: 0, origin: Origin::Device, count: 100, end: End::TimeWait }];
    v.push(Case {
        name: "time_wait_bound_to_lo_is_loopback_for_tw_reuse_2",
        rule: "tcp_twsk_unique: tw_bound_dev_if == LOOPBACK_IFINDEX counts as loopback",
        expect: Expect::Agree,
        fallback: Expect::Agree,
        about: PoolKind::Connect,
        scenario: s,
    });

    // Found by the oracle: a connection bound to a device (SO_BINDTODEVICE) does not block the
    // same 4-tuple for an unbound connect() (`inet_match` compares the bound device:
    // `__inet_check_established` passes the caller's device), so its port stays free for it.
    let mut s = base(range);
    s.dests = vec![dest(LO4, 7000)];
    s.steps = vec![Step::Connect { dest: 0, origin: Origin::Device, count: 100, end: End::Open }];
    v.push(Case {
        name: "device_bound_connections_do_not_block_unbound_connect",
        rule: "__inet_check_established matches a 4-tuple only on the caller's bound device",
        expect: Expect::Agree,
        fallback: Expect::Agree,
        about: PoolKind::Connect,
        scenario: s,
    });

    // Found by the oracle (full mix seed 971, void before): an unbound connect() may take the
    // 4-tuple of a device-bound connection that was just closed. The oracle now lets each
    // step's closes finish before the next step, so the orphans settle in FIN_WAIT2 (no
    // unacknowledged FIN left in FIN_WAIT1) and the scenario is judged, not void.
    let mut s = base((40000, 40065));
    s.dests = vec![dest(LO4, 7009)];
    s.steps = vec![
        Step::Connect { dest: 0, origin: Origin::Device, count: 27, end: End::Leak },
        Step::Connect { dest: 0, origin: Origin::Plain, count: 27, end: End::TimeWait },
    ];
    v.push(Case {
        name: "unbound_connect_after_device_bound_leaks_settles",
        rule: "__inet_check_established lets an unbound connect() reuse a device-bound 4-tuple",
        expect: Expect::Agree,
        fallback: Expect::Agree,
        about: PoolKind::Connect,
        scenario: s,
    });

    // 6. The bind() pool capped at warn although bind(0) really fails and an ephemeral
    // listener (its port came from bind(0)) is there to see.
    let mut s = base(range);
    s.tw_reuse = 1;
    s.dests = vec![dest(LO4, 7000)];
    s.steps = vec![
        Step::Listen { ip: LO4, port: None, reuseaddr: false, reuseport: false },
        Step::Connect { dest: 0, origin: Origin::Plain, count: 100, end: End::TimeWait },
    ];
    v.push(Case {
        name: "bind_pool_exhausted_with_an_ephemeral_listener_is_not_latent",
        rule: "bind(0.0.0.0, 0) fails: the bind() pool is exhausted, not warn",
        expect: Expect::Agree,
        fallback: Expect::Agree,
        about: PoolKind::Bind,
        scenario: s,
    });

    // Found by the oracle (class "odd-range"): with an odd number of ports, connect() and
    // bind(0) scan one fewer per call (`remaining &= ~1U`) from a random even offset, so one
    // port is reached only by chance; in a range of 3 every call starts at offset 0 and the
    // range end is never handed out. porthog counts it as free and declares it.
    let s = base((40000, 40002));
    v.push(Case {
        name: "odd_range_scans_one_port_fewer",
        rule: "inet_csk_find_open_port / __inet_hash_connect scan an even number of ports",
        expect: Expect::Declared,
        fallback: Expect::Declared,
        about: PoolKind::Bind,
        scenario: s,
    });

    // Found by the oracle (issue 7 wrong 6, from the other side): bind(addr, 0) + connect()
    // sockets hold bind(0) ports, so a full bind() pool fails a caller now. The BPF path sees
    // their bind-made buckets and does not cap the pool; the fallback cannot, caps it at warn
    // ("latent") and declares that it took them as connect()'s own.
    let mut s = base(range);
    s.dests = vec![dest(LO4, 5000)];
    s.steps =
        vec![Step::Connect { dest: 0, origin: Origin::BindFirst(LO4), count: 100, end: End::Open }];
    v.push(Case {
        name: "bind_pool_beside_bind_before_connect_is_not_latent",
        rule: "bind(0.0.0.0, 0) fails beside bind(addr, 0) + connect() sockets: exhausted",
        expect: Expect::Agree,
        fallback: Expect::Declared,
        about: PoolKind::Bind,
        scenario: s,
    });

    // Found by the oracle (full mix seeds 64, 68, 694): after bind-before-connect to one
    // destination, a plain connect() fill of another shares no port with it either (connect()
    // skips bind-made buckets), and the fallback's PROBABLE guess took the fill as bind-first
    // too, so the first destination's pool read 0 free where connect() to it may still share
    // the fill's ports. The guess now spares the group with most ports of connect()'s parity.
    let mut s = base(range);
    s.dests = vec![dest(LO4, 5000), dest(LO4, 6000)];
    s.steps = vec![
        Step::Connect { dest: 0, origin: Origin::BindFirst(LO4), count: 40, end: End::Open },
        Step::Connect { dest: 1, origin: Origin::Plain, count: 100, end: End::Open },
    ];
    v.push(Case {
        name: "probable_bind_before_connect_spares_a_plain_connect_fill",
        rule: "connect() shares connect-made buckets across destinations, never bind-made ones",
        expect: Expect::Agree,
        fallback: Expect::Agree,
        about: PoolKind::Connect,
        scenario: s,
    });

    // Control: loopback TIME_WAIT under tw_reuse=2 is reusable; pools are per destination.
    let mut s = base(range);
    s.dests = vec![dest(LO4, 7000), dest(LO4, 7001)];
    s.steps = vec![
        Step::Connect { dest: 0, origin: Origin::Plain, count: 60, end: End::TimeWait },
        Step::Connect { dest: 1, origin: Origin::Plain, count: 10, end: End::Open },
    ];
    v.push(Case {
        name: "control_loopback_time_wait_reuse",
        rule: "connect() pools are per destination; tw_reuse=2 reuses loopback TIME_WAIT",
        expect: Expect::Agree,
        fallback: Expect::Agree,
        about: PoolKind::Connect,
        scenario: s,
    });
    v
}
