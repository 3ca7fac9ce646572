//! The report over every network namespace of a host (`--all-netns`): one single-namespace
//! [`Report`] per namespace, labelled with what a user knows it by, worst first, and the
//! versioned JSON contract `docs/fleet.schema.json`. Built from reports; judges nothing itself
//! beyond ordering them and combining their exit codes.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::AnalyzeOptions;
use crate::level::Level;
use crate::model::{Gap, Os, Snapshot};
use crate::report::Report;
use crate::timeline::{Failure, FailureClass};

/// Version of the fleet JSON contract; bumped on any incompatible change.
pub const FLEET_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetReport {
    pub schema_version: u32,
    /// The worst namespace's verdict (`ok` when none could be read).
    pub verdict: Level,
    /// Worst first.
    pub namespaces: Vec<NamespaceReport>,
    /// Namespaces found but not read: they vanished mid-scan, or reading them failed.
    #[serde(default)]
    pub gaps: Vec<Gap>,
}

/// One network namespace and its report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceReport {
    /// The namespace file's inode, as `ls -l /proc/PID/ns/net` shows it (`net:[INODE]`).
    pub inode: u64,
    /// Its `ip netns` name (a bind mount under /run/netns), if it has one.
    pub name: Option<String>,
    /// Container, pod or systemd unit of a process in it (from its cgroup).
    pub container: Option<String>,
    /// Processes whose network namespace it is, ascending.
    pub pids: Vec<u32>,
    pub report: Report,
}

impl NamespaceReport {
    /// What the namespace is called in text and metrics: its name, else `net:[INODE]`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("net:[{}]", self.inode),
        }
    }
}

impl FleetReport {
    /// Orders the namespaces worst first (verdict, then how full the tightest pool is, then
    /// inode for a stable order) and makes every label distinct: a name given to two
    /// namespaces (in two mount namespaces) gets the inode appended.
    pub fn new(mut namespaces: Vec<NamespaceReport>, gaps: Vec<Gap>) -> FleetReport {
        namespaces.sort_by(|a, b| {
            b.report
                .verdict
                .cmp(&a.report.verdict)
                .then_with(|| fullest(b).total_cmp(&fullest(a)))
                .then_with(|| a.inode.cmp(&b.inode))
        });
        let labels: Vec<String> = namespaces.iter().map(NamespaceReport::label).collect();
        for (i, ns) in namespaces.iter_mut().enumerate() {
            if ns.name.is_some() && labels.iter().filter(|l| **l == labels[i]).count() > 1 {
                ns.name = Some(format!("{} (net:[{}])", labels[i], ns.inode));
            }
        }
        let verdict = namespaces.first().map_or(Level::Ok, |ns| ns.report.verdict);
        FleetReport { schema_version: FLEET_SCHEMA_VERSION, verdict, namespaces, gaps }
    }

    /// Failures outrank snapshots (issue 7), per namespace: each namespace's verdict is raised
    /// by the exhaustion failures made in it (`Failure::netns`), naming processes and
    /// destinations there, and the namespaces are ordered again. Exhaustion failures made in a
    /// namespace not listed here (deleted since: a container that ran out of ports and was
    /// removed) get an entry of their own, critical and with no pools, labelled by the name
    /// `gone_names` gives its inode (what an earlier sample called it), else `gone net:[INODE]`.
    /// Failures of no known namespace (`netns` None, recordings before version 2) change
    /// nothing.
    pub fn raise_for_failures(
        &mut self,
        failures: &[Failure],
        during: &str,
        gone_names: &HashMap<u64, String>,
    ) {
        if failures.is_empty() {
            return;
        }
        for ns in &mut self.namespaces {
            let own = failures.iter().filter(|f| f.netns == Some(ns.inode));
            crate::timeline::raise_for_failures(&mut ns.report, own, during);
        }
        let listed: HashSet<u64> = self.namespaces.iter().map(|ns| ns.inode).collect();
        let mut gone: BTreeMap<u64, Vec<&Failure>> = BTreeMap::new();
        for f in failures.iter().filter(|f| f.class == FailureClass::Exhaustion) {
            match f.netns {
                Some(inode) if !listed.contains(&inode) => gone.entry(inode).or_default().push(f),
                _ => {}
            }
        }
        let mut namespaces = std::mem::take(&mut self.namespaces);
        for (inode, own) in gone {
            namespaces.push(gone_namespace(inode, &own, during, gone_names.get(&inode)));
        }
        let gaps = std::mem::take(&mut self.gaps);
        *self = FleetReport::new(namespaces, gaps);
    }

    /// The worst namespace's exit status, ranked as Nagios aggregates rank them: critical (2)
    /// over unknown (3) over warn (1) over ok (0). With no namespace read at all: unknown.
    pub fn exit_code(&self) -> u8 {
        const RANK: [u8; 4] = [0, 1, 3, 2];
        let codes = self.namespaces.iter().map(|ns| ns.report.exit_code());
        if self.namespaces.is_empty() {
            return 3;
        }
        codes.max_by_key(|&c| RANK.get(usize::from(c)).copied().unwrap_or(2)).unwrap_or(3)
    }
}

/// A namespace that is gone but whose processes failed for lack of a port: no snapshot, no
/// pools, critical by its failures alone.
fn gone_namespace(
    inode: u64,
    failures: &[&Failure],
    during: &str,
    name: Option<&String>,
) -> NamespaceReport {
    let source = "none: the network namespace no longer exists";
    let mut report = crate::analyze(&Snapshot::new(Os::Linux, source), &AnalyzeOptions::default());
    // An empty snapshot still has the default ranges' pools: nothing here was read.
    report.ranges.clear();
    report.pools.clear();
    report.findings.clear();
    report.assumptions.clear();
    report.summary = "none, the network namespace was deleted before it was read".to_owned();
    report.verdict = Level::Ok;
    crate::timeline::raise_for_failures(&mut report, failures.iter().copied(), during);
    let label = name.cloned().unwrap_or_else(|| format!("gone net:[{inode}]"));
    report.netns = Some(label.clone());
    let mut pids: Vec<u32> = failures.iter().map(|f| f.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    NamespaceReport {
        inode,
        name: Some(label),
        container: failures.iter().find_map(|f| f.container.clone()),
        pids,
        report,
    }
}

/// How full the tightest pool is, as the report's pools are tightest first.
fn fullest(ns: &NamespaceReport) -> f64 {
    ns.report.pools.first().map_or(0.0, |p| p.percent)
}

/// How long a vanished namespace is still known (listed as gone by `watch`, its name given
/// to the failures made in it), in seconds of sample time.
pub const GONE_FOR_S: f64 = 60.0;

/// The names samples gave their namespaces, kept [`GONE_FOR_S`] after a namespace vanished:
/// what a failure made in one deleted since is labelled (`watch`, `record` and replays).
#[derive(Debug, Default)]
pub struct Names(HashMap<u64, (String, Option<f64>)>);

impl Names {
    /// Takes the namespaces of the sample at `at` (seconds); returns the names of those named
    /// earlier that this sample does not list, gone for at most [`GONE_FOR_S`].
    pub fn next(&mut self, fleet: &FleetReport, at: f64) -> HashMap<u64, String> {
        for (_, gone_at) in self.0.values_mut() {
            gone_at.get_or_insert(at);
        }
        for ns in &fleet.namespaces {
            if let Some(name) = &ns.name {
                self.0.insert(ns.inode, (name.clone(), None));
            }
        }
        self.0.retain(|_, (_, gone_at)| gone_at.is_none_or(|t| at - t <= GONE_FOR_S));
        let gone = self.0.iter().filter(|(_, (_, gone_at))| gone_at.is_some());
        gone.map(|(inode, (name, _))| (*inode, name.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze;

    fn ns(inode: u64, name: Option<&str>, verdict: Level) -> NamespaceReport {
        let mut report = analyze(&Snapshot::new(Os::Linux, "test"), &AnalyzeOptions::default());
        report.verdict = verdict;
        NamespaceReport {
            inode,
            name: name.map(str::to_owned),
            container: None,
            pids: vec![],
            report,
        }
    }

    /// A name is kept GONE_FOR_S after its namespace was last listed, and dropped once it is
    /// listed again.
    #[test]
    fn names_outlive_their_namespace_for_a_while() {
        let mut names = Names::default();
        let both =
            FleetReport::new(vec![ns(1, Some("a"), Level::Ok), ns(2, None, Level::Ok)], vec![]);
        let one = FleetReport::new(vec![ns(2, None, Level::Ok)], vec![]);
        assert!(names.next(&both, 0.0).is_empty());
        assert_eq!(names.next(&one, 1.0), HashMap::from([(1, "a".to_owned())]));
        assert_eq!(names.next(&one, 1.0 + GONE_FOR_S).len(), 1);
        assert!(names.next(&one, 2.0 + GONE_FOR_S).is_empty(), "forgotten");
        names.next(&both, 3.0 + GONE_FOR_S);
        assert!(names.next(&both, 4.0 + GONE_FOR_S).is_empty(), "listed again: not gone");
    }

    #[test]
    fn worst_first_and_distinct_labels() {
        let fleet = FleetReport::new(
            vec![
                ns(1, Some("a"), Level::Ok),
                ns(2, Some("a"), Level::Exhausted),
                ns(3, None, Level::Warn),
            ],
            vec![],
        );
        let labels: Vec<String> = fleet.namespaces.iter().map(NamespaceReport::label).collect();
        assert_eq!(labels, ["a (net:[2])", "net:[3]", "a (net:[1])"]);
        assert_eq!(fleet.verdict, Level::Exhausted);
        assert_eq!(fleet.exit_code(), 2);
    }

    #[test]
    fn exit_codes_rank_critical_over_unknown_over_warn() {
        assert_eq!(FleetReport::new(vec![], vec![]).exit_code(), 3);
        let warn = FleetReport::new(vec![ns(1, None, Level::Warn), ns(2, None, Level::Ok)], vec![]);
        assert_eq!(warn.exit_code(), 1);
        let mut undecided = ns(3, None, Level::Ok);
        undecided.report.gaps.push(Gap {
            kind: crate::GapKind::Incomplete,
            count: None,
            message: "dump kept changing".into(),
            advice: None,
        });
        let unknown = FleetReport::new(vec![ns(1, None, Level::Warn), undecided.clone()], vec![]);
        assert_eq!(unknown.exit_code(), 3);
        let critical = FleetReport::new(vec![undecided, ns(2, None, Level::Critical)], vec![]);
        assert_eq!(critical.exit_code(), 2);
    }

    fn failure(netns: Option<u64>, class: FailureClass) -> Failure {
        Failure {
            time: "2026-11-24T02:00:00.500Z".into(),
            pid: 42,
            name: "client".into(),
            container: None,
            protocol: crate::model::Protocol::Tcp,
            remote: Some("10.0.0.2:80".parse().unwrap()),
            errno: crate::timeline::Errno::AddrNotAvail,
            call: "connect".into(),
            class,
            netns,
        }
    }

    /// A container that ran out of ports and was deleted before the sample still makes the
    /// fleet critical: an entry of its own, named if a sample named it, with no pools.
    #[test]
    fn failures_in_a_gone_namespace_raise_an_entry_of_their_own() {
        let fleet = || FleetReport::new(vec![ns(1, Some("blue"), Level::Warn)], vec![]);
        let exhaustion = failure(Some(99), FailureClass::Exhaustion);
        let mut gone = fleet();
        gone.raise_for_failures(
            &[exhaustion.clone(), exhaustion.clone()],
            "lately",
            &HashMap::new(),
        );
        assert_eq!(gone.verdict, Level::Critical);
        assert_eq!(gone.exit_code(), 2);
        let worst = &gone.namespaces[0];
        assert_eq!((worst.inode, worst.label()), (99, "gone net:[99]".to_owned()));
        assert_eq!(worst.pids, [42]);
        assert!(worst.report.pools.is_empty());
        let summary = &worst.report.summary;
        assert!(
            summary.starts_with(
                "the kernel refused 2 allocations for lack of a port lately: \
                                 client (pid 42) connect() to 10.0.0.2:80 ×2"
            ),
            "{summary}"
        );
        assert!(summary.contains("deleted before it was read"), "{summary}");
        assert_eq!(gone.namespaces[1].report.verdict, Level::Warn, "blue is not raised");

        let mut named = fleet();
        named.raise_for_failures(&[exhaustion], "lately", &HashMap::from([(99, "red".into())]));
        assert_eq!(named.namespaces[0].label(), "red");

        // Failures of no namespace (old recordings) and refusals that are not exhaustion
        // change nothing.
        let mut unchanged = fleet();
        let others = [
            failure(None, FailureClass::Exhaustion),
            failure(Some(99), FailureClass::NotLocalAddress),
        ];
        unchanged.raise_for_failures(&others, "lately", &HashMap::new());
        assert_eq!(unchanged, fleet());
    }
}
