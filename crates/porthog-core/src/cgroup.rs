//! Where a process runs, read from the text of `/proc/PID/cgroup`: its container (Docker,
//! containerd/CRI, CRI-O, Podman), its Kubernetes pod and its systemd unit, as a [`Placement`].
//! Text in, placement out: no file access here, and no guessing beyond the path layouts that the
//! runtimes document (an unknown layout gives `None`, never an error).

use crate::model::Placement;

/// Parses the whole `/proc/PID/cgroup` text (cgroup v2 `0::/path`, v1 `N:controllers:/path`,
/// or a hybrid of both). The v2 line is trusted first, then v1's `name=systemd`, then the other
/// v1 lines; each field of the placement comes from the first path that shows it.
pub fn parse(text: &str) -> Placement {
    let mut paths: Vec<(u8, &str)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let rank = match (id, controllers) {
                ("0", "") => 0,
                (_, "name=systemd") => 1,
                _ => 2,
            };
            Some((rank, path.trim()))
        })
        .collect();
    paths.sort_by_key(|&(rank, _)| rank);

    let mut placement = Placement::default();
    for (_, path) in paths {
        let p = parse_path(path);
        placement.container = placement.container.or(p.container);
        placement.pod = placement.pod.or(p.pod);
        placement.unit = placement.unit.or(p.unit);
    }
    placement
}

/// Reads one cgroup path, e.g. `/system.slice/docker-<id>.scope` or
/// `/kubepods/burstable/pod<uid>/<id>`.
pub fn parse_path(path: &str) -> Placement {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut placement = Placement::default();
    let mut under_kubepods = false;
    for (i, &c) in components.iter().enumerate() {
        if placement.container.is_none() {
            placement.container = scope_container(c).or_else(|| {
                // cgroupfs drivers: `/docker/<id>` and `/kubepods/.../pod<uid>/<id>`.
                let previous = i.checked_sub(1).map(|j| components[j]);
                let after_owner = previous == Some("docker")
                    || (under_kubepods && previous.is_some_and(|p| cgroupfs_pod(p).is_some()));
                (after_owner && is_full_id(c)).then(|| c.to_string())
            });
        }
        if placement.pod.is_none() {
            placement.pod = systemd_pod(c).or_else(|| {
                if under_kubepods { cgroupfs_pod(c).map(str::to_string) } else { None }
            });
        }
        if c == "kubepods" || c.starts_with("kubepods.") || c.starts_with("kubepods-") {
            under_kubepods = true;
        }
        // The last service wins: `user@1000.service/app.slice/foo.service` is `foo.service`.
        if c.len() > ".service".len() && c.ends_with(".service") {
            placement.unit = Some(c.to_string());
        }
    }
    placement
}

/// systemd-driver scopes that name a container: `docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`. The `crio-conmon-` and
/// `libpod-conmon-` scopes hold the runtime's monitor, not the container, and are skipped.
fn scope_container(component: &str) -> Option<String> {
    let inner = component.strip_suffix(".scope")?;
    let id = ["docker-", "cri-containerd-", "crio-", "libpod-"]
        .iter()
        .find_map(|prefix| inner.strip_prefix(prefix))?;
    is_short_id(id).then(|| id.to_string())
}

/// `kubepods-burstable-pod<uid>.slice`, `kubepods-besteffort-pod<uid>.slice` and
/// `kubepods-pod<uid>.slice` (Guaranteed QoS): systemd escapes the uid's '-' as '_'.
fn systemd_pod(component: &str) -> Option<String> {
    let inner = component.strip_prefix("kubepods-")?.strip_suffix(".slice")?;
    let uid = match inner.strip_prefix("pod") {
        Some(uid) => uid,
        None => inner.rsplit_once("-pod")?.1,
    };
    is_uid(uid).then(|| uid.replace('_', "-"))
}

/// `pod<uid>` under `/kubepods/` (cgroupfs driver), the uid with its dashes.
fn cgroupfs_pod(component: &str) -> Option<&str> {
    component.strip_prefix("pod").filter(|uid| is_uid(uid))
}

fn is_uid(s: &str) -> bool {
    s.len() >= 8
        && s.bytes().any(|b| b.is_ascii_hexdigit())
        && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
}

/// A full container id as Docker and the CRI runtimes write it: 64 hex digits.
fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Inside a runtime's own scope name a shorter hex id is still unambiguous.
fn is_short_id(s: &str) -> bool {
    (12..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e1c0a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const UID: &str = "5b2c3f0e-8d1a-4e7b-9c6d-0a1b2c3d4e5f";
    const UID_: &str = "5b2c3f0e_8d1a_4e7b_9c6d_0a1b2c3d4e5f";

    fn placement(container: Option<&str>, pod: Option<&str>, unit: Option<&str>) -> Placement {
        Placement {
            container: container.map(str::to_string),
            pod: pod.map(str::to_string),
            unit: unit.map(str::to_string),
        }
    }

    #[test]
    fn systemd_services() {
        assert_eq!(
            parse("0::/system.slice/nginx.service\n"),
            placement(None, None, Some("nginx.service"))
        );
        assert_eq!(
            parse("0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service\n"),
            placement(None, None, Some("foo.service"))
        );
        assert_eq!(parse("0::/user.slice/user-1000.slice/session-3.scope\n"), Placement::default());
        assert_eq!(parse("0::/\n"), Placement::default());
    }

    #[test]
    fn docker_both_drivers() {
        let systemd = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(parse(&systemd), placement(Some(ID), None, None));
        let cgroupfs = format!("0::/docker/{ID}\n");
        assert_eq!(parse(&cgroupfs), placement(Some(ID), None, None));
        // cgroup v1: the name=systemd line and the controller lines agree.
        let v1 = format!(
            "12:pids:/docker/{ID}\n4:cpu,cpuacct:/docker/{ID}\n1:name=systemd:/docker/{ID}\n"
        );
        assert_eq!(parse(&v1), placement(Some(ID), None, None));
    }

    #[test]
    fn other_runtimes() {
        let podman = format!(
            "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
        );
        assert_eq!(parse(&podman).container.as_deref(), Some(ID));
        let conmon = format!("0::/machine.slice/libpod-conmon-{ID}.scope\n");
        assert_eq!(parse(&conmon).container, None);
        let crio = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope\n"
        );
        assert_eq!(parse(&crio), placement(Some(ID), Some(UID), None));
    }

    #[test]
    fn kubernetes_pods() {
        let systemd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(parse(&systemd), placement(Some(ID), Some(UID), None));
        let guaranteed =
            format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(parse(&guaranteed), placement(Some(ID), Some(UID), None));
        let cgroupfs = format!("0::/kubepods/burstable/pod{UID}/{ID}\n");
        assert_eq!(parse(&cgroupfs), placement(Some(ID), Some(UID), None));
        let pause_less = format!("0::/kubepods/pod{UID}/\n");
        assert_eq!(parse(&pause_less), placement(None, Some(UID), None));
    }

    #[test]
    fn v2_line_wins_over_v1() {
        let hybrid = format!("1:name=systemd:/system.slice/old.service\n0::/docker/{ID}\n");
        assert_eq!(parse(&hybrid), placement(Some(ID), None, Some("old.service")));
    }

    #[test]
    fn garbage_gives_nothing() {
        for text in [
            "",
            "\n\n",
            "no colons at all",
            "0::",
            "0::/docker/notanid",
            "0::/docker/",
            "0::/system.slice/docker-.scope",
            "0::/system.slice/.service",
            "0::/kubepods-pod.slice",
            "0::/pod5b2c3f0e-8d1a-4e7b/x",
            "::::::",
            "0::/é/ü-ß.scope/\u{0}",
        ] {
            assert_eq!(parse(text), Placement::default(), "{text:?}");
        }
    }
}
