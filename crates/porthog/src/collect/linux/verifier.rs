//! The kernel's refusal of a BPF program, told to the user: the errno, the verifier's last
//! lines and what to do. Used by the iterator loader (`bpf.rs`, its own `bpf()` calls, which
//! ask for the log only when a load failed) and by the aya-loaded programs (`signal.rs`,
//! `events.rs`), whose aya error carries the whole log. Formatting only: no system calls here.

use std::io;

/// How many of the verifier's last lines an error keeps: where it stopped and why.
pub const TAIL_LINES: usize = 20;

/// A refusal's whole message (see [`refused`]), typed so that a caller that shows one line can
/// tell it in an error chain and show the verifier's lines too ([`print_once`]).
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Prints `error` whole on stderr, once per process, if a program refusal is in its chain: the
/// verifier's lines, which a one-line report note leaves out.
pub fn print_once(error: &anyhow::Error) {
    static PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if error.chain().any(|e| e.is::<Refused>())
        && !PRINTED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        eprintln!("porthog: {error:#}");
    }
}

/// A refused `bpf(BPF_PROG_LOAD)` of `program`: `error` is the errno, `log` the verifier's text
/// (empty if it wrote none). The first line says the errno, the verifier's last word and what
/// to do (callers that show one line show that one), the next ones the log's tail.
pub fn refused(program: &str, error: &io::Error, log: &str) -> anyhow::Error {
    let errno = error.raw_os_error().unwrap_or(-1);
    let name = errno_name(errno);
    let lines: Vec<&str> = log.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    let what = advice(errno, log);
    let text = match last_word(tail) {
        None => format!(
            "bpf(BPF_PROG_LOAD) of {program} failed with {name} ({error}) and the kernel wrote no \
             verifier log; {what}"
        ),
        Some(word) => format!(
            "bpf(BPF_PROG_LOAD) of {program} failed with {name} ({error}), the verifier says \
             \"{word}\"; {what}\nthe verifier's last {} of {} lines:\n  {}",
            tail.len(),
            lines.len(),
            tail.join("\n  ")
        ),
    };
    anyhow::Error::new(Refused(text))
}

/// An aya load error: a refused load becomes [`refused`] (aya puts the whole log, thousands of
/// lines, in its message); any other stays aya's.
pub fn from_aya(program: &str, error: aya::programs::ProgramError) -> anyhow::Error {
    match error {
        aya::programs::ProgramError::LoadError { io_error, verifier_log } => {
            refused(program, &io_error, &verifier_log.to_string())
        }
        other => other.into(),
    }
}

/// The verifier's reason: its last line that is not one of the statistics it prints after
/// every verification (`processed N insns ...`, and with log level 4 the time and stack depth).
fn last_word<'a>(tail: &[&'a str]) -> Option<&'a str> {
    let stats = ["processed ", "verification time ", "stack depth "];
    tail.iter().rev().find(|l| !stats.iter().any(|s| l.starts_with(s))).copied()
}

/// What to do about a refusal, from the errno and the verifier's words (the kernel's
/// `bpf_check`, `check_attach_btf_id` and `check_helper_call` messages).
fn advice(errno: i32, log: &str) -> &'static str {
    if errno == libc::EPERM {
        "porthog needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN before Linux 5.8); \
         run it as root, or with --no-bpf"
    } else if errno == libc::ENOMEM {
        "raise the locked-memory limit (ulimit -l: kernels before 5.11 charge BPF memory to \
         it), or run with --no-bpf"
    } else if log.contains("unknown func") || log.contains("cannot use helper") {
        "this kernel lacks or forbids a helper the program calls: BPF iterators need Linux \
         5.15+, and lockdown=confidentiality forbids reading kernel memory (see \
         /sys/kernel/security/lockdown); run with --no-bpf"
    } else if log.contains("attach_btf_id") || log.contains("btf_id") || log.contains("BTF") {
        "the kernel's BTF (/sys/kernel/btf/vmlinux) does not describe what the program attaches \
         to or reads: a kernel without BPF iterators (Linux 5.15+ needed) or with BTF that is not \
         its own; run with --no-bpf"
    } else if errno == libc::E2BIG || log.contains("too large") || log.contains("too complex") {
        "the program is too large for this kernel's verifier (Linux 5.15+ needed); run with \
         --no-bpf"
    } else {
        "this kernel's verifier does not accept what the program does (a kernel older than \
         Linux 5.15, or a porthog bug: report the verifier's lines); run with --no-bpf meanwhile"
    }
}

/// The errno's symbolic name, for the few a load returns.
fn errno_name(errno: i32) -> String {
    let known = [
        (libc::EACCES, "EACCES"),
        (libc::EINVAL, "EINVAL"),
        (libc::EPERM, "EPERM"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::E2BIG, "E2BIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EFAULT, "EFAULT"),
        // The kernel-internal ENOTSUPP, which bpf() returns for some unsupported features.
        (524, "ENOTSUPP"),
    ];
    known
        .iter()
        .find(|(n, _)| *n == errno)
        .map_or_else(|| format!("errno {errno}"), |(_, s)| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "func#0 @0\n0: R1=ctx() R10=fp0\n0: (bf) r0 = r2\nR2 !read_ok\n\
                       processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 \
                       peak_states 0 mark_read 0\n";

    #[test]
    fn a_refusal_says_the_errno_the_reason_and_what_to_do_on_its_first_line() {
        let e = refused("porthog_tcp", &io::Error::from_raw_os_error(libc::EACCES), LOG);
        let text = e.to_string();
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with("bpf(BPF_PROG_LOAD) of porthog_tcp failed with EACCES"),
            "{text}"
        );
        assert!(first.contains("the verifier says \"R2 !read_ok\""), "{text}");
        assert!(first.contains("a porthog bug") && first.ends_with("--no-bpf meanwhile"), "{text}");
        assert!(text.contains("last 5 of 5 lines:\n  func#0 @0\n"), "{text}");
        assert!(text.ends_with("mark_read 0"), "{text}");
    }

    #[test]
    fn only_the_last_lines_are_kept() {
        let log: String = (0..1000).map(|i| format!("{i}: (b7) r0 = 0\n")).collect();
        let text = refused("p", &io::Error::from_raw_os_error(libc::EINVAL), &log).to_string();
        assert_eq!(text.lines().count(), 2 + TAIL_LINES, "{text}");
        assert!(text.contains("last 20 of 1000 lines:\n  980: "), "{text}");
        assert!(text.ends_with("999: (b7) r0 = 0"), "{text}");
        assert!(text.lines().next().unwrap().contains("says \"999: (b7) r0 = 0\""), "{text}");
    }

    #[test]
    fn no_log_and_a_permission_error_say_what_porthog_needs() {
        let text = refused("p", &io::Error::from_raw_os_error(libc::EPERM), "").to_string();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("EPERM") && text.contains("no verifier log"), "{text}");
        assert!(text.contains("porthog needs root (CAP_BPF and CAP_PERFMON"), "{text}");
    }

    #[test]
    fn the_advice_follows_the_verifiers_words() {
        let einval = io::Error::from_raw_os_error(libc::EINVAL);
        let helper = refused("p", &einval, "unknown func bpf_probe_read_kernel#113\n").to_string();
        assert!(helper.contains("lockdown"), "{helper}");
        let btf = refused("p", &einval, "attach_btf_id 1 is not a function\n").to_string();
        assert!(btf.contains("says \"attach_btf_id 1 is not a function\""), "{btf}");
        assert!(btf.contains("/sys/kernel/btf/vmlinux"), "{btf}");
    }

    #[test]
    fn a_refusal_is_told_in_a_chain() {
        use anyhow::Context;
        let e = Err::<(), _>(refused("p", &io::Error::from_raw_os_error(libc::EINVAL), LOG))
            .context("the kernel refused the iter/tcp program")
            .unwrap_err();
        assert!(e.chain().any(|c| c.is::<Refused>()));
        let other = anyhow::anyhow!("no BTF").context("loading");
        assert!(!other.chain().any(|c| c.is::<Refused>()));
    }

    /// aya's error keeps its whole log in its message: it becomes the same short one.
    #[test]
    fn an_aya_refusal_becomes_the_same_message() {
        let error = aya::programs::ProgramError::LoadError {
            io_error: io::Error::from_raw_os_error(libc::EACCES),
            verifier_log: aya_obj::VerifierLog::new(LOG.to_string()),
        };
        let text = from_aya("porthog_signal", error).to_string();
        assert_eq!(
            text,
            refused("porthog_signal", &io::Error::from_raw_os_error(13), LOG).to_string()
        );
        let other = from_aya("p", aya::programs::ProgramError::NotLoaded).to_string();
        assert!(!other.contains("BPF_PROG_LOAD"), "{other}");
    }
}
