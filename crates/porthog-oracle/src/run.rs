//! One scenario end to end: namespaces, build, `porthog check --json`, probe every pool, judge,
//! clean up (the guards delete the namespaces and the sockets close, also on error or panic).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use porthog_core::{PoolKind, Report};

use crate::build;
use crate::judge::{self, Check, Judgement};
use crate::netns::{Namer, Netns};
use crate::probe;
use crate::scenario::{PEER, Scenario, TwAge, VETH_LOCAL};

/// Which of porthog's collectors a run tests (issue 7: the same seeds on both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The BPF socket iterator with its kernel facts (porthog's default as root). A report
    /// that did not come from it is a setup error, not a verdict.
    Bpf,
    /// sock_diag and /proc, forced with `--no-bpf`: porthog assumes what it cannot see and
    /// says so.
    Fallback,
}

impl Path {
    pub const BOTH: [Path; 2] = [Path::Bpf, Path::Fallback];

    /// "bpf", "fallback", "both" (both paths, BPF first).
    pub fn parse_list(text: &str) -> Option<Vec<Path>> {
        match text {
            "bpf" => Some(vec![Path::Bpf]),
            "fallback" => Some(vec![Path::Fallback]),
            "both" => Some(Path::BOTH.to_vec()),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Path::Bpf => "bpf",
            Path::Fallback => "fallback",
        }
    }
}

/// What every scenario run needs.
pub struct Oracle {
    /// The porthog binary under test.
    pub porthog: PathBuf,
    pub namer: Namer,
    /// The collector porthog must use.
    pub path: Path,
}

/// The result of one scenario.
#[derive(Debug)]
pub struct Outcome {
    pub scenario: Scenario,
    /// The collector porthog used.
    pub path: Path,
    pub checks: Vec<Check>,
    /// Pools the report listed that no probe exists for (e.g. a new pool shape).
    pub unprobed: Vec<String>,
    /// Steps the kernel cut short while building.
    pub notes: Vec<String>,
    /// porthog's verdict line.
    pub summary: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn count(&self, f: impl Fn(&Judgement) -> bool) -> usize {
        self.checks.iter().filter(|c| f(&c.judgement)).count()
    }

    pub fn wrong(&self) -> usize {
        self.count(|j| *j == Judgement::Wrong)
    }

    /// Every check agreed (declared counts as a disagreement here).
    pub fn all_agree(&self) -> bool {
        self.count(|j| *j == Judgement::Agreed) == self.checks.len()
    }

    /// The judgements of the probed pools of this kind (empty when none was probed).
    pub fn judgements_of(&self, kind: porthog_core::PoolKind) -> Vec<&Judgement> {
        self.checks.iter().filter(|c| c.kind == kind).map(|c| &c.judgement).collect()
    }

    /// The scenario, then one line per probed pool.
    pub fn describe(&self) -> String {
        let mut out = self.scenario.to_string();
        let _ = writeln!(out, "  porthog ({} path): {}", self.path.name(), self.summary);
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        for c in &self.checks {
            let verdict = match &c.judgement {
                Judgement::Agreed => "agreed".to_owned(),
                Judgement::Declared(why) => format!("DECLARED ({why})"),
                Judgement::Wrong => "WRONG".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {} | {}: porthog free {} ({}), kernel granted {} then {} -> {verdict}",
                c.pool,
                c.probe,
                c.claimed_free,
                c.level,
                c.granted.granted,
                crate::sock::errno_name(c.granted.refusal),
            );
        }
        for u in &self.unprobed {
            let _ = writeln!(out, "  not probed (no probe for this pool shape): {u}");
        }
        out
    }
}

impl Oracle {
    /// Runs `scn` on its own thread (it enters the scenario's namespace) and returns what the
    /// kernel and porthog said.
    pub fn run(&self, scn: &Scenario) -> Result<Outcome> {
        std::thread::scope(|s| {
            s.spawn(|| self.run_here(scn))
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the scenario thread panicked")))
        })
        .with_context(|| format!("scenario {}", scn.to_string().trim_end()))
    }

    fn run_here(&self, scn: &Scenario) -> Result<Outcome> {
        let started = Instant::now();
        let ns = Netns::create(&self.namer)?;
        let peer = match scn.peer {
            Some(_) => Some(self.peer_of(&ns)?),
            None => None,
        };
        if scn.addr_on_lo {
            ns.ip_batch(&[&format!("addr add {}/32 dev lo", crate::scenario::ON_LO)])?;
        }
        ns.enter()?;
        // Sockets are declared after the namespaces so they close first.
        let live = build::build(scn, &ns, peer.as_ref())?;
        let report = self.check(&ns)?;
        let checked_at = Instant::now();

        let listed = report.pools.len() as u64;
        if listed != report.totals.pools {
            bail!("the report lists {listed} of {} pools despite --top", report.totals.pools);
        }
        // UDP and bind() first: a connect() probe that reuses a TIME_WAIT port ends that
        // TIME_WAIT, which the bind() pool counts.
        let mut pools: Vec<_> = report.pools.iter().collect();
        pools.sort_by_key(|p| match p.kind {
            PoolKind::Udp => 0,
            PoolKind::Bind => 1,
            _ => 2,
        });
        let limit = u32::from(scn.range.1 - scn.range.0) + 2;
        let mut checks = Vec::new();
        let mut unprobed = Vec::new();
        for pool in pools {
            let probes = probe::probes_for(pool);
            if probes.is_empty() {
                unprobed.push(pool.label());
            }
            for p in probes {
                let granted = probe::run(p, limit)?;
                checks.push(judge::judge(scn, &report, pool, p, granted, live.bind0 > 0));
            }
        }
        aging_check(scn, &live, checked_at)?;
        let notes = live.notes.clone();
        drop(live);
        Ok(Outcome {
            scenario: scn.clone(),
            path: self.path,
            checks,
            unprobed,
            notes,
            summary: format!("{} {}", report.verdict, report.summary),
            elapsed: started.elapsed(),
        })
    }

    /// The peer namespace, joined by a veth pair: VETH_LOCAL here, PEER there.
    fn peer_of(&self, ns: &Netns) -> Result<Netns> {
        let peer = Netns::create(&self.namer)?;
        ns.ip_batch(&[
            &format!("link add vo type veth peer name vp netns {}", peer.name()),
            &format!("addr add {VETH_LOCAL}/24 dev vo"),
            "link set vo up",
        ])?;
        peer.ip_batch(&[&format!("addr add {PEER}/24 dev vp"), "link set vp up"])?;
        Ok(peer)
    }

    /// `porthog check --json --netns NS` with every pool listed, on the oracle's path.
    fn check(&self, ns: &Netns) -> Result<Report> {
        let mut cmd = Command::new(&self.porthog);
        cmd.args(["check", "--json", "--top", "100000", "--netns", ns.name()]);
        cmd.env_remove("PORTHOG_NO_BPF");
        if self.path == Path::Fallback {
            cmd.arg("--no-bpf");
        }
        let out = cmd.output().with_context(|| format!("run {}", self.porthog.display()))?;
        let report: Report = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "porthog check printed no JSON report (exit {:?}); stderr: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        // The report's source is "bpf" only when the iterators were read (collect/linux).
        match (self.path, report.source.as_str()) {
            (Path::Bpf, "bpf") => {}
            (Path::Bpf, other) => bail!(
                "the BPF path was asked for but porthog read {other}: {}",
                report.gaps.first().map_or("no gap given", |g| g.message.as_str())
            ),
            (Path::Fallback, "bpf") => bail!("porthog used BPF despite --no-bpf"),
            (Path::Fallback, _) => {}
        }
        Ok(report)
    }
}

/// TIME_WAIT must not change its reusability between porthog's look and the last probe: young
/// ones stay younger than the 30 s delay, and none reaches its 60 s end.
fn aging_check(scn: &Scenario, live: &build::Live, checked_at: Instant) -> Result<()> {
    let Some(first) = live.first_tw else { return Ok(()) };
    let age = first.elapsed();
    if scn.tw_age == TwAge::Young && age >= Duration::from_millis(u64::from(scn.tw_age.delay_ms()))
    {
        bail!("a young TIME_WAIT became old ({age:?}) before the probes ended: the run is void");
    }
    if age >= Duration::from_secs(55) {
        bail!("a TIME_WAIT neared its 60 s end ({age:?}) before the probes ended");
    }
    if let Some(last) = live.last_tw
        && scn.tw_age == TwAge::Old
        && checked_at.duration_since(last) < Duration::from_millis(2)
    {
        bail!("porthog looked before the last TIME_WAIT was past the 1 ms reuse delay");
    }
    Ok(())
}
