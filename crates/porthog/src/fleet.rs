//! `--all-netns`: every network namespace collected, each analyzed into today's report, and
//! the reports combined worst first (`porthog_core::fleet`). Shared by `check` and `serve`;
//! `FleetSampler` is the same for `watch` and `record`, with each namespace's history.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use porthog_core::timeline::{NamespaceSample, OpenedConnection, OwnerCount, RecordLine};
use porthog_core::{AnalyzeOptions, FleetReport, NamespaceReport};

use crate::collect::{self, CollectOptions};
use crate::sample::{Sample, Sampler, now_text};

/// Collects and judges every network namespace of the host.
pub fn report(opts: &AnalyzeOptions) -> Result<FleetReport> {
    may_enter_namespaces()?;
    let (collected, gaps) = collect::all_namespaces()?;
    let namespaces = collected
        .into_iter()
        .map(|c| NamespaceReport {
            inode: c.inode,
            name: c.name,
            container: c.container,
            pids: c.pids,
            report: porthog_core::analyze(&c.snapshot, opts),
        })
        .collect();
    Ok(FleetReport::new(namespaces, gaps))
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

    /// A recorded `fleet_sample` line, back (`at` from the replay's clock).
    pub fn from_record(
        at: f64,
        time: String,
        namespaces: Vec<NamespaceSample>,
        gaps: Vec<porthog_core::Gap>,
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
        FleetSample { at, time, fleet: FleetReport::new(reports, gaps), activity }
    }
}

/// Samples every namespace, keeping one `Sampler` (owner book, previous connections) per
/// namespace for as long as it exists: a namespace that vanished drops its history.
pub struct FleetSampler {
    analyze: AnalyzeOptions,
    interval_s: f64,
    samplers: HashMap<u64, Sampler>,
    started: Instant,
}

impl FleetSampler {
    /// Fails at once without the privilege to enter namespaces.
    pub fn new(analyze: AnalyzeOptions, interval_s: f64) -> Result<FleetSampler> {
        may_enter_namespaces()?;
        Ok(FleetSampler { analyze, interval_s, samplers: HashMap::new(), started: Instant::now() })
    }

    /// Without the privilege check: for tests that feed `digest` themselves.
    #[cfg(test)]
    pub fn for_tests(analyze: AnalyzeOptions, interval_s: f64) -> FleetSampler {
        FleetSampler { analyze, interval_s, samplers: HashMap::new(), started: Instant::now() }
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
        FleetSample { at, time, fleet: FleetReport::new(namespaces, gaps), activity }
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
        }
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
        let back = FleetSample::from_record(1.0, "t1".into(), namespaces, vec![]);
        assert_eq!(back, s1, "a recorded fleet sample reads back the same");
    }
}
