//! The command line itself: help, and errors that must name what went wrong (exit code 3).
//! These need no privileges.

use std::process::Command;

use crate::porthog::{self, EXIT_ERROR, EXIT_OK};

pub fn help_lists_the_contract_options() {
    let mut cmd = Command::new(porthog::binary());
    cmd.arg("--help");
    let run = porthog::run(cmd);
    run.assert_code(EXIT_OK);
    for option in ["--json", "--netns", "--warn", "--crit", "--top", "--color"] {
        assert!(
            run.stdout().contains(option),
            "--help does not mention {option}\n{}",
            run.context()
        );
    }
}

pub fn missing_namespace_is_an_error_that_names_it() {
    let name = format!("porthog-e2e-missing-{}", std::process::id());
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["--netns", &name]);
    let run = porthog::run(cmd);
    run.assert_code(EXIT_ERROR);
    let said = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        said.contains(&name),
        "the error does not name the namespace {name}\n{}",
        run.context()
    );
}

/// Issue 8.5: an out-of-range duration is a usage error (exit 3) that says what is expected,
/// never a panic (exit 101), for every command that takes one.
pub fn durations_out_of_range_are_usage_errors() {
    for args in [
        &["record", "-o", "/nonexistent/x", "--duration", "1e20"][..],
        &["trace", "--duration", "1e20"],
        &["watch", "--interval", "1e20"],
    ] {
        let mut cmd = Command::new(porthog::binary());
        cmd.args(args);
        let run = porthog::run(cmd);
        run.assert_code(EXIT_ERROR);
        assert!(run.stderr().contains("a number of seconds from"), "{args:?}\n{}", run.context());
    }
}

/// Issue 8.13: completion scripts and the man page come from the binary itself.
pub fn completions_and_man_page() {
    for (shell, marker) in [
        ("bash", "complete -F _porthog"),
        ("zsh", "#compdef porthog"),
        ("fish", "complete -c porthog"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let mut cmd = Command::new(porthog::binary());
        cmd.args(["completions", shell]);
        let run = porthog::run(cmd);
        run.assert_code(EXIT_OK);
        assert!(run.stdout().contains(marker), "{shell}\n{}", run.context());
        assert!(run.stdout().contains("trace"), "{shell}: subcommands are completed");
    }
    let mut cmd = Command::new(porthog::binary());
    cmd.arg("man");
    let run = porthog::run(cmd);
    run.assert_code(EXIT_OK);
    assert!(run.stdout().starts_with(".ie \\n(.g .ds Aq"), "{}", run.context());
    assert!(run.stdout().contains(".TH porthog 1"), "{}", run.context());
    let mut cmd = Command::new(porthog::binary());
    cmd.arg("--version");
    let run = porthog::run(cmd);
    run.assert_code(EXIT_OK);
    assert!(run.stdout().contains(", built "), "{}", run.context());
}
