//! `--all-netns`: every network namespace collected, each analyzed into today's report, and
//! the reports combined worst first (`porthog_core::fleet`). Shared by `check` and `serve`;
//! `FleetSampler` is the same for `watch` and `record`, with each namespace's history and the
//! names of those gone since; `Source` is where their live samples come from (one namespace
//! or every one).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
pub use porthog_core::fleet::GONE_FOR_S;
use porthog_core::fleet::Names;
use porthog_core::timeline::{
    Failure, NamespaceSample, OpenedConnection, OwnerCount, RecordLine, raise_for_failures,
};
use porthog_core::{AnalyzeOptions, FleetReport, Gap, NamespaceReport};

use crate::collect::{self, CollectOptions};
use crate::sample::{Sample, Sampler, now_text};

/// Collects and judges every network namespace of the host.
pub fn report(opts: &AnalyzeOptions) -> Result<FleetReport> {
    may_enter_namespaces()?;
    let (collected, gaps) = collect::all_namespaces()?;
    Ok(judge(collected, gaps, opts))
}

/// Judges each collected namespace into today's report, combined worst first.
pub fn judge(
    collected: Vec<collect::Collected>,
    gaps: Vec<Gap>,
    opts: &AnalyzeOptions,
) -> FleetReport {
    judge_keeping(collected, gaps, opts, Vec::new())
}

/// [`judge`], keeping from `previous` (the last judgement's namespaces) the analysis of each
/// namespace whose input did not change (`Collected::unchanged`, `serve --all-netns`): for a
/// wide port range the analysis is most of a re-used namespace's cost. The kept report takes
/// the namespace's current label.
pub fn judge_keeping(
    collected: Vec<collect::Collected>,
    gaps: Vec<Gap>,
    opts: &AnalyzeOptions,
    previous: Vec<NamespaceReport>,
) -> FleetReport {
    let mut last: HashMap<u64, porthog_core::Report> =
        previous.into_iter().map(|ns| (ns.inode, ns.report)).collect();
    let namespaces = collected
        .into_iter()
        .map(|c| {
            let report = match last.remove(&c.inode) {
                Some(mut report) if c.unchanged => {
                    report.netns = c.snapshot.netns;
                    report
                }
                _ => porthog_core::analyze(&c.snapshot, opts),
            };
            NamespaceReport {
                inode: c.inode,
                name: c.name,
                container: c.container,
                pids: c.pids,
                report,
            }
        })
        .collect();
    FleetReport::new(namespaces, gaps)
}

/// setns() into a network namespace needs CAP_SYS_ADMIN: without it, say so once instead of
/// failing each namespace.
pub fn may_enter_namespaces() -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::thread::{CapabilitySet, capabilities};
        let caps = capabilities(None).map_or(CapabilitySet::empty(), |c| c.effective);
        if !caps.contains(CapabilitySet::SYS_ADMIN) {
            anyhow::bail!(
                "--all-netns enters every network namespace, which needs root (CAP_SYS_ADMIN); \
                 without it, `porthog check` reads its own namespace"
            );
        }
    }
    Ok(())
}

/// What a namespace's sample adds to its report: the connections opened since the previous
/// sample and the TIME_WAIT owners from its history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    pub opened: Vec<OpenedConnection>,
    pub time_wait_owners: Vec<OwnerCount>,
}

/// One sample of every network namespace (`watch` / `record --all-netns`).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSample {
    /// Seconds since the first sample.
    pub at: f64,
    pub time: String,
    /// Worst first, labelled as `check --all-netns` labels them.
    pub fleet: FleetReport,
    /// By namespace inode.
    pub activity: HashMap<u64, Activity>,
    /// The names of the namespaces earlier samples named and this one does not list (deleted
    /// in the last [`GONE_FOR_S`]): what a failure made in one of them is labelled.
    pub gone_names: HashMap<u64, String>,
}

impl FleetSample {
    /// The single-namespace sample of `inode`, as the one-namespace view shows it.
    pub fn namespace(&self, inode: u64) -> Option<Sample> {
        let ns = self.fleet.namespaces.iter().find(|ns| ns.inode == inode)?;
        let activity = self.activity.get(&inode).cloned().unwrap_or_default();
        Some(Sample {
            at: self.at,
            time: self.time.clone(),
            report: ns.report.clone(),
            opened: activity.opened,
            time_wait_owners: activity.time_wait_owners,
        })
    }

    /// Failures outrank the snapshot (issue 7): those since the previous sample raise the
    /// namespace they were made in, or give one deleted since an entry of its own, labelled by
    /// its last name.
    pub fn raise_for_failures(&mut self, failures: &[Failure], during: &str) {
        self.fleet.raise_for_failures(failures, during, &self.gone_names);
    }

    pub fn into_record(self) -> RecordLine {
        let FleetSample { time, fleet, mut activity, .. } = self;
        let namespaces = fleet
            .namespaces
            .into_iter()
            .map(|ns| {
                let a = activity.remove(&ns.inode).unwrap_or_default();
                NamespaceSample {
                    inode: ns.inode,
                    name: ns.name,
                    container: ns.container,
                    pids: ns.pids,
                    report: Box::new(ns.report),
                    opened: a.opened,
                    time_wait_owners: a.time_wait_owners,
                }
            })
            .collect();
        RecordLine::FleetSample { time, namespaces, gaps: fleet.gaps }
    }

    /// A recorded `fleet_sample` line, back (`at` from the replay's clock); `names` follows the
    /// recording's namespaces as a sampler does.
    pub fn from_record(
        at: f64,
        time: String,
        namespaces: Vec<NamespaceSample>,
        gaps: Vec<porthog_core::Gap>,
        names: &mut Names,
    ) -> FleetSample {
        let mut activity = HashMap::new();
        let reports = namespaces
            .into_iter()
            .map(|ns| {
                let (report, opened, time_wait_owners) = ns.split();
                activity.insert(report.inode, Activity { opened, time_wait_owners });
                report
            })
            .collect();
        let fleet = FleetReport::new(reports, gaps);
        let gone_names = names.next(&fleet, at);
        FleetSample { at, time, fleet, activity, gone_names }
    }
}

/// Where live samples come from: one namespace, or every one (`--all-netns`).
pub enum Source {
    One(Sampler),
    All(FleetSampler),
}

/// A sample of either source.
pub enum Sampled {
    One(Box<Sample>),
    All(Box<FleetSample>),
}

impl Source {
    /// Fails at once, with `all_netns`, without the privilege to enter namespaces.
    pub fn new(
        collect: CollectOptions,
        analyze: AnalyzeOptions,
        interval_s: f64,
        all_netns: bool,
    ) -> Result<Source> {
        Ok(if all_netns {
            Source::All(FleetSampler::new(analyze, interval_s)?)
        } else {
            Source::One(Sampler::new(collect, analyze, interval_s))
        })
    }

    pub fn sample(&mut self) -> Result<Sampled> {
        Ok(match self {
            Source::One(s) => Sampled::One(Box::new(s.sample()?)),
            Source::All(s) => Sampled::All(Box::new(s.sample()?)),
        })
    }
}

impl Sampled {
    /// Failures outrank the snapshot (issue 7), as a logged Windows 4231 does: those since the
    /// previous sample raise the verdict of the namespace they were made in.
    pub fn raise_for_failures(&mut self, failures: &[Failure], during: &str) {
        match self {
            Sampled::One(s) => raise_for_failures(&mut s.report, failures, during),
            Sampled::All(s) => s.raise_for_failures(failures, during),
        }
    }

    pub fn into_record(self) -> RecordLine {
        match self {
            Sampled::One(s) => s.into_record(),
            Sampled::All(s) => s.into_record(),
        }
    }
}

/// Samples every namespace, keeping one `Sampler` (owner book, previous connections) per
/// namespace for as long as it exists: a namespace that vanished drops its history, and only
/// its name is kept, for [`GONE_FOR_S`] (`FleetSample::gone_names`).
pub struct FleetSampler {
    analyze: AnalyzeOptions,
    interval_s: f64,
    samplers: HashMap<u64, Sampler>,
    names: Names,
    started: Instant,
}

impl FleetSampler {
    /// Fails at once without the privilege to enter namespaces.
    pub fn new(analyze: AnalyzeOptions, interval_s: f64) -> Result<FleetSampler> {
        may_enter_namespaces()?;
        Ok(FleetSampler::unchecked(analyze, interval_s))
    }

    /// Without the privilege check: for tests that feed `digest` themselves.
    #[cfg(test)]
    pub fn for_tests(analyze: AnalyzeOptions, interval_s: f64) -> FleetSampler {
        FleetSampler::unchecked(analyze, interval_s)
    }

    fn unchecked(analyze: AnalyzeOptions, interval_s: f64) -> FleetSampler {
        FleetSampler {
            analyze,
            interval_s,
            samplers: HashMap::new(),
            names: Names::default(),
            started: Instant::now(),
        }
    }

    pub fn sample(&mut self) -> Result<FleetSample> {
        let (collected, gaps) = collect::all_namespaces()?;
        let at = self.started.elapsed().as_secs_f64();
        Ok(self.digest(collected, gaps, at, now_text()))
    }

    /// Everything after collection (pure, tested): each namespace through its own sampler.
    pub fn digest(
        &mut self,
        collected: Vec<collect::Collected>,
        gaps: Vec<porthog_core::Gap>,
        at: f64,
        time: String,
    ) -> FleetSample {
        let mut activity = HashMap::with_capacity(collected.len());
        let mut namespaces = Vec::with_capacity(collected.len());
        for c in collected {
            let (analyze, interval_s) = (self.analyze, self.interval_s);
            let sampler = self
                .samplers
                .entry(c.inode)
                .or_insert_with(|| Sampler::new(CollectOptions::default(), analyze, interval_s));
            let s = sampler.digest(c.snapshot, at, time.clone());
            activity.insert(
                c.inode,
                Activity { opened: s.opened, time_wait_owners: s.time_wait_owners },
            );
            namespaces.push(NamespaceReport {
                inode: c.inode,
                name: c.name,
                container: c.container,
                pids: c.pids,
                report: s.report,
            });
        }
        self.samplers.retain(|inode, _| activity.contains_key(inode));
        let fleet = FleetReport::new(namespaces, gaps);
        let gone_names = self.names.next(&fleet, at);
        FleetSample { at, time, fleet, activity, gone_names }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::tests::{conn, snapshot};
    use porthog_core::State;

    fn collected(inode: u64, name: &str, ports: std::ops::Range<u16>) -> collect::Collected {
        collect::Collected {
            inode,
            name: Some(name.to_owned()),
            container: None,
            pids: vec![42],
            snapshot: snapshot(
                ports.map(|p| conn(State::Established, p, 42)).collect(),
                &[(42, "client")],
            ),
            unchanged: false,
        }
    }

    /// A namespace whose input did not change keeps its last analysis under its current label;
    /// a changed one, or one never judged, is analyzed anew.
    #[test]
    fn an_unchanged_namespace_keeps_its_analysis() {
        let opts = AnalyzeOptions::default();
        let first = judge(
            vec![collected(1, "a", 40000..40002), collected(2, "b", 40000..40002)],
            vec![],
            &opts,
        );
        let mut previous = first.namespaces;
        for ns in &mut previous {
            // A mark no analysis of these snapshots gives.
            ns.report.verdict = porthog_core::Level::Exhausted;
        }
        let mut same = collected(1, "a", 40000..40002);
        same.unchanged = true;
        same.snapshot.netns = Some("renamed".into());
        let changed = collected(2, "b", 40000..40002);
        let mut new = collected(3, "c", 40000..40002);
        new.unchanged = true;
        let fleet = judge_keeping(vec![same, changed, new], vec![], &opts, previous);
        let verdict =
            |inode| fleet.namespaces.iter().find(|ns| ns.inode == inode).unwrap().report.verdict;
        assert_eq!(verdict(1), porthog_core::Level::Exhausted, "kept");
        assert_eq!(verdict(2), porthog_core::Level::Ok, "changed: analyzed anew");
        assert_eq!(verdict(3), porthog_core::Level::Ok, "never judged: analyzed");
        let kept = fleet.namespaces.iter().find(|ns| ns.inode == 1).unwrap();
        assert_eq!(kept.report.netns.as_deref(), Some("renamed"), "the current label");
    }

    /// Worst first, each namespace with its own history (new connections are per namespace),
    /// and a namespace that vanished drops its sampler.
    #[test]
    fn each_namespace_keeps_its_own_history() {
        let mut fs = FleetSampler::for_tests(AnalyzeOptions::default(), 1.0);
        let s0 = fs.digest(
            vec![collected(1, "calm", 40000..40002), collected(2, "full", 40000..40100)],
            vec![],
            0.0,
            "t0".into(),
        );
        let labels: Vec<String> = s0.fleet.namespaces.iter().map(NamespaceReport::label).collect();
        assert_eq!(labels, ["full", "calm"], "the exhausted namespace first");
        assert_eq!(s0.fleet.verdict, porthog_core::Level::Exhausted);
        assert_eq!(s0.activity[&1].opened.len(), 2);
        let s1 = fs.digest(vec![collected(1, "calm", 40000..40003)], vec![], 1.0, "t1".into());
        assert_eq!(s1.activity[&1].opened.len(), 1, "only the one new connection of calm");
        assert_eq!(fs.samplers.len(), 1, "full vanished: its history is dropped");
        let one = s1.namespace(1).unwrap();
        assert_eq!(one.opened.len(), 1);
        let RecordLine::FleetSample { namespaces, .. } = s1.clone().into_record() else {
            panic!("a fleet sample line")
        };
        let mut names = Names::default();
        names.next(&s0.fleet, 0.0);
        let back = FleetSample::from_record(1.0, "t1".into(), namespaces, vec![], &mut names);
        assert_eq!(back, s1, "a recorded fleet sample reads back the same");
    }

    /// A namespace deleted since keeps its name for GONE_FOR_S: a failure made in it before
    /// it went gets an entry with that name, however many samples later it arrives; after
    /// that, `gone net:[INODE]`.
    #[test]
    fn failures_in_a_deleted_namespace_carry_its_last_name() {
        let mut fs = FleetSampler::for_tests(AnalyzeOptions::default(), 1.0);
        let both = || vec![collected(1, "calm", 40000..40002), collected(2, "full", 40000..40100)];
        let s0 = fs.digest(both(), vec![], 0.0, "t0".into());
        assert!(s0.gone_names.is_empty());
        let _ = fs.digest(vec![collected(1, "calm", 40000..40002)], vec![], 1.0, "t1".into());
        let mut s2 = fs.digest(vec![collected(1, "calm", 40000..40002)], vec![], 2.0, "t2".into());
        assert_eq!(s2.gone_names, HashMap::from([(2, "full".to_owned())]));
        let failure = Failure { netns: Some(2), ..crate::watch::tests::failure() };
        s2.raise_for_failures(std::slice::from_ref(&failure), "since the previous sample");
        let labels: Vec<String> = s2.fleet.namespaces.iter().map(NamespaceReport::label).collect();
        assert_eq!(labels, ["full", "calm"], "the deleted namespace, by its name, first");
        assert!(s2.fleet.namespaces[0].report.pools.is_empty());
        let late = 1.0 + GONE_FOR_S + 1.0;
        let mut s3 = fs.digest(vec![collected(1, "calm", 40000..40002)], vec![], late, "t3".into());
        assert!(s3.gone_names.is_empty(), "forgotten after GONE_FOR_S");
        s3.raise_for_failures(&[failure], "since the previous sample");
        assert_eq!(s3.fleet.namespaces[0].label(), "gone net:[2]");
        let back = fs.digest(both(), vec![], late + 1.0, "t4".into());
        assert!(back.gone_names.is_empty(), "a namespace listed again is not gone");
    }
}
