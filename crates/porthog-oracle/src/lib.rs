//! porthog-oracle: a differential test of porthog against the Linux kernel. Per seed it builds a
//! randomized scenario in its own network namespaces, runs `porthog check --json`, then probes
//! every pool porthog reports with real allocations of that kind until the kernel refuses, and
//! judges each claim: agreed, declared (porthog said it assumed the fact that broke) or wrong.
//! "A verdict is a claim about the kernel's next allocation: check it by making that allocation."
#![cfg(target_os = "linux")]

pub mod build;
pub mod judge;
pub mod netns;
pub mod probe;
pub mod regress;
pub mod run;
pub mod scenario;
pub mod sock;
pub mod tally;

pub use judge::Judgement;
pub use netns::Namer;
pub use run::{Oracle, Outcome, Path};
pub use scenario::{Mix, Scenario};
