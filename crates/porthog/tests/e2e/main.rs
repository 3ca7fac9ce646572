//! End-to-end tests of the porthog binary. Each scenario makes its own network namespace, starts
//! real porthog-loadgen processes that put the kernel into a known state, checks that the kernel
//! is really in that state (so a failure points at porthog, not at the setup), and asserts what
//! porthog prints about it. Privileged scenarios need root: outside CI they are skipped with a
//! message, under CI=true they fail. Namespaces and processes are cleaned up even on panic.
#![cfg(target_os = "linux")]

mod check;
mod child;
mod cli;
mod kernel_facts;
mod loadgen;
mod netns;
mod porthog;
mod record;
mod report;
mod trace;
mod watch;
