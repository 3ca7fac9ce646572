//! The JSON report: the versioned contract of docs/report.schema.json, pretty-printed.

use porthog_core::Report;

pub fn render(report: &Report) -> serde_json::Result<String> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::num::NonZeroU32;

    use porthog_core::{
        AnalyzeOptions, Gap, GapKind, Os, PortRange, PortSet, Process, Protocol, Snapshot, Socket,
        State, TwReuse, analyze,
    };

    const SCHEMA: &str = include_str!("../../../../docs/report.schema.json");

    fn validator() -> jsonschema::Validator {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema is valid")
    }

    /// Issue 8: the record and trace schemas carry the report schema in `$defs.report` (a
    /// copy of docs/report.schema.json, bundled by scripts/bundle_schemas.py), so a standard
    /// validator needs no network and no registry; before, a `$ref` to an URL that resolves
    /// nowhere made building them fail.
    #[test]
    fn schemas_are_self_contained() {
        let mut report: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        report.as_object_mut().unwrap().remove("$schema");
        let line = serde_json::json!({
            "type": "sample",
            "time": "2026-11-24T02:00:00.000Z",
            "report": { "verdict": "nope" },
        });
        for (name, text) in [
            ("record", include_str!("../../../../docs/record.schema.json")),
            ("trace", include_str!("../../../../docs/trace.schema.json")),
        ] {
            let schema: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                schema["$defs"]["report"], report,
                "docs/{name}.schema.json carries an old copy of the report schema: run scripts/bundle_schemas.py"
            );
            let v = jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("docs/{name}.schema.json is not self-contained: {e}"));
            if name == "record" {
                assert!(!v.is_valid(&line), "the bundled report schema is applied");
            }
        }
    }

    fn sock(state: State, l: (&str, u16), r: (&str, u16), pid: u32) -> Socket {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        Socket {
            pid: NonZeroU32::new(pid),
            ..Socket::new(Protocol::Tcp, state, (ip(l.0), l.1), (ip(r.0), r.1))
        }
    }

    /// A snapshot that exercises every part of the report: pools of each kind, IPv6, TIME_WAIT,
    /// leaks, a listener in the range, gaps.
    fn busy(os: Os) -> Snapshot {
        let mut s = Snapshot::new(os, "test");
        s.settings.tcp_range = PortRange::new(40000, 40099);
        s.settings.udp_range = s.settings.tcp_range;
        s.settings.tcp_reserved =
            Some(PortSet::from_ranges([PortRange::new(40090, 40099).unwrap()]));
        s.settings.tw_reuse = Some(TwReuse::Loopback);
        s.settings.timestamps = Some(true);
        s.sockets = (40000..40080)
            .map(|p| sock(State::Established, ("10.0.0.7", p), ("10.0.0.5", 5432), 42))
            .collect();
        s.sockets
            .extend((40000..40010).map(|p| sock(State::TimeWait, ("::1", p), ("::1", 7070), 0)));
        s.sockets
            .extend((40010..40020).map(|p| sock(State::CloseWait, ("::1", p), ("::1", 7070), 43)));
        s.sockets.push(sock(State::Listen, ("0.0.0.0", 40050), ("0.0.0.0", 0), 7));
        s.sockets.push(Socket {
            inode: 9,
            ..Socket::new(
                Protocol::Udp,
                State::Close,
                ("0.0.0.0".parse().unwrap(), 40001),
                ("0.0.0.0".parse().unwrap(), 0),
            )
        });
        s.processes = vec![
            Process { pid: 7, name: "server".into(), ..Default::default() },
            Process {
                pid: 42,
                name: "client".into(),
                user: Some("app".into()),
                ..Default::default()
            },
        ];
        s.gaps.push(Gap {
            kind: GapKind::Unattributed,
            count: Some(1),
            message: "1 socket unattributed".into(),
            advice: Some("run as root".into()),
        });
        s
    }

    #[test]
    fn reports_match_the_schema() {
        let v = validator();
        for snap in [busy(Os::Linux), busy(Os::Windows), Snapshot::new(Os::Linux, "empty")] {
            let report = analyze(&snap, &AnalyzeOptions::default());
            let json: serde_json::Value =
                serde_json::from_str(&super::render(&report).unwrap()).unwrap();
            let errors: Vec<String> =
                v.iter_errors(&json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
            assert!(errors.is_empty(), "{errors:#?}");
        }
    }

    #[test]
    fn the_schema_rejects_what_the_contract_forbids() {
        let v = validator();
        let report = analyze(&busy(Os::Linux), &AnalyzeOptions::default());
        let mut json: serde_json::Value =
            serde_json::from_str(&super::render(&report).unwrap()).unwrap();
        assert!(v.is_valid(&json));
        json["verdict"] = "fine".into();
        assert!(!v.is_valid(&json));
        json["verdict"] = "ok".into();
        json["pools"][0]["remote"] = "somewhere".into();
        assert!(!v.is_valid(&json));
    }
}
