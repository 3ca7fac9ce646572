//! Source-NAT rules from `nft -j list ruleset` and `iptables-save` text: which addresses and
//! port ranges a SNAT pool can use (docs/DOMAIN.md §1.7). Pure parsers; the live collector runs
//! the tools in the namespace. Rules iptables-nft made show in nft's JSON only as opaque `xt`
//! targets, so both listings are read and each keeps the rules it alone can show.

use std::net::IpAddr;

use serde_json::Value;

use crate::model::Protocol;
use crate::ports::PortRange;
use crate::snat::NatRule;

/// A listing that is not what the tool prints.
#[derive(Debug, thiserror::Error)]
#[error("{tool}: {what}; run `{tool}` by hand to see what it prints")]
pub struct NatRulesError {
    pub tool: &'static str,
    pub what: String,
}

/// The `snat` and `masquerade` statements of `nft -j list ruleset` (JSON schema 1), in order.
pub fn parse_nft_json(text: &str) -> Result<Vec<NatRule>, NatRulesError> {
    let err = |what: String| NatRulesError { tool: "nft -j list ruleset", what };
    let doc: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON ({e})")))?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| err("no top-level \"nftables\" array".into()))?;
    let mut out = Vec::new();
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let Some(exprs) = rule.get("expr").and_then(Value::as_array) else { continue };
        let mut protocol = None;
        for e in exprs {
            if let Some(m) = e.get("match") {
                protocol = protocol.or_else(|| matched_protocol(m));
            }
            let (stmt, body) = match (e.get("snat"), e.get("masquerade")) {
                (Some(b), _) => ("snat", b),
                (_, Some(b)) => ("masquerade", b),
                _ => continue,
            };
            let addrs = if stmt == "snat" { nft_addrs(body.get("addr")) } else { None };
            let ports = nft_ports(body.get("port"));
            let mut text = stmt.to_owned();
            match (stmt, body.get("addr"), ports) {
                ("snat", Some(a), p) => {
                    text.push_str(&format!(" to {}", nft_addr_text(a)));
                    if let Some(p) = p {
                        text.push_str(&format!(":{p}"));
                    }
                }
                (_, _, Some(p)) => text.push_str(&format!(" to :{p}")),
                _ => {}
            }
            out.push(NatRule { text, protocol, addrs, ports });
        }
    }
    Ok(out)
}

/// `meta l4proto tcp`, `ip protocol udp`, `ip6 nexthdr tcp`, or a `tcp dport 80` style match.
fn matched_protocol(m: &Value) -> Option<Protocol> {
    let name = |v: &Value| match v.as_str() {
        Some("tcp") => Some(Protocol::Tcp),
        Some("udp") => Some(Protocol::Udp),
        _ => None,
    };
    let left = m.get("left")?;
    if let Some(meta) = left.get("meta") {
        return (meta.get("key")?.as_str()? == "l4proto").then(|| name(m.get("right")?)).flatten();
    }
    let payload = left.get("payload")?;
    match payload.get("field")?.as_str()? {
        "protocol" | "nexthdr" => name(m.get("right")?),
        _ => name(payload.get("protocol")?),
    }
}

/// "10.0.2.1" or {"range": ["10.0.2.1", "10.0.2.3"]}; anything else (a map, a set) is any
/// address.
fn nft_addrs(v: Option<&Value>) -> Option<(IpAddr, IpAddr)> {
    let v = v?;
    if let Some(ip) = v.as_str().and_then(|s| s.parse().ok()) {
        return Some((ip, ip));
    }
    let r = v.get("range")?.as_array()?;
    let lo = r.first()?.as_str()?.parse().ok()?;
    let hi = r.get(1)?.as_str()?.parse().ok()?;
    Some((lo, hi))
}

fn nft_addr_text(v: &Value) -> String {
    match nft_addrs(Some(v)) {
        Some((lo, hi)) if lo == hi => lo.to_string(),
        Some((lo, hi)) => format!("{lo}-{hi}"),
        None => "(a map)".to_owned(),
    }
}

/// 7000 or {"range": [40000, 40009]}.
fn nft_ports(v: Option<&Value>) -> Option<PortRange> {
    let v = v?;
    let port = |v: &Value| v.as_u64().and_then(|n| u16::try_from(n).ok());
    if let Some(p) = port(v) {
        return Some(either_way(p, p));
    }
    let r = v.get("range")?.as_array()?;
    Some(either_way(port(r.first()?)?, port(r.get(1)?)?))
}

/// The `-j SNAT` and `-j MASQUERADE` rules of the `*nat` table of `iptables-save` (or
/// `ip6tables-save`) output, in order. Lines it does not know are skipped: the listing is the
/// tool's own, and a rule it cannot read leaves that pool at the kernel's default range.
pub fn parse_iptables_save(text: &str) -> Vec<NatRule> {
    let mut out = Vec::new();
    let mut in_nat = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table == "nat";
            continue;
        }
        if !in_nat || !line.starts_with("-A ") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let after =
            |flag: &str| words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1));
        let protocol = match after("-p").copied() {
            Some("tcp" | "6") => Some(Protocol::Tcp),
            Some("udp" | "17") => Some(Protocol::Udp),
            _ => None,
        };
        let rule = match after("-j").copied() {
            Some("MASQUERADE") => {
                let ports = after("--to-ports").and_then(|p| port_range(p));
                let text = match after("--to-ports") {
                    Some(p) => format!("MASQUERADE --to-ports {p}"),
                    None => "MASQUERADE".to_owned(),
                };
                NatRule { text, protocol, addrs: None, ports }
            }
            Some("SNAT") => {
                let Some(to) = after("--to-source") else { continue };
                let (addrs, ports) = to_source(to);
                NatRule { text: format!("SNAT --to-source {to}"), protocol, addrs, ports }
            }
            _ => continue,
        };
        out.push(rule);
    }
    out
}

/// "40000-40009" or "7000".
fn port_range(s: &str) -> Option<PortRange> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    Some(either_way(a.parse().ok()?, b.parse().ok()?))
}

/// A rule's port range given in either order: the kernel swaps a reversed one
/// (`nf_nat_l4proto_unique_tuple`).
fn either_way(a: u16, b: u16) -> PortRange {
    PortRange { start: a.min(b), end: a.max(b) }
}

/// `--to-source` values: "10.0.2.1", "10.0.2.1-10.0.2.2:1000-2000", "[2001:db8::1]:1000-2000".
fn to_source(s: &str) -> (Option<(IpAddr, IpAddr)>, Option<PortRange>) {
    let (ips, ports) = if let Some(rest) = s.strip_prefix('[') {
        // [v6]-[v6]:ports or [v6]:ports
        match rest.rsplit_once("]:") {
            Some((ips, ports)) => (ips, Some(ports)),
            None => (rest.trim_end_matches(']'), None),
        }
    } else if s.matches(':').count() > 1 {
        (s, None) // a bare IPv6 address
    } else {
        match s.split_once(':') {
            Some((ips, ports)) => (ips, Some(ports)),
            None => (s, None),
        }
    };
    let ips = ips.replace(['[', ']'], "");
    let (lo, hi) = ips.split_once('-').unwrap_or((&ips, &ips));
    let addrs = match (lo.parse::<IpAddr>(), hi.parse::<IpAddr>()) {
        (Ok(lo), Ok(hi)) => Some((lo, hi)),
        _ => None,
    };
    (addrs, ports.and_then(port_range))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list ruleset` of nftables 1.0.6 (Debian 12) with an iptables-nft rule.
    const NFT: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "nat", "handle": 1}},
{"rule": {"family": "ip", "table": "nat", "chain": "POSTROUTING", "handle": 2, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"counter": {"packets": 0, "bytes": 0}}, {"xt": {"type": "target", "name": "MASQUERADE"}}]}},
{"rule": {"family": "ip", "table": "nat", "chain": "post", "handle": 4, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.0.1.0", "len": 24}}}}, {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"snat": {"addr": "10.0.2.1", "port": {"range": [40000, 40009]}}}]}},
{"rule": {"family": "ip", "table": "nat", "chain": "post", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "protocol"}}, "right": "udp"}}, {"masquerade": {"port": {"range": [5000, 5010]}, "flags": "random"}}]}},
{"rule": {"family": "ip", "table": "nat", "chain": "post", "handle": 6, "expr": [{"masquerade": null}]}},
{"rule": {"family": "ip", "table": "nat", "chain": "post", "handle": 7, "expr": [{"snat": {"addr": {"range": ["10.0.2.1", "10.0.2.3"]}}}]}},
{"rule": {"family": "ip", "table": "nat", "chain": "post", "handle": 8, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}}, {"snat": {"addr": "10.0.2.5", "port": 7000}}]}},
{"rule": {"family": "ip6", "table": "nat6", "chain": "p", "handle": 2, "expr": [{"masquerade": {"flags": "fully-random"}}]}}]}"#;

    #[test]
    fn nft_snat_and_masquerade_statements() {
        let r = parse_nft_json(NFT).unwrap();
        let texts: Vec<&str> = r.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "snat to 10.0.2.1:40000-40009",
                "masquerade to :5000-5010",
                "masquerade",
                "snat to 10.0.2.1-10.0.2.3",
                "snat to 10.0.2.5:7000",
                "masquerade"
            ]
        );
        assert_eq!(r[0].protocol, Some(Protocol::Tcp));
        assert_eq!(r[0].ports, PortRange::new(40000, 40009));
        assert_eq!(r[0].addrs, Some(("10.0.2.1".parse().unwrap(), "10.0.2.1".parse().unwrap())));
        assert_eq!(r[1].protocol, Some(Protocol::Udp));
        assert_eq!((r[2].protocol, r[2].addrs, r[2].ports), (None, None, None));
        assert_eq!(r[3].addrs.map(|a| a.1.to_string()), Some("10.0.2.3".into()));
        assert_eq!(r[4].protocol, Some(Protocol::Tcp));
        assert_eq!(r[4].ports.map(|p| p.len()), Some(1));
    }

    #[test]
    fn nft_output_that_is_not_a_listing_is_an_error_naming_the_tool() {
        let e = parse_nft_json("Error: Could not process rule").unwrap_err();
        assert!(e.to_string().starts_with("nft -j list ruleset: not JSON"), "{e}");
        assert!(parse_nft_json("{}").unwrap_err().to_string().contains("no top-level"));
        assert!(parse_nft_json(r#"{"nftables": []}"#).unwrap().is_empty());
    }

    /// `iptables-save` of iptables 1.8.9 (nf_tables), Debian 12.
    const SAVE: &str = "# Generated by iptables-save v1.8.9 (nf_tables) on Sat Nov 28 05:18:56 2026\n\
        *filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -j MASQUERADE --to-ports 1-2\nCOMMIT\n\
        *nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
        -A POSTROUTING -p tcp -j MASQUERADE --to-ports 40000-40009\n\
        -A POSTROUTING -s 10.1.0.0/16 -p tcp -j SNAT --to-source 10.0.2.1-10.0.2.2:1000-2000\n\
        -A POSTROUTING -j SNAT --to-source 10.0.2.9\n\
        -A POSTROUTING -j SNAT --to-source [2001:db8::1]:3000-3001\n\
        -A POSTROUTING -o eth0 -j MASQUERADE\n\
        -A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1:80\nCOMMIT\n";

    #[test]
    fn iptables_save_nat_rules() {
        let r = parse_iptables_save(SAVE);
        assert_eq!(r.len(), 5, "{r:#?}");
        assert_eq!(r[0].text, "MASQUERADE --to-ports 40000-40009");
        assert_eq!(
            (r[0].protocol, r[0].ports),
            (Some(Protocol::Tcp), PortRange::new(40000, 40009))
        );
        assert_eq!(r[1].addrs.map(|a| a.1.to_string()), Some("10.0.2.2".into()));
        assert_eq!(r[1].ports, PortRange::new(1000, 2000));
        assert_eq!(
            (r[2].ports, r[2].addrs.map(|a| a.0.to_string())),
            (None, Some("10.0.2.9".into()))
        );
        assert_eq!(r[3].addrs.map(|a| a.0.to_string()), Some("2001:db8::1".into()));
        assert_eq!(r[3].ports, PortRange::new(3000, 3001));
        assert_eq!((r[4].text.as_str(), r[4].ports), ("MASQUERADE", None));
    }
}
