//! How network namespaces show up in /proc, read from text: the `net:[INODE]` target of a
//! namespace link (`/proc/PID/ns/net`, an fd holding one) and the nsfs mounts of
//! `/proc/PID/mountinfo` (`ip netns add` bind-mounts one under /run/netns). Text in, inodes and
//! mount points out: the walk over /proc that feeds these lives in the collector.

/// The inode of a network namespace link target, `net:[4026531840]`; `None` for anything else
/// (`socket:[...]`, `mnt:[...]`, a path).
pub fn net_link_inode(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"net:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A network namespace bind-mounted somewhere (an nsfs mount whose root is `net:[INODE]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsMount {
    pub inode: u64,
    /// The mount point, unescaped (mountinfo writes space, tab, newline and backslash as
    /// octal `\040`, `\011`, `\012`, `\134`).
    pub mount_point: String,
}

impl NetnsMount {
    /// The `ip netns` name: the file name of a mount under /run/netns or /var/run/netns.
    pub fn ip_netns_name(&self) -> Option<&str> {
        ["/run/netns/", "/var/run/netns/"]
            .iter()
            .find_map(|dir| self.mount_point.strip_prefix(dir))
            .filter(|name| !name.is_empty() && !name.contains('/'))
    }
}

/// The network namespace mounts of one `/proc/PID/mountinfo` text (proc(5) format:
/// `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`).
/// Lines that are not nsfs mounts of a network namespace, or are malformed, are skipped.
pub fn netns_mounts(mountinfo: &str) -> Vec<NetnsMount> {
    mountinfo.lines().filter_map(netns_mount).collect()
}

fn netns_mount(line: &str) -> Option<NetnsMount> {
    let (before, after) = line.split_once(" - ")?;
    if after.split(' ').next()? != "nsfs" {
        return None;
    }
    let mut fields = before.split(' ');
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    let inode = net_link_inode(root.as_bytes())?;
    Some(NetnsMount { inode, mount_point: unescape(mount_point)? })
}

/// Undoes mountinfo's octal escapes (`\040` is a space); `None` for a broken escape.
fn unescape(field: &str) -> Option<String> {
    if !field.contains('\\') {
        return Some(field.to_owned());
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let octal = bytes.get(i + 1..i + 4)?;
            if !octal.iter().all(|b| (b'0'..=b'7').contains(b)) {
                return None;
            }
            let value = octal.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets() {
        assert_eq!(net_link_inode(b"net:[4026531840]"), Some(4026531840));
        assert_eq!(net_link_inode(b"socket:[4026531840]"), None);
        assert_eq!(net_link_inode(b"net:[]"), None);
        assert_eq!(net_link_inode(b"net:[12a]"), None);
        assert_eq!(net_link_inode(b"net:[99999999999999999999999]"), None);
        assert_eq!(net_link_inode(b"/proc/1/ns/net"), None);
    }

    /// Lines as a 6.x kernel writes them for `ip netns add blue` (bind mount of nsfs) and a
    /// mount point with a space.
    #[test]
    fn mountinfo_lines() {
        let text = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
640 30 0:4 net:[4026532281] /run/netns/blue rw shared:300 - nsfs nsfs rw
641 30 0:4 net:[4026532282] /var/run/netns/red rw - nsfs nsfs rw
642 30 0:4 mnt:[4026532283] /run/mntns rw - nsfs nsfs rw
643 30 0:4 net:[4026532284] /tmp/my\\040ns rw - nsfs nsfs rw
644 30 0:4 net:[4026532285] /run/netns/sub/deeper rw - nsfs nsfs rw
broken line
";
        let mounts = netns_mounts(text);
        let found: Vec<(u64, &str, Option<&str>)> =
            mounts.iter().map(|m| (m.inode, m.mount_point.as_str(), m.ip_netns_name())).collect();
        assert_eq!(
            found,
            [
                (4026532281, "/run/netns/blue", Some("blue")),
                (4026532282, "/var/run/netns/red", Some("red")),
                (4026532284, "/tmp/my ns", None),
                (4026532285, "/run/netns/sub/deeper", None),
            ]
        );
    }

    #[test]
    fn broken_escapes_are_skipped() {
        assert_eq!(unescape("a\\04"), None);
        assert_eq!(unescape("a\\999"), None);
        assert_eq!(unescape("a\\134b").as_deref(), Some("a\\b"));
    }
}
