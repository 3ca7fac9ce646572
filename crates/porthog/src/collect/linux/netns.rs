//! Entering the network namespace to inspect, on the calling thread, and leaving it again.
//! setns(CLONE_NEWNET) moves only the calling thread; threads it starts afterwards inherit the
//! namespace, threads started before do not. So this must run before any thread or netlink
//! socket of the snapshot is created. It opens no socket and reads no table itself.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};

use crate::collect::NetnsTarget;

/// While alive, the calling thread is in the inspected namespace; dropping it moves the thread
/// back to the namespace it came from.
pub struct Entered {
    original: File,
}

impl NetnsTarget {
    /// The namespace file that `setns` needs.
    fn path(&self) -> PathBuf {
        match self {
            NetnsTarget::Name(name) => PathBuf::from("/run/netns").join(name),
            NetnsTarget::Path(path) => path.clone(),
            NetnsTarget::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }
}

/// The inode of the calling thread's network namespace, which identifies it.
pub fn current_inode() -> anyhow::Result<u64> {
    let st = rustix::fs::stat("/proc/thread-self/ns/net")
        .context("cannot stat /proc/thread-self/ns/net")?;
    Ok(st.st_ino)
}

/// The calling thread's network namespace cookie (SO_NETNS_COOKIE, Linux 5.14+), from a
/// socket made and closed here: unlike the namespace's inode number, which a namespace made
/// after this one died can get again, a cookie is never given twice while the system runs.
/// `None` on kernels without it.
pub fn current_cookie() -> Option<u64> {
    use std::os::fd::AsRawFd;
    let fd =
        rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::DGRAM, None)
            .ok()?;
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket for the whole call, and the option writes at most `len`
    // bytes into `cookie`, a u64 that outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    (rc == 0 && len as usize == std::mem::size_of::<u64>()).then_some(cookie)
}

/// The inode of `target`'s network namespace (what /proc/PID/ns/net of its processes shows).
pub fn inode(target: &NetnsTarget) -> anyhow::Result<u64> {
    let label = target.label();
    let path = target.path();
    match rustix::fs::stat(&path) {
        Ok(st) => Ok(st.st_ino),
        Err(rustix::io::Errno::NOENT) => {
            bail!("network namespace {label} does not exist ({} not found)", path.display())
        }
        Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => {
            bail!("reading network namespace {label} needs root")
        }
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", path.display())),
    }
}

/// Moves the calling thread into `target`'s network namespace.
pub fn enter(target: &NetnsTarget) -> anyhow::Result<Entered> {
    let label = target.label();
    let path = target.path();
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("network namespace {label} does not exist ({} not found)", path.display())
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            bail!("entering network namespace {label} needs root (CAP_SYS_ADMIN): {e}")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    enter_file(&file, &label, &path)
}

/// Moves the calling thread into the network namespace `file` (opened from `path`) is.
pub fn enter_file(file: &File, label: &str, path: &Path) -> anyhow::Result<Entered> {
    let original = File::open("/proc/thread-self/ns/net")
        .context("cannot open /proc/thread-self/ns/net to return to it later")?;
    match setns(file, CloneFlags::CLONE_NEWNET) {
        Ok(()) => Ok(Entered { original }),
        Err(Errno::EPERM) => bail!("entering network namespace {label} needs root (CAP_SYS_ADMIN)"),
        Err(Errno::EINVAL) => bail!("{} is not a network namespace", path.display()),
        Err(e) => Err(e).with_context(|| format!("cannot enter network namespace {label}")),
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // Returning to a namespace this thread was already in cannot fail for lack of privilege
        // (we held CAP_SYS_ADMIN to leave it); if it failed anyway, the thread would stay in the
        // inspected namespace, which only matters if the caller opens sockets on it later.
        let _ = setns(&self.original, CloneFlags::CLONE_NEWNET);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace's cookie is stable, and a new namespace gets another (root only: a thread
    /// unshares its own). Kernels before 5.14 have no SO_NETNS_COOKIE: there `None` is right
    /// (fleet.rs then keys a kept walk by the inode alone and never hands a walk the kept
    /// settings and conntrack), and on any later kernel it is a failure.
    #[test]
    fn cookies_tell_namespaces_apart() {
        let Some(here) = current_cookie() else {
            assert!(
                !crate::collect::linux::kernel_at_least(
                    &rustix::system::uname().release().to_string_lossy(),
                    (5, 14)
                ),
                "no namespace cookie on a kernel with SO_NETNS_COOKIE (Linux 5.14+)"
            );
            eprintln!("cookies_tell_namespaces_apart: skipped: kernel before 5.14, no cookie");
            return;
        };
        assert_eq!(current_cookie(), Some(here));
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let other = std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
            current_cookie()
        })
        .join()
        .expect("the thread");
        assert!(other.is_some_and(|c| c != here), "{other:?} vs {here}");
    }

    #[test]
    fn missing_namespace_is_a_clear_error() {
        let e = enter(&NetnsTarget::Name("porthog-no-such-ns".into())).err().unwrap();
        assert_eq!(
            e.to_string(),
            "network namespace porthog-no-such-ns does not exist (/run/netns/porthog-no-such-ns not found)"
        );
        let e = enter(&NetnsTarget::Path("/proc/self/status".into())).err().unwrap();
        assert!(e.to_string().contains("not a network namespace"), "{e}");
    }

    /// Entering one's own namespace by pid and by path works as root and comes back on drop.
    #[test]
    fn enters_and_returns() {
        let own = || std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let before = own();
        let by_pid = NetnsTarget::Pid(std::process::id());
        assert_eq!(by_pid.label(), format!("pid {}", std::process::id()));
        match enter(&by_pid) {
            Ok(entered) => drop(entered),
            Err(e) => assert!(e.to_string().contains("needs root (CAP_SYS_ADMIN)"), "{e}"),
        }
        if let Ok(entered) = enter(&NetnsTarget::Path("/proc/1/ns/net".into())) {
            drop(entered);
        }
        assert_eq!(own(), before);
    }
}
