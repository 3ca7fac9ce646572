//! porthog's BPF iterators (`bpf/porthog.bpf.c`, committed built as `bpf/porthog.bpf.o`), loaded
//! with aya: every TCP and UDP socket of the namespace with the kernel state sock_diag does not
//! show, and socket inode -> pid from the kernel's fd tables. Loads, runs and returns raw
//! records; decoding is the core's (`bpf_record.rs`), choosing the fallback is `mod.rs`'s.
//! Nothing is pinned: the programs and links live only as long as their file descriptors, so
//! the kernel drops everything when porthog exits, however it exits.

use std::fs::File;
use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use aya::programs::Iter;
use aya::{Btf, Ebpf, EbpfLoader};
use porthog_core::Socket;
use porthog_core::bpf_record::{SocketDecoder, SocketWalk};

/// The clang-built object (see `bpf/build.sh`; CI checks it matches `porthog.bpf.c`).
static OBJECT: &[u8] = include_bytes!("bpf/porthog.bpf.o");

pub(super) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

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

/// The loaded programs.
pub struct Iterators {
    ebpf: Ebpf,
    /// How long parsing the kernel's BTF, relocating and loading the programs took.
    pub load_time: Duration,
}

/// An iterator instance, created in the calling thread's network and pid namespaces; reading it
/// runs the program over the kernel's objects.
pub struct Walk(File);

impl Iterators {
    /// Loads the three programs; the error says why BPF cannot be used here.
    pub fn load() -> Result<Iterators> {
        let started = Instant::now();
        // Read in passes of a fixed buffer, never whole (5.5 MB; issue 7's memory budget).
        let mut vmlinux = File::open(VMLINUX_BTF)
            .with_context(|| format!("cannot read the kernel's BTF ({VMLINUX_BTF})"))?;
        let vmlinux_len = vmlinux.metadata().map(|m| m.len()).unwrap_or(0);
        let porthog_core::btf::Pruned { types: pruned, targets: target_bytes } =
            porthog_core::btf::prune(&mut vmlinux, &KERNEL_TYPES, &ITERATOR_TARGETS)
                .with_context(|| format!("in {VMLINUX_BTF}"))?;
        drop(vmlinux);
        let pruned_len = pruned.len();
        let btf = Btf::parse(&pruned, aya::Endianness::default())
            .with_context(|| format!("cannot parse {VMLINUX_BTF}"))?;
        drop(pruned);
        let (t_btf, hwm_btf) = (started.elapsed(), peak_rss_kib());

        let mut ebpf = load_object(OBJECT, &btf).context("cannot load porthog's BPF object")?;
        drop(btf);
        let (t_obj, hwm_obj) = (started.elapsed(), peak_rss_kib());
        // The largest thing the load holds: aya keeps 48 bytes for every type up to the last
        // iterator function (~64,000 placeholders, as the attach ids are the kernel's own), so
        // it is parsed only once the relocation's memory is freed, and its bytes dropped.
        let targets = Btf::parse(&target_bytes, aya::Endianness::default())
            .with_context(|| format!("cannot parse {VMLINUX_BTF}"))?;
        drop(target_bytes);
        for (name, target) in [TCP, UDP, OWNERS] {
            let program: &mut Iter = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("the BPF object has no program {name}"))?
                .try_into()
                .with_context(|| format!("{name} is not an iterator program"))?;
            program
                .load(target, &targets)
                .with_context(|| format!("the kernel refused the iter/{target} program"))?;
        }
        drop(targets);
        if std::env::var_os("PORTHOG_TIMINGS").is_some() {
            eprintln!(
                "porthog: kernel BTF read and pruned to {} of {} bytes in {t_btf:?} (peak RSS \
                 {hwm_btf} KiB), object relocated and loaded at {t_obj:?} ({hwm_obj} KiB), \
                 iterators loaded at {:?} ({} KiB)",
                pruned_len,
                vmlinux_len,
                started.elapsed(),
                peak_rss_kib()
            );
        }
        Ok(Iterators { ebpf, load_time: started.elapsed() })
    }

    /// The TCP socket walk of the calling thread's network namespace.
    pub fn tcp(&mut self) -> Result<Walk> {
        self.walk(TCP.0)
    }

    pub fn udp(&mut self) -> Result<Walk> {
        self.walk(UDP.0)
    }

    /// Every process's socket fds (sockets of the calling thread's network namespace only), in
    /// the calling thread's pid namespace.
    pub fn owners(&mut self) -> Result<Walk> {
        self.walk(OWNERS.0)
    }

    fn walk(&mut self, name: &str) -> Result<Walk> {
        let program: &mut Iter = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("the BPF object has no program {name}"))?
            .try_into()?;
        let link = program.attach().with_context(|| format!("cannot attach {name}"))?;
        let link = program.take_link(link)?;
        // The iterator keeps its own reference: the link's fd closes here.
        let file = link.into_file().with_context(|| format!("cannot create a {name} iterator"))?;
        Ok(Walk(file))
    }
}

/// Loads a clang-built object (from `include_bytes!`, so maybe unaligned) against `btf`, the
/// pruned kernel BTF, with a loader that never parses the whole kernel BTF.
pub(super) fn load_object(object: &[u8], btf: &Btf) -> Result<Ebpf> {
    // A copy with 8-byte alignment: the ELF reader expects aligned headers.
    let aligned: Vec<u64> = object
        .chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            u64::from_ne_bytes(b)
        })
        .collect();
    // SAFETY: a Vec<u64> of ceil(len / 8) elements holds at least `object.len()` initialised
    // bytes; u8 has no alignment or validity requirements.
    let bytes = unsafe { std::slice::from_raw_parts(aligned.as_ptr().cast::<u8>(), object.len()) };
    Ok(loader_without_kernel_btf().btf(Some(btf)).load(bytes)?)
}

/// An aya loader that has not parsed the kernel's BTF. aya 0.14's `EbpfLoader::new()` reads and
/// parses all of /sys/kernel/btf/vmlinux (5.5 MB; ~14 MiB of peak RSS and tens of ms measured)
/// for a default that `load` above replaces with the pruned copy; aya 0.15 reads it only when no
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
            if std::env::var_os("PORTHOG_TIMINGS").is_some() {
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
