//! Stamps `porthog --version` with the commit and the build date. Reads git only when the
//! source is a git checkout with git installed; a crate tarball or a build without git says
//! "unknown commit". No network. `SOURCE_DATE_EPOCH` (reproducible builds) fixes the date.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).map_or_else(
        || "unknown commit".to_owned(),
        |hash| {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{hash}-dirty") } else { hash }
        },
    );
    println!("cargo:rustc-env=PORTHOG_COMMIT={commit}");
    println!("cargo:rustc-env=PORTHOG_BUILD_DATE={}", build_date());
    // Rebuilt when HEAD moves (a commit, a checkout), not on every edit (so "-dirty" is as of
    // the last commit or build-script change). In a worktree, refs live in the common dir.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}

/// `git ARGS` in the package's directory, its trimmed output if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The UTC date, YYYY-MM-DD, of SOURCE_DATE_EPOCH or of now.
fn build_date() -> String {
    let secs =
        std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<i64>().ok()).or_else(|| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
            i64::try_from(now.as_secs()).ok()
        });
    secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(|| "unknown date".to_owned(), |t| t.date().to_string())
}
