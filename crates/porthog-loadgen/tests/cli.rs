//! The binary runs and says what it does. Also the reason `cargo test --workspace` builds
//! `target/<profile>/porthog-loadgen` (cargo builds a package's binaries for its integration
//! tests), which porthog's e2e tests and porthog-bench start from there.

use std::process::Command;

#[test]
fn help_names_the_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_porthog-loadgen"))
        .arg("--help")
        .output()
        .expect("porthog-loadgen runs");
    let text = String::from_utf8_lossy(&out.stdout);
    if cfg!(target_os = "linux") {
        assert!(out.status.success(), "{out:?}");
        for sub in ["connect", "serve", "bind"] {
            assert!(text.contains(sub), "{sub} missing from:\n{text}");
        }
    } else {
        assert!(!out.status.success());
    }
}
