//! `watch --all-netns`: the namespace list of the live view. Every namespace of the latest
//! fleet sample, worst first, labelled as `check --all-netns` labels them; namespaces that
//! vanished since stay listed as gone for a while (a gap, not a silent drop), new ones are
//! marked. The operator selects one (Tab / n, Shift-Tab / p); unselected, the view follows the
//! worst. Pure state, like `app.rs`.

use porthog_core::Level;

use crate::fleet::{FleetSample, GONE_FOR_S};

/// Vanished namespaces listed at most (memory stays bounded when many come and go).
pub const GONE_ROWS: usize = 20;

/// Whether a listed namespace is in the latest sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Presence {
    Present,
    /// First seen in the latest sample (not the first one).
    New,
    /// In an earlier sample, not in the latest: vanished at `at` (sample time), wall clock
    /// `time`.
    Gone {
        at: f64,
        time: String,
    },
}

/// One namespace of the list.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRow {
    pub inode: u64,
    /// Its name, else `net:[INODE]`.
    pub label: String,
    /// "blue (net:[4026532281], pids 12 13)": as `check --all-netns` heads it.
    pub header: String,
    pub verdict: Level,
    /// The tightest pool, e.g. "tcp 10.0.0.1 -> 10.0.0.2:80 100 / 100 (100 %)"; "" if none.
    pub tightest: String,
    pub presence: Presence,
}

#[derive(Debug, Default)]
pub struct Fleet {
    /// Present namespaces worst first, then the gone ones, most recently gone first.
    pub rows: Vec<NamespaceRow>,
    /// The namespace the operator chose; None: the worst one is shown.
    pub selected: Option<u64>,
    /// The latest fleet sample (what a change of selection shows at once).
    pub latest: Option<Box<FleetSample>>,
    /// The namespace whose sample the panes show now.
    pub shown: Option<u64>,
}

impl Fleet {
    /// Takes a new fleet sample: rows rebuilt, gone and new marked. Returns a note when the
    /// selected namespace vanished (the view then follows the worst again).
    pub fn take(&mut self, sample: Box<FleetSample>) -> Option<String> {
        let first = self.latest.is_none();
        let mut rows: Vec<NamespaceRow> = sample
            .fleet
            .namespaces
            .iter()
            .map(|ns| {
                let known = self.rows.iter().any(|r| r.inode == ns.inode);
                NamespaceRow {
                    inode: ns.inode,
                    label: ns.label(),
                    header: crate::present::fleet::header(ns),
                    verdict: ns.report.verdict,
                    tightest: ns.report.pools.first().map_or(String::new(), |p| {
                        format!(
                            "{}  {} / {} ({:.0} %)",
                            p.label(),
                            porthog_core::report::grouped(p.used),
                            porthog_core::report::grouped(p.capacity),
                            p.percent
                        )
                    }),
                    presence: if first || known { Presence::Present } else { Presence::New },
                }
            })
            .collect();
        let present = |inode: u64| rows.iter().any(|r| r.inode == inode);
        let mut gone: Vec<NamespaceRow> = self
            .rows
            .iter()
            .filter(|r| !present(r.inode))
            .map(|r| {
                let presence = match &r.presence {
                    Presence::Gone { .. } => r.presence.clone(),
                    _ => Presence::Gone { at: sample.at, time: sample.time.clone() },
                };
                NamespaceRow { presence, ..r.clone() }
            })
            .filter(
                |r| matches!(r.presence, Presence::Gone { at, .. } if sample.at - at <= GONE_FOR_S),
            )
            .collect();
        gone.truncate(GONE_ROWS);
        let note = match self.selected {
            Some(inode) if !present(inode) => {
                self.selected = None;
                let label = self.rows.iter().find(|r| r.inode == inode).map(|r| r.label.clone());
                Some(format!(
                    "network namespace {} is gone; showing the worst one",
                    label.unwrap_or_else(|| format!("net:[{inode}]"))
                ))
            }
            _ => None,
        };
        rows.extend(gone);
        self.rows = rows;
        self.latest = Some(sample);
        note
    }

    /// The namespace to show: the selected one, else the worst.
    pub fn target(&self) -> Option<u64> {
        self.selected.or_else(|| self.rows.iter().find(|r| !r.is_gone()).map(|r| r.inode))
    }

    /// Moves the selection `step` rows (1 next, -1 previous) among present namespaces.
    pub fn select(&mut self, step: isize) {
        let present: Vec<u64> =
            self.rows.iter().filter(|r| !r.is_gone()).map(|r| r.inode).collect();
        if present.is_empty() {
            return;
        }
        let at = self.target().and_then(|t| present.iter().position(|&i| i == t)).unwrap_or(0);
        let n = present.len() as isize;
        self.selected = Some(present[(at as isize + step).rem_euclid(n) as usize]);
    }

    /// The label of a namespace listed (present or gone).
    pub fn label(&self, inode: u64) -> Option<&str> {
        self.rows.iter().find(|r| r.inode == inode).map(|r| r.label.as_str())
    }

    /// How many namespaces the latest sample holds.
    pub fn present(&self) -> usize {
        self.rows.iter().filter(|r| !r.is_gone()).count()
    }
}

impl NamespaceRow {
    pub fn is_gone(&self) -> bool {
        matches!(self.presence, Presence::Gone { .. })
    }

    /// "NEW", "GONE at 02:11:05" or "".
    pub fn presence_text(&self) -> String {
        match &self.presence {
            Presence::Present => String::new(),
            Presence::New => "NEW".to_owned(),
            Presence::Gone { time, .. } => format!("GONE at {}", super::draw::clock(time)),
        }
    }
}
