//! Who holds the ports: per-process totals, states, ephemeral ports and destinations.
//! One pass over the sockets plus a sort of compact (pid, protocol, port) keys.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;

use crate::model::{Protocol, Snapshot, State};
use crate::pool::Allocation;
use crate::report::{ProcessReport, ProgramReport, RemoteCount};

/// How many destinations a process lists.
const TOP_REMOTES: usize = 3;

#[derive(Default)]
struct Tally {
    sockets: u32,
    states: [u32; State::ALL.len()],
    remotes: HashMap<SocketAddr, u32>,
}

/// Every process that owns a socket, most ephemeral ports first.
pub(crate) fn processes(
    snapshot: &Snapshot,
    tcp: &Allocation,
    udp: &Allocation,
) -> Vec<ProcessReport> {
    // Each process's tally, found through `index`; a process's sockets come mostly together,
    // so the last one is tried first.
    let mut tallies: Vec<(u32, Tally)> = Vec::new();
    let mut index: HashMap<u32, usize> = HashMap::default();
    let mut last: Option<(u32, usize)> = None;
    // (pid, protocol, port) packed in one u64: sorting a million of them is what this costs.
    let mut ports: Vec<u64> = Vec::new();
    for s in &snapshot.sockets {
        let Some(pid) = s.pid.map(|p| p.get()) else { continue };
        let at = match last {
            Some((p, at)) if p == pid => at,
            _ => {
                let at = *index.entry(pid).or_insert_with(|| {
                    tallies.push((pid, Tally::default()));
                    tallies.len() - 1
                });
                last = Some((pid, at));
                at
            }
        };
        let t = &mut tallies[at].1;
        t.sockets += 1;
        t.states[s.state as usize] += 1;
        if s.is_connected() {
            *t.remotes.entry(SocketAddr::new(s.remote_ip, s.remote_port)).or_default() += 1;
        }
        let alloc = if s.protocol == Protocol::Tcp { tcp } else { udp };
        if alloc.is_pool_port(s.local_port) {
            ports.push(
                u64::from(pid) << 17
                    | u64::from(s.protocol == Protocol::Udp) << 16
                    | u64::from(s.local_port),
            );
        }
    }
    ports.sort_unstable();
    ports.dedup();
    let mut ephemeral: HashMap<u32, u32> = HashMap::default();
    for key in ports {
        *ephemeral.entry((key >> 17) as u32).or_default() += 1;
    }

    let mut out: Vec<ProcessReport> = tallies
        .into_iter()
        .map(|(pid, t)| {
            let p = snapshot.process(pid);
            let placement = p.map(|p| p.placement.clone()).unwrap_or_default();
            let mut remotes: Vec<RemoteCount> = t
                .remotes
                .into_iter()
                .map(|(remote, count)| RemoteCount { remote, count })
                .collect();
            remotes.sort_by(|a, b| b.count.cmp(&a.count).then(a.remote.cmp(&b.remote)));
            remotes.truncate(TOP_REMOTES);
            ProcessReport {
                pid,
                name: p.map_or_else(|| "?".to_owned(), |p| p.name.clone()),
                cmdline: p.map(|p| p.cmdline.clone()).unwrap_or_default(),
                user: p.and_then(|p| p.user.clone().or_else(|| p.uid.map(|u| u.to_string()))),
                container: placement.container,
                unit: placement.unit,
                pod: placement.pod,
                sockets: t.sockets,
                ephemeral_ports: ephemeral.get(&pid).copied().unwrap_or(0),
                states: State::ALL
                    .iter()
                    .zip(t.states)
                    .filter(|(_, n)| *n > 0)
                    .map(|(s, n)| (s.as_str().to_owned(), n))
                    .collect::<BTreeMap<_, _>>(),
                top_remotes: remotes,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.ephemeral_ports
            .cmp(&a.ephemeral_ports)
            .then(b.sockets.cmp(&a.sockets))
            .then(a.pid.cmp(&b.pid))
    });
    out
}

/// Groups processes by name when some program runs as several PIDs; unknown names ("?") are
/// not grouped.
pub(crate) fn programs(procs: &[ProcessReport]) -> Vec<ProgramReport> {
    let mut by_name: HashMap<&str, ProgramReport> = HashMap::default();
    for p in procs.iter().filter(|p| p.name != "?" && !p.name.is_empty()) {
        let g = by_name.entry(&p.name).or_insert_with(|| ProgramReport {
            name: p.name.clone(),
            pids: Vec::new(),
            sockets: 0,
            ephemeral_ports: 0,
        });
        g.pids.push(p.pid);
        g.sockets += p.sockets;
        g.ephemeral_ports += p.ephemeral_ports;
    }
    if by_name.values().all(|g| g.pids.len() < 2) {
        return Vec::new();
    }
    let mut out: Vec<ProgramReport> = by_name.into_values().collect();
    for g in &mut out {
        g.pids.sort_unstable();
    }
    out.sort_by(|a, b| {
        b.ephemeral_ports
            .cmp(&a.ephemeral_ports)
            .then(b.sockets.cmp(&a.sockets))
            .then(a.name.cmp(&b.name))
    });
    out
}
