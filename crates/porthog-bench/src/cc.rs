//! Builds the benchmark's two C helpers (floor.c, timed.c beside Cargo.toml) with `cc -O2` into
//! the run's scratch directory at start, so they are the same plain code on every machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Writes `source` to `dir/name.c` and compiles it to `dir/name` with `flags` added.
pub fn compile(dir: &Path, name: &str, source: &str, flags: &[&str]) -> Result<PathBuf> {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&src, source).with_context(|| format!("writing {}", src.display()))?;
    let out = Command::new("cc")
        .args(["-O2", "-Wall"])
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
        .context("running cc (install a C compiler: apt-get install gcc libc6-dev)")?;
    if !out.status.success() {
        bail!("cc {name}.c failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(bin)
}
