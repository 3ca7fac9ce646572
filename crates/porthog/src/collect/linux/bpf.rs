//! porthog's BPF iterators (`bpf/porthog.bpf.c`, committed built as `bpf/porthog.bpf.o`),
//! relocated with aya-obj and loaded with three `bpf()` commands of its own: every TCP and UDP socket of the namespace with the kernel state sock_diag does not
//! show, and socket inode -> pid from the kernel's fd tables. Loads, runs and returns raw
//! records; decoding is the core's (`bpf_record.rs`), choosing the fallback is `mod.rs`'s.
//! Nothing is pinned: the programs and links live only as long as their file descriptors, so
//! the kernel drops everything when porthog exits, however it exits.

use std::fs::File;
use std::io::Read;
use std::time::{Duration, Instant};

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result, anyhow};
use aya::{Btf, Ebpf, EbpfLoader};
use aya_obj::generated::{bpf_attr, bpf_insn};
use porthog_core::Socket;
use porthog_core::bpf_record::{SocketDecoder, SocketWalk};

use super::verifier;

/// The clang-built object (see `bpf/build.sh`; CI checks it matches `porthog.bpf.c`).
static OBJECT: &[u8] = include_bytes!("bpf/porthog.bpf.o");

pub(super) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// What to do when the kernel's BTF is missing, or is not what porthog can read.
const NO_BTF: &str = "BPF needs a kernel built with BTF (CONFIG_DEBUG_INFO_BTF=y, as \
                      distributions' Linux 5.15+ kernels are); run with --no-bpf";
const BAD_BTF: &str = "porthog cannot read this kernel's BTF: run with --no-bpf, and report \
                       the kernel version";

/// The kernel structures `porthog.bpf.c` declares (and so is relocated against): only these
/// keep their names and members in the BTF given to the loader (`porthog_core::btf`).
const KERNEL_TYPES: [&str; 26] = [
    "in6_addr",
    "net_device",
    "net",
    "sock_common",
    "inode",
    "file",
    "sock",
    "socket",
    "socket_alloc",
    "inet_bind_bucket",
    "inet_connection_sock",
    "tcp_sock",
    "timer_list",
    "inet_timewait_sock",
    "tcp_timewait_sock",
    "inet_sock",
    "udp_sock",
    "upid",
    "pid",
    "nsproxy",
    "task_struct",
    "seq_file",
    "bpf_iter_meta",
    "bpf_iter__tcp",
    "bpf_iter__udp",
    "bpf_iter__task_file",
];
/// The kernel functions an iterator program attaches to (`bpf_iter_<target>`).
const ITERATOR_TARGETS: [&str; 3] = ["bpf_iter_tcp", "bpf_iter_udp", "bpf_iter_task_file"];

/// The three programs of the object: (function name, kernel iterator target).
const TCP: (&str, &str) = ("porthog_tcp", "tcp");
const UDP: (&str, &str) = ("porthog_udp", "udp");
const OWNERS: (&str, &str) = ("porthog_owners", "task_file");

/// The loaded programs, by their file descriptors (nothing is pinned). The TCP program is
/// loaded first, and the two others while its walk runs ([`Iterators::load_tcp_first`]).
pub struct Iterators {
    tcp: OwnedFd,
    udp: Option<OwnedFd>,
    owners: Option<OwnedFd>,
    /// The relocated object, until the UDP and owner programs are loaded from it.
    relocated: Option<Relocated>,
    /// Why the kernel refused the UDP or owner program, once it did: the same object on the
    /// same kernel is refused again, so later snapshots say so without a walk or a retry.
    refused: Option<String>,
    started: Instant,
    /// How long reading the kernel's BTF, relocating and loading the programs took.
    pub load_time: Duration,
}

/// The object relocated against the running kernel, its programs not loaded yet.
struct Relocated {
    object: aya_obj::Object,
    /// The kernel's BTF id of each of [`ITERATOR_TARGETS`].
    func_ids: Vec<Option<u32>>,
}

/// An iterator instance, created in the calling thread's network and pid namespaces; reading it
/// runs the program over the kernel's objects.
pub struct Walk(File);

impl Iterators {
    /// Loads the three programs at once (the tests' way; a check loads them in two steps).
    #[cfg(test)]
    pub fn load() -> Result<Iterators> {
        let mut it = Iterators::load_tcp_first()?;
        it.load_rest()?;
        Ok(it)
    }

    /// Relocates the object and loads the TCP program only: its walk, the longest part of a
    /// check at 250,000 sockets, can start while [`Iterators::load_rest`] loads the two others
    /// (each load runs the verifier, which looks up types by name in the kernel's whole BTF).
    ///
    /// The object is relocated (CO-RE) by aya's object crate against the pruned kernel BTF, and
    /// each program loaded with `bpf(BPF_PROG_LOAD)` given its attach target's id in the kernel's
    /// BTF, which the pruning pass read on its way ([`bpf_prog_load`]). aya's `Iter::load` would
    /// look the id up in a parsed copy of every type up to it: 48 bytes a type, ~64,000 types,
    /// the largest allocation of the load (issue 7's fixed-memory budget).
    pub fn load_tcp_first() -> Result<Iterators> {
        let started = Instant::now();
        // Read in passes of a fixed buffer, never whole (5.5 MB; issue 7's memory budget).
        let mut vmlinux = File::open(VMLINUX_BTF)
            .with_context(|| format!("cannot read the kernel's BTF ({VMLINUX_BTF}); {NO_BTF}"))?;
        let vmlinux_len = vmlinux.metadata().map(|m| m.len()).unwrap_or(0);
        let porthog_core::btf::Pruned { types: pruned, func_ids } =
            porthog_core::btf::prune(&mut vmlinux, &KERNEL_TYPES, &ITERATOR_TARGETS)
                .with_context(|| format!("in {VMLINUX_BTF} ({BAD_BTF})"))?;
        drop(vmlinux);
        let pruned_len = pruned.len();
        let btf = Btf::parse(&pruned, aya::Endianness::default())
            .with_context(|| format!("cannot parse {VMLINUX_BTF} ({BAD_BTF})"))?;
        drop(pruned);
        let (t_btf, hwm_btf) = (started.elapsed(), peak_rss_kib());

        let mut object = aya_obj::Object::parse(&aligned(OBJECT))
            .context("cannot parse porthog's BPF object")?;
        object.relocate_btf(&btf).context("cannot relocate porthog's BPF object")?;
        drop(btf);
        let text_sections = object.functions.keys().map(|&(section, _)| section).collect();
        object.relocate_calls(&text_sections).context("cannot relocate porthog's BPF object")?;
        let relocated = Relocated { object, func_ids };
        let tcp = relocated.load(TCP)?;
        if crate::collect::timings() {
            eprintln!(
                "porthog: kernel BTF read and pruned to {} of {} bytes in {t_btf:?} (peak RSS \
                 {hwm_btf} KiB), object relocated and iter/tcp loaded at {:?} ({} KiB)",
                pruned_len,
                vmlinux_len,
                started.elapsed(),
                peak_rss_kib()
            );
        }
        Ok(Iterators {
            tcp,
            udp: None,
            owners: None,
            relocated: Some(relocated),
            refused: None,
            started,
            load_time: started.elapsed(),
        })
    }

    /// Loads the UDP and owner programs, if not yet loaded, and drops the relocated object. A
    /// refusal is kept ([`Iterators::refused`]): later calls return it without loading again.
    pub fn load_rest(&mut self) -> Result<()> {
        if let Some(why) = &self.refused {
            return Err(anyhow!("{why}"));
        }
        let Some(relocated) = self.relocated.as_ref() else { return Ok(()) };
        let loaded = relocated.load(OWNERS).and_then(|owners| Ok((owners, relocated.load(UDP)?)));
        let (owners, udp) = loaded.inspect_err(|e| {
            self.refused = Some(format!("{e:#}"));
            self.relocated = None;
        })?;
        (self.owners, self.udp, self.relocated) = (Some(owners), Some(udp), None);
        self.load_time = self.started.elapsed();
        if crate::collect::timings() {
            eprintln!(
                "porthog: iter/task_file and iter/udp loaded at {:?} ({} KiB)",
                self.load_time,
                peak_rss_kib()
            );
        }
        Ok(())
    }

    /// Why the UDP or owner program was refused, if it was: a snapshot then does not start a
    /// TCP walk it could not finish.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// The TCP socket walk of the calling thread's network namespace.
    pub fn tcp(&mut self) -> Result<Walk> {
        walk(&self.tcp, TCP.0)
    }

    pub fn udp(&mut self) -> Result<Walk> {
        self.load_rest()?;
        walk(self.udp.as_ref().ok_or_else(|| anyhow!("iter/udp is not loaded"))?, UDP.0)
    }

    /// Every process's socket fds (sockets of the calling thread's network namespace only), in
    /// the calling thread's pid namespace.
    pub fn owners(&mut self) -> Result<Walk> {
        self.load_rest()?;
        let owners = self.owners.as_ref().ok_or_else(|| anyhow!("iter/task_file is not loaded"))?;
        walk(owners, OWNERS.0)
    }
}

impl Relocated {
    /// Loads one program of the relocated object.
    fn load(&self, (name, target): (&str, &str)) -> Result<OwnedFd> {
        let object = &self.object;
        let function = object
            .programs
            .get(name)
            .and_then(|p| object.functions.get(&p.function_key()))
            .ok_or_else(|| anyhow!("the BPF object has no program {name}"))?;
        let target_fn = format!("bpf_iter_{target}");
        let attach_btf_id = ITERATOR_TARGETS
            .iter()
            .zip(&self.func_ids)
            .find_map(|(f, id)| (*f == target_fn).then_some(*id).flatten())
            .ok_or_else(|| {
                anyhow!(
                    "the kernel's BTF ({VMLINUX_BTF}) has no function {target_fn}: a kernel \
                     without BPF iterators (Linux 5.15+ is needed); run with --no-bpf"
                )
            })?;
        bpf_prog_load(name, &function.instructions, &object.license, attach_btf_id)
            .with_context(|| format!("the kernel refused the iter/{target} program"))
    }
}

/// A new iterator of a loaded iterator program: a link (`BPF_LINK_CREATE`), then an iterator
/// from it (`BPF_ITER_CREATE`); the iterator keeps its own reference, so the link's fd closes
/// here.
fn walk(program: &OwnedFd, name: &str) -> Result<Walk> {
    use aya_obj::generated::{bpf_attach_type::BPF_TRACE_ITER, bpf_cmd};
    // SAFETY: all-zero is a valid bpf_attr (every field an integer or a union of integers).
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.link_create.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
    // No target fd: the kernel refuses one for an iterator.
    attr.link_create.attach_type = BPF_TRACE_ITER as u32;
    // SAFETY: BPF_LINK_CREATE reads the link_create member set above.
    let link = unsafe { sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr) }
        .with_context(|| format!("cannot attach {name}"))?;
    // SAFETY: as above.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.iter_create.link_fd = link.as_raw_fd() as u32;
    // SAFETY: BPF_ITER_CREATE reads the iter_create member set above.
    let iter = unsafe { sys_bpf(bpf_cmd::BPF_ITER_CREATE, &mut attr) }
        .with_context(|| format!("cannot create a {name} iterator"))?;
    Ok(Walk(File::from(iter)))
}

/// Loads one relocated iterator program (`BPF_PROG_TYPE_TRACING`, attach type
/// `BPF_TRACE_ITER`) attached to the kernel BTF function `attach_btf_id`. What aya's
/// `Iter::load` gives the kernel too, but no program BTF and no function or line info: the
/// programs have one function each, and the verifier needs only the attach target's types.
/// Without a verifier log (the kernel formats none, and no buffer is held), unless the load
/// fails: then once more with one, whose last lines go in the error ([`verifier::refused`]).
fn bpf_prog_load(
    name: &str,
    instructions: &[bpf_insn],
    license: &CStr,
    attach_btf_id: u32,
) -> Result<OwnedFd> {
    use aya_obj::generated::{bpf_attach_type::BPF_TRACE_ITER, bpf_cmd, bpf_prog_type};
    let insn_cnt = u32::try_from(instructions.len())?;
    // `log`: the verifier's log buffer, or empty for none.
    let load = |log: &mut [u8]| -> std::io::Result<OwnedFd> {
        // SAFETY: all-zero is a valid bpf_attr (every field an integer or a union of integers).
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writing integer fields of a union member only.
        let load = unsafe { &mut attr.__bindgen_anon_3 };
        load.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
        load.expected_attach_type = BPF_TRACE_ITER as u32;
        load.attach_btf_id = attach_btf_id;
        load.insns = instructions.as_ptr() as u64;
        load.insn_cnt = insn_cnt;
        load.license = license.as_ptr() as u64;
        // The name bpftool and the e2e leak check show (at most 15 bytes and a NUL).
        for (to, from) in load.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *to = from as std::ffi::c_char;
        }
        if !log.is_empty() {
            // Level 1: the instructions verified and the reason of a refusal.
            load.log_level = 1;
            load.log_buf = log.as_mut_ptr() as u64;
            load.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        }
        // SAFETY: BPF_PROG_LOAD reads the member set above; the instructions, license and log
        // buffer it points to outlive the call, and the kernel writes at most log_size bytes.
        unsafe { sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) }
    };
    let first = match load(&mut []) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut log = vec![0u8; LOG_FIRST];
    loop {
        match load(&mut log) {
            // Refused once, accepted now (e.g. memory was short): nothing to report.
            Ok(fd) => return Ok(fd),
            // The log did not fit. Since Linux 6.4 the buffer then holds the log's end, which is
            // what is shown; before, its start: a larger buffer is needed either way for the
            // kernel to return the refusal's own errno.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && log.len() < LOG_MAX => {
                log = vec![0u8; log.len() * 8];
            }
            Err(_) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                return Err(verifier::refused(name, &first, &text));
            }
        }
    }
}

/// The verifier log buffer of a failed load's retry, and how far it grows (×8 at a time) when
/// the log does not fit.
const LOG_FIRST: usize = 64 * 1024;
const LOG_MAX: usize = 4 * 1024 * 1024;

/// One `bpf()` call of a command that returns a new file descriptor.
///
/// # Safety
/// `attr` must be what `cmd` expects, its pointers valid for the call.
unsafe fn sys_bpf(
    cmd: aya_obj::generated::bpf_cmd,
    attr: &mut bpf_attr,
) -> std::io::Result<OwnedFd> {
    // SAFETY: the caller's contract; the size is the whole union, as the kernel allows.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_int,
            std::ptr::from_mut(attr),
            size_of::<bpf_attr>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success these commands return a new file descriptor, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A copy with 8-byte alignment of a clang-built object (from `include_bytes!`, so maybe
/// unaligned): the ELF reader expects aligned headers.
fn aligned(object: &[u8]) -> AlignedBytes {
    AlignedBytes {
        words: object
            .chunks(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                u64::from_ne_bytes(b)
            })
            .collect(),
        len: object.len(),
    }
}

struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl std::ops::Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `words` holds ceil(len / 8) u64s, so at least `len` initialised bytes; u8 has
        // no alignment or validity requirements.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// Loads a clang-built object that needs only `kernel_types` of the kernel's BTF: the BTF is
/// pruned to them while read in passes of a fixed buffer, never whole (5.5 MB).
pub(super) fn load_object_with(object: &[u8], kernel_types: &[&str]) -> Result<Ebpf> {
    let mut vmlinux = File::open(VMLINUX_BTF)
        .with_context(|| format!("cannot read the kernel's BTF ({VMLINUX_BTF}); {NO_BTF}"))?;
    let pruned = porthog_core::btf::prune(&mut vmlinux, kernel_types, &[])
        .with_context(|| format!("in {VMLINUX_BTF} ({BAD_BTF})"))?
        .types;
    drop(vmlinux);
    let btf = Btf::parse(&pruned, aya::Endianness::default())
        .with_context(|| format!("cannot parse {VMLINUX_BTF} ({BAD_BTF})"))?;
    load_object(object, &btf)
}

/// Loads a clang-built object (from `include_bytes!`, so maybe unaligned) against `btf`, the
/// pruned kernel BTF, with a loader that never parses the whole kernel BTF.
fn load_object(object: &[u8], btf: &Btf) -> Result<Ebpf> {
    let bytes = aligned(object);
    Ok(loader_without_kernel_btf().btf(Some(btf)).load(&bytes)?)
}

/// An aya loader that has not parsed the kernel's BTF. aya 0.14's `EbpfLoader::new()` reads and
/// parses all of /sys/kernel/btf/vmlinux (5.5 MB; ~14 MiB of peak RSS and tens of ms measured)
/// for a default that [`load_object`] (the signal program's loader) replaces with the pruned
/// copy; aya 0.15 reads it only when no
/// BTF is given, but needs Rust 1.98. So the loader is made on a thread of its own, in a private
/// mount namespace where /sys/kernel/btf is an empty tmpfs: aya's read fails, and it keeps no
/// default. Nothing outside that thread sees the mount, which goes when the thread ends. If the
/// namespace cannot be made (no CAP_SYS_ADMIN, a seccomp filter), the loader is made as usual.
fn loader_without_kernel_btf() -> EbpfLoader<'static> {
    use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
    use rustix::thread::{UnshareFlags, unshare_unsafe};
    let made = std::thread::spawn(|| -> rustix::io::Result<EbpfLoader<'static>> {
        // SAFETY: the thread unshares its mount namespace and filesystem context only, not
        // its fd table (FILES), which is what unshare_unsafe's contract is about.
        unsafe { unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::FS)? };
        // Private first, or the tmpfs would propagate back to the host's mounts.
        mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)?;
        mount("none", "/sys/kernel/btf", "tmpfs", MountFlags::empty(), None)?;
        Ok(EbpfLoader::new())
    })
    .join();
    match made {
        Ok(Ok(loader)) => loader,
        failed => {
            if crate::collect::timings() {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "its thread panicked".into(),
                };
                eprintln!(
                    "porthog: the BPF loader without the kernel BTF could not be made ({why}):                      aya parses the whole kernel BTF (~14 MiB more, slower load)"
                );
            }
            EbpfLoader::new()
        }
    }
}

/// The process's peak resident set so far (VmHWM), for `PORTHOG_TIMINGS`; 0 if unreadable.
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

impl Walk {
    /// Runs the iterator to its end; `hint` is the expected size, to read with few reallocations.
    pub fn read(mut self, hint: usize) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(hint);
        self.0.read_to_end(&mut bytes).context("reading a BPF iterator failed")?;
        Ok(bytes)
    }

    /// Runs a socket iterator to its end, decoding as it reads: its output (64 bytes a socket)
    /// is never held whole, only `Socket`s are.
    pub fn read_sockets(self, out: &mut Vec<Socket>) -> Result<SocketWalk> {
        let mut decoder = SocketDecoder::new(out);
        self.read_chunks(|bytes| Ok(decoder.feed(bytes, out)?))?;
        Ok(decoder.finish(out)?)
    }

    /// Runs the iterator to its end, handing `f` its output one read() at a time.
    pub fn read_chunks(mut self, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = match self.0.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading a BPF iterator failed"),
            };
            f(&chunk[..n])?;
        }
    }
}

/// What one read() of a socket iterator asks for: the kernel fills it from its seq_file buffer
/// a page or so at a time, so a larger buffer saves few system calls.
const READ_CHUNK: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use porthog_core::bpf_record::{SOCKET_RECORD, decode_owners, decode_sockets};
    use porthog_core::{BucketOrigin, State};

    use super::*;

    /// Needs root (CAP_BPF and CAP_PERFMON); skipped otherwise, except under CI=true, where
    /// (as for the e2e tests) a test that cannot set up fails.
    fn iterators() -> Option<Iterators> {
        if !rustix::process::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the BPF iterator tests need root, and CI=true does not skip them"
            );
            eprintln!("skipped: not root");
            return None;
        }
        Some(Iterators::load().unwrap())
    }

    #[test]
    fn sees_its_own_listener_and_owner() {
        let Some(mut it) = iterators() else { return };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sockets = Vec::new();
        let bytes = it.tcp().unwrap().read(64 * SOCKET_RECORD).unwrap();
        let walk = decode_sockets(&bytes, &mut sockets).unwrap();
        assert!(walk.hz.is_some(), "{walk:?}");
        let mine: Vec<_> = sockets.iter().filter(|s| s.local_port == port).collect();
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert_eq!(mine[0].state, State::Listen);
        assert_eq!(mine[0].facts.bucket(), Some(BucketOrigin::Bind));
        assert_ne!(mine[0].inode, 0);
        assert_ne!(mine[0].cookie, 0);

        let owners = decode_owners(&it.owners().unwrap().read(4096).unwrap()).unwrap();
        let me = owners.owners.iter().find(|o| o.inode == mine[0].inode).unwrap();
        assert_eq!((me.pid, me.inside), (std::process::id(), true));
    }

    /// The attach target's id, as [`Iterators::load`] finds it.
    fn iter_tcp_id() -> u32 {
        let mut vmlinux = File::open(VMLINUX_BTF).unwrap();
        let pruned = porthog_core::btf::prune(&mut vmlinux, &[], &ITERATOR_TARGETS).unwrap();
        pruned.func_ids[0].unwrap()
    }

    /// A program the verifier refuses, through the loader porthog's programs use: the error
    /// carries the errno, the verifier's own words and what to do.
    #[test]
    fn a_refused_program_says_what_the_verifier_said() {
        if iterators().is_none() {
            return;
        }
        // r0 = r2 (never initialised); exit.
        let insn = |code: u8, dst: u8, src: u8| {
            // SAFETY: all-zero is a valid bpf_insn (integers and a bitfield byte).
            let mut i: bpf_insn = unsafe { std::mem::zeroed() };
            i.code = code;
            i.set_dst_reg(dst);
            i.set_src_reg(src);
            i
        };
        let program = [insn(0xbf, 0, 2), insn(0x95, 0, 0)];
        let error = bpf_prog_load("porthog_bad", &program, c"GPL", iter_tcp_id()).unwrap_err();
        let text = format!("{error:#}");
        let first = text.lines().next().unwrap();
        assert!(first.contains("porthog_bad failed with EACCES"), "{text}");
        assert!(first.contains("the verifier says \"R2 !read_ok\""), "{text}");
        assert!(first.contains("--no-bpf"), "{text}");
        assert!(text.contains("\n  0: (bf) r0 = r2\n"), "{text}");

        // The same after 6,000 instructions: a log of ~130 KiB, larger than the first buffer,
        // kept whole (the buffer grew) and cut to its tail.
        let mut long = vec![insn(0xb7, 0, 0); 6000]; // r0 = 0
        long.extend([insn(0xbf, 0, 2), insn(0x95, 0, 0)]);
        let error = bpf_prog_load("porthog_bad", &long, c"GPL", iter_tcp_id()).unwrap_err();
        let text = format!("{error:#}");
        let lines = text.lines().count();
        assert_eq!(lines, 2 + verifier::TAIL_LINES, "{text}");
        assert!(text.contains("the verifier says \"R2 !read_ok\""), "{text}");
        let of = |t: &str| -> Option<usize> {
            t.split(" lines:").next()?.rsplit(' ').next()?.parse().ok()
        };
        assert!(of(&text) > Some(6000), "{text}");

        // A valid program given an attach target that is no function (id 1: a type of the
        // kernel's BTF, an integer): refused before verification, with the reason in the log.
        let program = [insn(0xb7, 0, 0), insn(0x95, 0, 0)]; // r0 = 0; exit
        let error = bpf_prog_load("porthog_bad", &program, c"GPL", 1).unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("EINVAL"), "{text}");
        assert!(text.contains("the verifier says \"attach_btf_id 1 is not a function\""), "{text}");
        assert!(text.contains("/sys/kernel/btf/vmlinux"), "{text}");
    }

    /// A TCP socket that bound a port and did nothing else is in no table iter/tcp walks: the
    /// task_file walk reports it from its fd (kept once though two fds hold it), with its bucket.
    #[test]
    fn sees_a_bound_but_inactive_socket_from_its_fds() {
        use rustix::net::{AddressFamily, SocketType, bind, getsockname, ipproto, socket};
        let Some(mut it) = iterators() else { return };
        let fd = socket(AddressFamily::INET, SocketType::STREAM, Some(ipproto::TCP)).unwrap();
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        bind(&fd, &any).unwrap();
        let port = match getsockname(&fd).unwrap().try_into().unwrap() {
            std::net::SocketAddr::V4(a) => a.port(),
            other => panic!("{other:?}"),
        };
        let _second = rustix::io::dup(&fd).unwrap();
        let walk = decode_owners(&it.owners().unwrap().read(4096).unwrap()).unwrap();
        let mine: Vec<_> = walk.bound.iter().filter(|s| s.local_port == port).collect();
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert_eq!(mine[0].state, State::Bound);
        assert_eq!(mine[0].local_ip, any.ip());
        assert_eq!(mine[0].facts.bucket(), Some(BucketOrigin::Bind));
        assert_eq!(mine[0].uid, 0);
        assert!(walk.owners.iter().any(|o| o.inode == mine[0].inode), "{walk:?}");
        // And not from the socket walk.
        let mut sockets = Vec::new();
        decode_sockets(&it.tcp().unwrap().read(64 * SOCKET_RECORD).unwrap(), &mut sockets).unwrap();
        assert!(!sockets.iter().any(|s| s.local_port == port));
    }
}
