//! The kernel oracle (crates/porthog-oracle, docs/oracle.md) on a fixed set of seeds: porthog's
//! claim about every pool is checked by making the kernel's next allocations of that kind.
//! The basic mix must give 0 wrong; each known disagreement of issue 7 is a named case that
//! must still disagree until the model follows the kernel, and then is flipped to agree.

use std::sync::OnceLock;

use porthog_oracle::regress;
use porthog_oracle::tally::Tally;
use porthog_oracle::{Mix, Namer, Oracle, Scenario};

use crate::netns::Netns;
use crate::porthog::binary;

/// Seeds of the basic mix run in CI: about 0.5 s each.
const BASIC_SEEDS: std::ops::Range<u64> = 0..24;

fn oracle() -> &'static Oracle {
    static ORACLE: OnceLock<Oracle> = OnceLock::new();
    // Numbered from 1,000,000 so they never meet the Netns guard's names; the pattern
    // porthog-e2e-<pid>-<n> is what .ci/run and the guard's sweep look for.
    ORACLE.get_or_init(|| Oracle {
        porthog: binary().into(),
        namer: Namer::new("porthog-e2e-", 1_000_000),
    })
}

pub fn basic_mix_seeds_have_no_wrong_verdict() {
    let Some(_turn) = Netns::turn("basic_mix_seeds_have_no_wrong_verdict") else { return };
    let mut tally = Tally::default();
    let mut wrong = String::new();
    for seed in BASIC_SEEDS {
        let scn = Scenario::generate(seed, Mix::Basic);
        let outcome = oracle().run(&scn).unwrap_or_else(|e| panic!("seed {seed}: {e:#}"));
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

/// Runs the named regression case and checks it shows what it is expected to show today.
fn regression(name: &str) {
    let Some(_turn) = Netns::turn(name) else { return };
    let case = regress::cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no regression case {name}"));
    let outcome = oracle().run(&case.scenario).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    if let Err(e) = case.check(&outcome) {
        panic!("{e}\n{}", outcome.describe());
    }
}

/// One trial per named regression case of the oracle crate (`regress::cases()`), so no case
/// can be left without its test.
pub fn regression_trials() -> Vec<libtest_mimic::Trial> {
    regress::cases()
        .into_iter()
        .map(|case| {
            let name = case.name;
            crate::trial(format!("oracle::{name}"), crate::Needs::Namespace, move || {
                regression(name)
            })
        })
        .collect()
}
