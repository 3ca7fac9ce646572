//! The kernel oracle (crates/porthog-oracle, docs/oracle.md) on a fixed set of seeds: porthog's
//! claim about every pool is checked by making the kernel's next allocations of that kind.
//! Both collectors are tested: the BPF path (porthog's default as root) and the sock_diag
//! fallback (`--no-bpf`). The basic mix must give 0 wrong on each; each named case of issue 7
//! must show what it is expected to show on each path (agree, or declared where the fallback
//! cannot see the fact), and its expectation is raised when porthog does better.

use std::sync::OnceLock;

use porthog_oracle::regress;
use porthog_oracle::tally::Tally;
use porthog_oracle::{Mix, Namer, Oracle, Path, Scenario};

use crate::netns::Netns;
use crate::porthog::binary;

/// Seeds of the basic mix run in CI on each path: about 0.5 s each.
const BASIC_SEEDS: std::ops::Range<u64> = 0..24;

fn oracle(path: Path) -> &'static Oracle {
    static BPF: OnceLock<Oracle> = OnceLock::new();
    static FALLBACK: OnceLock<Oracle> = OnceLock::new();
    let (cell, first) = match path {
        Path::Bpf => (&BPF, 1_000_000),
        Path::Fallback => (&FALLBACK, 2_000_000),
    };
    // Numbered from 1,000,000 so they never meet the Netns guard's names; the pattern
    // porthog-e2e-<pid>-<n> is what .ci/run and the guard's sweep look for.
    cell.get_or_init(|| Oracle {
        porthog: binary().into(),
        namer: Namer::new("porthog-e2e-", first),
        path,
    })
}

pub fn basic_mix_seeds_have_no_wrong_verdict() {
    basic_mix(Path::Bpf, "basic_mix_seeds_have_no_wrong_verdict");
}

pub fn basic_mix_seeds_have_no_wrong_verdict_on_fallback() {
    basic_mix(Path::Fallback, "basic_mix_seeds_have_no_wrong_verdict_on_fallback");
}

fn basic_mix(path: Path, name: &str) {
    let Some(_turn) = Netns::turn(name) else { return };
    let mut tally = Tally::default();
    let mut wrong = String::new();
    for seed in BASIC_SEEDS {
        let scn = Scenario::generate(seed, Mix::Basic);
        let outcome = oracle(path).run(&scn).unwrap_or_else(|e| panic!("seed {seed}: {e:#}"));
        if outcome.wrong() > 0 {
            wrong.push_str(&outcome.describe());
        }
        tally.add(&outcome);
    }
    eprintln!("{}", tally.render());
    // Every scenario has at least a TCP bind() and a UDP pool.
    assert!(tally.checks >= 2 * BASIC_SEEDS.count(), "too few pools probed\n{}", tally.render());
    assert_eq!(tally.unprobed, 0, "pools without a probe\n{}", tally.render());
    assert_eq!(
        tally.wrong,
        0,
        "porthog's verdict disagrees with the kernel:\n{wrong}\n{}",
        tally.render()
    );
}

/// Runs the named regression case on `path` and checks it shows what it is expected to show
/// there today.
fn regression(name: &str, path: Path) {
    let Some(_turn) = Netns::turn(name) else { return };
    let case = regress::cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no regression case {name}"));
    let outcome = oracle(path).run(&case.scenario).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    if let Err(e) = case.check(&outcome) {
        panic!("{e}\n{}", outcome.describe());
    }
}

/// Two trials per named regression case of the oracle crate (`regress::cases()`), one per
/// path, so no case can be left without its test: `oracle::NAME` (BPF) and
/// `oracle::fallback::NAME`.
pub fn regression_trials() -> Vec<libtest_mimic::Trial> {
    regress::cases()
        .into_iter()
        .flat_map(|case| {
            let name = case.name;
            [
                crate::trial(format!("oracle::{name}"), crate::Needs::Namespace, move || {
                    regression(name, Path::Bpf)
                }),
                crate::trial(
                    format!("oracle::fallback::{name}"),
                    crate::Needs::Namespace,
                    move || regression(name, Path::Fallback),
                ),
            ]
        })
        .collect()
}
