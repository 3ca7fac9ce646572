//! `porthog sockets` (hidden, for tests and debugging): every socket of a live snapshot as JSON
//! Lines, with its owner and the kernel facts the source read. The first line names the source
//! and its gaps. Not a stable contract: the report (`json.rs`) is.

use porthog_core::{BucketOrigin, Snapshot};
use serde_json::json;

pub fn render(snapshot: &Snapshot) -> String {
    let mut out = json!({
        "source": snapshot.source,
        "gaps": snapshot.gaps.iter().map(|g| g.message.as_str()).collect::<Vec<_>>(),
    })
    .to_string();
    out.push('\n');
    for s in &snapshot.sockets {
        let f = s.facts;
        let line = json!({
            "protocol": s.protocol.as_str(),
            "state": s.state.as_str(),
            "local": format!("{}:{}", bracketed(s.local_ip), s.local_port),
            "remote": format!("{}:{}", bracketed(s.remote_ip), s.remote_port),
            "inode": s.inode,
            "cookie": s.cookie,
            "pid": s.pid.map(|p| p.get()),
            "timer_ms": s.timer_ms,
            "bucket": f.bucket().map(|b| match b {
                BucketOrigin::Bind => "bind",
                BucketOrigin::Connect => "connect",
            }),
            "tw_timestamps": f.tw_timestamps(),
            "loopback_dev": f.loopback_dev(),
            "bound_dev": f.bound_dev(),
            "v6only": f.v6only(),
            "family_v6": f.family_v6(),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

fn bracketed(ip: std::net::IpAddr) -> String {
    if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() }
}
