//! End-to-end tests of the porthog binary. Each scenario makes its own network namespace, starts
//! real porthog-loadgen processes that put the kernel into a known state, checks that the kernel
//! is really in that state (so a failure points at porthog, not at the setup), and asserts what
//! porthog prints about it. Privileged scenarios need root and `ip netns`: where they cannot run
//! (not root, outside CI) they are listed as ignored, so the summary counts them as not run;
//! under CI=true they run and fail. Namespaces and processes are cleaned up even on panic.
//!
//! The harness is libtest-mimic (`harness = false`): it can decide at run time which tests are
//! ignored, and prints libtest's own summary line.

#[cfg(target_os = "linux")]
mod capture;
#[cfg(target_os = "linux")]
mod check;
#[cfg(target_os = "linux")]
mod child;
#[cfg(target_os = "linux")]
mod cli;
#[cfg(target_os = "linux")]
mod events;
#[cfg(target_os = "linux")]
mod fleet;
#[cfg(target_os = "linux")]
mod fleet_live;
#[cfg(target_os = "linux")]
mod kernel_cases;
#[cfg(target_os = "linux")]
mod kernel_facts;
#[cfg(target_os = "linux")]
mod loadgen;
#[cfg(target_os = "linux")]
mod netns;
#[cfg(target_os = "linux")]
mod oracle;
#[cfg(target_os = "linux")]
mod porthog;
#[cfg(target_os = "linux")]
mod record;
#[cfg(target_os = "linux")]
mod report;
#[cfg(target_os = "linux")]
mod serve;
#[cfg(target_os = "linux")]
mod signal;
#[cfg(target_os = "linux")]
mod snat;
#[cfg(target_os = "linux")]
mod trace;
#[cfg(target_os = "linux")]
mod watch;
#[cfg(target_os = "linux")]
mod wine;

#[cfg(target_os = "linux")]
use std::process::{Command, ExitCode};

#[cfg(target_os = "linux")]
use libtest_mimic::{Arguments, Failed, Trial};

/// Network namespaces are Linux's: elsewhere there is nothing to run.
#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), Vec::new()).exit_code()
}

#[cfg(target_os = "linux")]
/// What a test needs from the machine; without it, it is ignored (outside CI).
#[derive(Clone, Copy)]
enum Needs {
    Nothing,
    /// Root and a working `ip netns` (its own network namespace).
    Namespace,
    /// A namespace, and tmux to give `watch` a terminal.
    NamespaceAndTmux,
    /// A namespace, wine, mingw-w64 and the cross-built porthog.exe (issue 10).
    NamespaceAndWine,
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Arguments::from_args();
    let trials = vec![
        trial("harness::every_test_is_a_registered_trial", Needs::Nothing, every_test_is_a_trial),
        trial(
            "kernel_facts::bind_buckets_tell_bind_from_connect",
            Needs::Namespace,
            kernel_facts::bind_buckets_tell_bind_from_connect,
        ),
        trial(
            "kernel_facts::time_wait_timestamps_are_what_each_socket_recorded",
            Needs::Namespace,
            kernel_facts::time_wait_timestamps_are_what_each_socket_recorded,
        ),
        trial(
            "kernel_facts::time_wait_bound_to_the_loopback_device",
            Needs::Namespace,
            kernel_facts::time_wait_bound_to_the_loopback_device,
        ),
        trial(
            "kernel_facts::udp_family_and_v6only",
            Needs::Namespace,
            kernel_facts::udp_family_and_v6only,
        ),
        trial(
            "kernel_facts::both_paths_see_the_same_sockets_and_owners_as_ss",
            Needs::Namespace,
            kernel_facts::both_paths_see_the_same_sockets_and_owners_as_ss,
        ),
        trial(
            "kernel_facts::a_killed_porthog_leaves_no_program_in_the_kernel",
            Needs::Namespace,
            kernel_facts::a_killed_porthog_leaves_no_program_in_the_kernel,
        ),
        trial(
            "kernel_facts::without_kernel_btf_the_note_says_what_to_do",
            Needs::Namespace,
            kernel_facts::without_kernel_btf_the_note_says_what_to_do,
        ),
        trial(
            "fleet::all_netns_finds_every_kind_of_namespace",
            Needs::Namespace,
            fleet::all_netns_finds_every_kind_of_namespace,
        ),
        trial(
            "fleet_live::watch_all_netns_once_lists_the_exhausted_namespace_first",
            Needs::Namespace,
            fleet_live::watch_all_netns_once_lists_the_exhausted_namespace_first,
        ),
        trial(
            "fleet_live::record_all_netns_counts_failures_in_their_namespace_and_analyze_names_the_worst",
            Needs::Namespace,
            fleet_live::record_all_netns_counts_failures_in_their_namespace_and_analyze_names_the_worst,
        ),
        trial(
            "fleet_live::all_netns_without_root_says_what_it_needs",
            Needs::Namespace,
            fleet_live::all_netns_without_root_says_what_it_needs,
        ),
        trial(
            "fleet_live::serve_all_netns_labels_failures_with_their_namespace",
            Needs::Namespace,
            fleet_live::serve_all_netns_labels_failures_with_their_namespace,
        ),
        trial(
            "fleet_live::serve_all_netns_keeps_the_failures_of_a_deleted_namespace",
            Needs::Namespace,
            fleet_live::serve_all_netns_keeps_the_failures_of_a_deleted_namespace,
        ),
        trial(
            "serve::serve_exports_every_namespace_to_a_real_prometheus",
            Needs::Namespace,
            serve::serve_exports_every_namespace_to_a_real_prometheus,
        ),
        trial(
            "serve::serve_sees_an_idle_namespace_gain_sockets",
            Needs::Namespace,
            serve::serve_sees_an_idle_namespace_gain_sockets,
        ),
        trial(
            "signal::serve_reuses_an_idle_namespace_then_sees_it_fill",
            Needs::Namespace,
            signal::serve_reuses_an_idle_namespace_then_sees_it_fill,
        ),
        trial(
            "signal::serve_sees_time_wait_expire_in_a_reused_namespace",
            Needs::Namespace,
            signal::serve_sees_time_wait_expire_in_a_reused_namespace,
        ),
        trial(
            "signal::reused_time_wait_aging_matches_the_kernel",
            Needs::Namespace,
            signal::reused_time_wait_aging_matches_the_kernel,
        ),
        trial(
            "signal::serve_sees_a_narrowed_range_in_a_reused_namespace",
            Needs::Namespace,
            signal::serve_sees_a_narrowed_range_in_a_reused_namespace,
        ),
        trial(
            "signal::signal_leaves_nothing_after_sigkill",
            Needs::Namespace,
            signal::signal_leaves_nothing_after_sigkill,
        ),
        trial(
            "serve::serve_on_a_taken_port_says_so",
            Needs::Nothing,
            serve::serve_on_a_taken_port_says_so,
        ),
        trial(
            "serve::serve_unprivileged_exports_pools",
            Needs::Namespace,
            serve::serve_unprivileged_exports_pools,
        ),
        trial(
            "serve::serve_survives_a_scrape_storm",
            Needs::Nothing,
            serve::serve_survives_a_scrape_storm,
        ),
        trial(
            "serve::serve_counts_allocation_failures",
            Needs::Namespace,
            serve::serve_counts_allocation_failures,
        ),
        trial(
            "snat::snat_pool_is_exhausted_and_insert_failures_are_evidence",
            Needs::Namespace,
            snat::snat_pool_is_exhausted_and_insert_failures_are_evidence,
        ),
        trial(
            "snat::ctnetlink_unavailable_is_a_gap",
            Needs::Namespace,
            snat::ctnetlink_unavailable_is_a_gap,
        ),
        trial(
            "oracle::basic_mix_seeds_have_no_wrong_verdict",
            Needs::Namespace,
            oracle::basic_mix_seeds_have_no_wrong_verdict,
        ),
        trial(
            "oracle::basic_mix_seeds_have_no_wrong_verdict_on_fallback",
            Needs::Namespace,
            oracle::basic_mix_seeds_have_no_wrong_verdict_on_fallback,
        ),
        trial(
            "cli::durations_out_of_range_are_usage_errors",
            Needs::Nothing,
            cli::durations_out_of_range_are_usage_errors,
        ),
        trial("cli::completions_and_man_page", Needs::Nothing, cli::completions_and_man_page),
        trial(
            "record::record_starts_the_tracer_as_root_unless_no_trace",
            Needs::Namespace,
            record::record_starts_the_tracer_as_root_unless_no_trace,
        ),
        trial(
            "record::watch_starts_the_tracer_as_root_unless_no_trace",
            Needs::Namespace,
            record::watch_starts_the_tracer_as_root_unless_no_trace,
        ),
        trial(
            "trace::trace_prints_its_summary_on_sigterm_and_sighup",
            Needs::Namespace,
            trace::trace_prints_its_summary_on_sigterm_and_sighup,
        ),
        trial(
            "kernel_cases::case1_bind_before_connect_ports_leave_every_connect_pool",
            Needs::Namespace,
            kernel_cases::case1_bind_before_connect_ports_leave_every_connect_pool,
        ),
        trial(
            "kernel_cases::case1_bind_before_connect_time_wait_is_not_reusable",
            Needs::Namespace,
            kernel_cases::case1_bind_before_connect_time_wait_is_not_reusable,
        ),
        trial(
            "kernel_cases::case2_time_wait_reuse_follows_recorded_timestamps_not_todays_sysctl",
            Needs::Namespace,
            kernel_cases::case2_time_wait_reuse_follows_recorded_timestamps_not_todays_sysctl,
        ),
        trial(
            "kernel_cases::case2_a_peer_without_timestamps_makes_time_wait_unreusable",
            Needs::Namespace,
            kernel_cases::case2_a_peer_without_timestamps_makes_time_wait_unreusable,
        ),
        trial(
            "kernel_cases::case3_bind_pools_are_per_family_and_address",
            Needs::Namespace,
            kernel_cases::case3_bind_pools_are_per_family_and_address,
        ),
        trial(
            "kernel_cases::case3_udp_autobind_pools_are_per_family",
            Needs::Namespace,
            kernel_cases::case3_udp_autobind_pools_are_per_family,
        ),
        trial(
            "kernel_cases::case4_tw_reuse_loopback_covers_sockets_bound_to_lo",
            Needs::Namespace,
            kernel_cases::case4_tw_reuse_loopback_covers_sockets_bound_to_lo,
        ),
        trial(
            "kernel_cases::case6_a_full_bind_pool_with_an_ephemeral_listener_is_not_latent",
            Needs::Namespace,
            kernel_cases::case6_a_full_bind_pool_with_an_ephemeral_listener_is_not_latent,
        ),
        trial(
            "kernel_cases::case7_a_close_wait_leak_is_headlined_as_a_leak",
            Needs::Namespace,
            kernel_cases::case7_a_close_wait_leak_is_headlined_as_a_leak,
        ),
        trial(
            "record::case7_analyze_of_a_recording_counts_its_failures",
            Needs::Namespace,
            record::case7_analyze_of_a_recording_counts_its_failures,
        ),
        trial(
            "trace::case5_trace_lists_non_local_and_taken_port_binds_as_not_exhaustion",
            Needs::Namespace,
            trace::case5_trace_lists_non_local_and_taken_port_binds_as_not_exhaustion,
        ),
        trial(
            "capture::every_capture_command_agrees_with_check_on_the_same_state",
            Needs::Namespace,
            capture::every_capture_command_agrees_with_check_on_the_same_state,
        ),
        trial(
            "check::exhaustion_names_the_client_and_the_destination",
            Needs::Namespace,
            check::exhaustion_names_the_client_and_the_destination,
        ),
        trial("check::a_light_load_is_ok", Needs::Namespace, check::a_light_load_is_ok),
        trial(
            "check::two_destinations_have_a_pool_each",
            Needs::Namespace,
            check::two_destinations_have_a_pool_each,
        ),
        trial(
            "check::time_wait_without_reuse_exhausts_the_pool",
            Needs::Namespace,
            check::time_wait_without_reuse_exhausts_the_pool,
        ),
        trial(
            "check::time_wait_reusable_on_loopback_is_not_a_problem",
            Needs::Namespace,
            check::time_wait_reusable_on_loopback_is_not_a_problem,
        ),
        trial(
            "check::listener_inside_the_range_shrinks_every_pool",
            Needs::Namespace,
            check::listener_inside_the_range_shrinks_every_pool,
        ),
        trial(
            "check::bound_sockets_shrink_every_pool",
            Needs::Namespace,
            check::bound_sockets_shrink_every_pool,
        ),
        trial(
            "check::unprivileged_run_reports_unattributed_sockets",
            Needs::Namespace,
            check::unprivileged_run_reports_unattributed_sockets,
        ),
        trial(
            "cli::help_lists_the_contract_options",
            Needs::Nothing,
            cli::help_lists_the_contract_options,
        ),
        trial(
            "cli::missing_namespace_is_an_error_that_names_it",
            Needs::Nothing,
            cli::missing_namespace_is_an_error_that_names_it,
        ),
        trial(
            "events::event_driven_record_agrees_with_check",
            Needs::Namespace,
            events::event_driven_record_agrees_with_check,
        ),
        trial(
            "events::event_driven_record_sees_an_exhausted_pool",
            Needs::Namespace,
            events::event_driven_record_sees_an_exhausted_pool,
        ),
        trial(
            "record::a_recording_names_the_owner_of_time_wait_after_it_exited",
            Needs::Namespace,
            record::a_recording_names_the_owner_of_time_wait_after_it_exited,
        ),
        trial(
            "record::a_recording_without_bpf_finds_a_new_process_within_one_sample",
            Needs::Namespace,
            record::a_recording_without_bpf_finds_a_new_process_within_one_sample,
        ),
        trial(
            "record::record_stops_cleanly_on_sigint_sigterm_and_sighup",
            Needs::Nothing,
            record::record_stops_cleanly_on_sigint_sigterm_and_sighup,
        ),
        trial(
            "record::a_recording_holds_every_refused_connect",
            Needs::Namespace,
            record::a_recording_holds_every_refused_connect,
        ),
        trial(
            "record::watch_frames_show_the_refused_connects",
            Needs::Namespace,
            record::watch_frames_show_the_refused_connects,
        ),
        trial(
            "trace::trace_catches_every_refused_connect_with_pid_and_destination",
            Needs::Namespace,
            trace::trace_catches_every_refused_connect_with_pid_and_destination,
        ),
        trial(
            "trace::trace_names_the_owner_of_time_wait_after_it_exited",
            Needs::Namespace,
            trace::trace_names_the_owner_of_time_wait_after_it_exited,
        ),
        trial(
            "trace::trace_attributes_connections_opened_before_it_started",
            Needs::Namespace,
            trace::trace_attributes_connections_opened_before_it_started,
        ),
        trial(
            "trace::trace_follows_ipv6_connections",
            Needs::Namespace,
            trace::trace_follows_ipv6_connections,
        ),
        trial(
            "trace::trace_catches_bind_failures",
            Needs::Namespace,
            trace::trace_catches_bind_failures,
        ),
        trial(
            "trace::trace_refusals_make_the_verdict_critical_even_when_the_pool_is_free_again",
            Needs::Namespace,
            trace::trace_refusals_make_the_verdict_critical_even_when_the_pool_is_free_again,
        ),
        trial(
            "trace::trace_ends_after_its_duration_with_a_text_summary",
            Needs::Namespace,
            trace::trace_ends_after_its_duration_with_a_text_summary,
        ),
        trial(
            "trace::trace_without_root_says_what_it_needs",
            Needs::Nothing,
            trace::trace_without_root_says_what_it_needs,
        ),
        trial(
            "watch::watch_all_netns_in_a_terminal_lists_selects_and_marks_a_deleted_namespace_gone",
            Needs::NamespaceAndTmux,
            watch::watch_all_netns_in_a_terminal_lists_selects_and_marks_a_deleted_namespace_gone,
        ),
        trial(
            "watch::watch_in_a_terminal_shows_the_verdict_and_the_client_and_quits_on_q",
            Needs::NamespaceAndTmux,
            watch::watch_in_a_terminal_shows_the_verdict_and_the_client_and_quits_on_q,
        ),
        trial(
            "wine::exe_sees_the_sockets_porthog_sees",
            Needs::NamespaceAndWine,
            wine::exe_sees_the_sockets_porthog_sees,
        ),
        trial(
            "wine::a_wine_client_is_named_as_the_owner",
            Needs::NamespaceAndWine,
            wine::a_wine_client_is_named_as_the_owner,
        ),
        trial(
            "wine::watch_once_shows_the_wine_client",
            Needs::NamespaceAndWine,
            wine::watch_once_shows_the_wine_client,
        ),
        trial(
            "wine::netsh_and_event_log_failures_are_gaps",
            Needs::NamespaceAndWine,
            wine::netsh_and_event_log_failures_are_gaps,
        ),
    ];
    let mut trials = trials;
    trials.extend(oracle::regression_trials());
    libtest_mimic::run(&args, trials).exit_code()
}

#[cfg(target_os = "linux")]
/// A test, ignored when what it needs is missing and CI=true does not forbid skipping it.
/// A panic is the test's failure, with its message.
fn trial(
    name: impl Into<String>,
    needs: Needs,
    test: impl FnOnce() + std::panic::UnwindSafe + Send + 'static,
) -> Trial {
    let missing = missing(needs);
    Trial::test(name, move || {
        std::panic::catch_unwind(test).map_err(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the test panicked".to_owned());
            Failed::from(text)
        })
    })
    .with_ignored_flag(missing.is_some() && !netns::in_ci())
}

#[cfg(target_os = "linux")]
/// What is missing for `needs` on this machine, if anything; each reason is said once.
fn missing(needs: Needs) -> Option<String> {
    static NAMESPACE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    static TMUX: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    static WINE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let said = |why: Option<String>| {
        if let Some(why) = &why {
            eprintln!("e2e: tests that need it are ignored: {why}");
        }
        why
    };
    let namespace = || NAMESPACE.get_or_init(|| said(namespace_missing())).clone();
    match needs {
        Needs::Nothing => None,
        Needs::Namespace => namespace(),
        Needs::NamespaceAndTmux => namespace().or_else(|| {
            TMUX.get_or_init(|| {
                said(
                    Command::new("tmux")
                        .arg("-V")
                        .output()
                        .err()
                        .map(|e| format!("needs tmux: {e}")),
                )
            })
            .clone()
        }),
        Needs::NamespaceAndWine => {
            namespace().or_else(|| WINE.get_or_init(|| said(wine::missing())).clone())
        }
    }
}

#[cfg(target_os = "linux")]
fn namespace_missing() -> Option<String> {
    {
        if !rustix::process::geteuid().is_root() {
            return Some("needs root (network namespaces)".to_owned());
        }
        let ip = Command::new("ip").args(["netns", "list"]).output();
        match ip {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "`ip netns list` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Some(format!("cannot run `ip` (iproute2): {e}")),
        }
    }
}

#[cfg(target_os = "linux")]
/// With `harness = false`, a function marked with the test attribute is compiled out and never
/// runs: every e2e test must be a plain `pub fn` listed in `main` (an unlisted one is dead code,
/// which clippy refuses).
fn every_test_is_a_trial() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    let attribute = concat!("#[", "test]");
    for entry in std::fs::read_dir(&dir).expect("read tests/e2e") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read an e2e source");
        assert!(
            !text.contains(attribute),
            "{} marks a test with {attribute}, which this harness never runs: make it a pub fn \
             and list it in main.rs",
            path.display()
        );
    }
}
