//! Counting many scenarios: agreed / declared / wrong, and each distinct disagreement class
//! with the smallest scenario that reproduces it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::judge::Judgement;
use crate::run::Outcome;

/// One class of disagreement.
#[derive(Debug, Clone)]
pub struct Class {
    pub checks: usize,
    pub declared: usize,
    /// The seed of the smallest scenario (fewest steps) that shows it.
    pub seed: u64,
    steps: usize,
}

#[derive(Debug, Default)]
pub struct Tally {
    pub scenarios: usize,
    pub checks: usize,
    pub agreed: usize,
    pub declared: usize,
    pub wrong: usize,
    pub unprobed: usize,
    /// Scenarios that could not be run to the end (setup, porthog or probe failure).
    pub errors: Vec<(u64, String)>,
    pub classes: BTreeMap<String, Class>,
}

impl Tally {
    pub fn add(&mut self, o: &Outcome) {
        self.scenarios += 1;
        self.unprobed += o.unprobed.len();
        for c in &o.checks {
            self.checks += 1;
            match c.judgement {
                Judgement::Agreed => self.agreed += 1,
                Judgement::Declared(_) => self.declared += 1,
                Judgement::Wrong => self.wrong += 1,
            }
            let Some(class) = &c.class else { continue };
            let steps = o.scenario.steps.len();
            let entry = self.classes.entry(class.clone()).or_insert(Class {
                checks: 0,
                declared: 0,
                seed: o.scenario.seed,
                steps,
            });
            entry.checks += 1;
            entry.declared += usize::from(matches!(c.judgement, Judgement::Declared(_)));
            if steps < entry.steps {
                entry.seed = o.scenario.seed;
                entry.steps = steps;
            }
        }
    }

    pub fn add_error(&mut self, seed: u64, error: &anyhow::Error) {
        self.errors.push((seed, error.root_cause().to_string()));
    }

    /// The summary printed at the end of a run (and pasted into docs/oracle.md).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenarios: {}  pools probed: {}  agreed: {}  declared: {}  wrong: {}  not probed: {}  errors: {}",
            self.scenarios + self.errors.len(),
            self.checks,
            self.agreed,
            self.declared,
            self.wrong,
            self.unprobed,
            self.errors.len()
        );
        if !self.classes.is_empty() {
            let _ =
                writeln!(out, "disagreement classes (checks, of them declared, smallest seed):");
            for (name, c) in &self.classes {
                let _ = writeln!(
                    out,
                    "  {name}: {} ({} declared), seed {}",
                    c.checks, c.declared, c.seed
                );
            }
        }
        for (seed, e) in self.errors.iter().take(20) {
            let first = e.lines().next().unwrap_or("");
            let _ = writeln!(out, "  error, seed {seed}: {first}");
        }
        out
    }
}
