//! `porthog-oracle`: runs seeds (or the named regression cases) against a porthog binary and
//! prints, per scenario, what porthog claimed and what the kernel granted, then the tally.
//! Needs root (network namespaces). See docs/oracle.md.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    match linux::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("porthog-oracle: {e:#}");
            std::process::ExitCode::from(3)
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("porthog-oracle: Linux only (it builds scenarios in network namespaces)");
    std::process::ExitCode::from(3)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use anyhow::{Context, Result, bail};
    use clap::Parser;
    use porthog_oracle::regress::{self, Expect};
    use porthog_oracle::tally::Tally;
    use porthog_oracle::{Mix, Namer, Oracle, Path, Scenario};

    /// Differential test of porthog against the kernel: builds a scenario per seed in its own
    /// network namespaces, runs `porthog check --json`, probes every reported pool with real
    /// allocations until the kernel refuses, and counts agreed / declared / wrong.
    #[derive(Parser)]
    #[command(name = "porthog-oracle")]
    struct Args {
        /// Seeds to run: "N", "A..B" (B excluded) or a comma list.
        #[arg(long, default_value = "0..20")]
        seeds: String,
        /// Ingredients: "basic" (what today's model must get right) or "full" (all of issue 7).
        #[arg(long, default_value = "full")]
        mix: String,
        /// Run the named regression cases instead of seeds.
        #[arg(long)]
        regressions: bool,
        /// porthog's collector to test: "bpf" (the kernel's facts through BPF iterators; a
        /// report from any other source is a setup error), "fallback" (sock_diag and /proc,
        /// porthog run with --no-bpf) or "both" (every seed on each, BPF first).
        #[arg(long, default_value = "both")]
        path: String,
        /// The porthog binary under test [default: `porthog` next to this program].
        #[arg(long)]
        porthog: Option<PathBuf>,
        /// Start no new scenario after this many seconds on each path (the tally covers those
        /// run).
        #[arg(long, value_name = "SECONDS")]
        r#for: Option<u64>,
        /// Print every scenario, not only those that disagree.
        #[arg(short, long)]
        verbose: bool,
    }

    pub fn main() -> Result<ExitCode> {
        let args = Args::parse();
        if !rustix_is_root() {
            bail!("needs root: it creates network namespaces (run with sudo)");
        }
        let porthog = match args.porthog.clone() {
            Some(p) => p,
            None => std::env::current_exe()?
                .parent()
                .context("this program's directory")?
                .join("porthog"),
        };
        if !porthog.is_file() {
            bail!(
                "no porthog binary at {}: build it (cargo build -p porthog) or pass --porthog PATH",
                porthog.display()
            );
        }
        let paths = Path::parse_list(&args.path)
            .with_context(|| format!("--path {:?}: use bpf, fallback or both", args.path))?;
        let mix = Mix::parse(&args.mix)
            .with_context(|| format!("--mix {:?}: use basic or full", args.mix))?;
        let seeds = parse_seeds(&args.seeds)?;
        let namer = Namer::new("porthog-oracle-", 0);
        namer.sweep_stale();
        let mut oracle = Oracle { porthog, namer, path: Path::Bpf };
        let mut failed = false;
        for path in paths {
            oracle.path = path;
            println!("== {} path", path.name());
            failed |= if args.regressions {
                regressions(&oracle, args.verbose)?
            } else {
                run_seeds(&oracle, &args, mix, &seeds, std::time::Instant::now())
            };
        }
        Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
    }

    /// The named cases on the oracle's path; true when one showed what it should not.
    fn regressions(oracle: &Oracle, verbose: bool) -> Result<bool> {
        let mut tally = Tally::default();
        let mut unexpected = 0;
        for case in regress::cases() {
            let outcome = oracle.run(&case.scenario)?;
            let verdict = case.check(&outcome);
            unexpected += usize::from(verdict.is_err());
            let expect = case.expect_on(oracle.path);
            match &verdict {
                Ok(()) => println!(
                    "{}: as expected ({expect:?} on its {:?} pools)",
                    case.name, case.about
                ),
                Err(e) => println!("{}: UNEXPECTED: {e}", case.name),
            }
            if verbose || verdict.is_err() || expect != Expect::Agree {
                print!("{}", outcome.describe());
            }
            tally.add(&outcome);
        }
        print!("{}", tally.render());
        Ok(unexpected > 0)
    }

    /// The seeds on the oracle's path until the time budget is spent; true when anything was
    /// wrong or a scenario could not be run.
    fn run_seeds(
        oracle: &Oracle,
        args: &Args,
        mix: Mix,
        seeds: &[u64],
        started: std::time::Instant,
    ) -> bool {
        let mut tally = Tally::default();
        for &seed in seeds {
            if args.r#for.is_some_and(|budget| started.elapsed().as_secs() >= budget) {
                println!(
                    "time budget of {} s spent: stopping before seed {seed}",
                    args.r#for.unwrap_or(0)
                );
                break;
            }
            let scn = Scenario::generate(seed, mix);
            match oracle.run(&scn) {
                Ok(outcome) => {
                    if args.verbose || !outcome.all_agree() {
                        print!("{}", outcome.describe());
                    } else {
                        println!(
                            "seed {seed}: {} pools agreed ({:.2} s)",
                            outcome.checks.len(),
                            outcome.elapsed.as_secs_f64()
                        );
                    }
                    tally.add(&outcome);
                }
                Err(e) => {
                    println!("seed {seed}: ERROR {e:#}");
                    tally.add_error(seed, &e);
                }
            }
        }
        println!("{} path:", oracle.path.name());
        print!("{}", tally.render());
        tally.wrong > 0 || !tally.errors.is_empty()
    }

    fn parse_seeds(text: &str) -> Result<Vec<u64>> {
        let bad = || format!("--seeds {text:?}: use N, A..B or N,M,...");
        if let Some((a, b)) = text.split_once("..") {
            let (a, b): (u64, u64) = (a.parse().with_context(bad)?, b.parse().with_context(bad)?);
            return Ok((a..b).collect());
        }
        text.split(',').map(|s| s.trim().parse().with_context(bad)).collect()
    }

    fn rustix_is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }
}
