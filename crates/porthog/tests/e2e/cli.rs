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
