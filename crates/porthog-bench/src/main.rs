//! porthog-bench: measures porthog against its real peers (`ss -tanp`, `netstat -tanp`,
//! `lsof -nP -iTCP`) and a bare C floor on one real socket load, in one run, and prints ratios.
//! The load (established connections plus a steady TIME_WAIT level) lives on loopback inside a
//! network namespace this program creates and always deletes. Linux only; needs root.

#[cfg(target_os = "linux")]
mod cc;
#[cfg(target_os = "linux")]
mod cli;
#[cfg(target_os = "linux")]
mod cpuload;
#[cfg(target_os = "linux")]
mod floor;
#[cfg(target_os = "linux")]
mod interrupt;
#[cfg(target_os = "linux")]
mod load;
#[cfg(target_os = "linux")]
mod machine;
#[cfg(target_os = "linux")]
mod measure;
#[cfg(target_os = "linux")]
mod netns;
#[cfg(target_os = "linux")]
mod pidns;
#[cfg(target_os = "linux")]
mod report;
#[cfg(target_os = "linux")]
mod run;
#[cfg(target_os = "linux")]
mod sockstat;
#[cfg(target_os = "linux")]
mod tools;

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("porthog-bench: only Linux is supported (it needs network namespaces and sock_diag)");
    std::process::ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    use std::process::ExitCode;
    let cli = cli::Cli::parse();
    let result = cli.validate().and_then(|opts| {
        // SAFETY: geteuid(2) cannot fail.
        anyhow::ensure!(
            unsafe { libc::geteuid() } == 0,
            "porthog-bench needs root (namespaces, sysctls, /proc/*/fd): run it with sudo"
        );
        // Outside any PID namespace of ours, where other runs' pids are visible.
        netns::sweep_stale();
        // Namespaces are named after this outer pid (inside a PID namespace we are pid 1).
        let id = std::process::id();
        if !opts.host_proc {
            // Still single-threaded here, as fork() requires.
            if let pidns::Side::Outer(code) = pidns::enter()? {
                return Ok(ExitCode::from(code));
            }
        }
        run::run(&opts, id).map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("porthog-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
