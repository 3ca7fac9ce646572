//! `check --perfdata`: the first line a monitoring plugin prints (Nagios plugin API, also read
//! by Icinga, Naemon, Shinken and Sensu): `PORTHOG STATUS - summary | perfdata`, one perfdata
//! item per tightest pool, `label=used;warn;crit;0;capacity` in ports. It only formats; the
//! thresholds as port counts come from the core (`Pool::first_used_at`).

use porthog_core::{Level, Report, Thresholds};

/// The status line, newline-terminated: at most `top` pools, tightest first.
pub fn status_line(report: &Report, thresholds: &Thresholds, top: usize) -> String {
    let status = match report.exit_code() {
        0 => "OK",
        1 => "WARNING",
        2 => "CRITICAL",
        _ => "UNKNOWN",
    };
    // The text before `|` is free, except `|` itself, which would start the perfdata.
    let summary = report.summary.replace('|', "/").replace('\n', " ");
    let mut line = format!("PORTHOG {status} - {summary}");
    let items: Vec<String> = report
        .pools
        .iter()
        .take(top)
        .map(|p| {
            // The plugin API alerts when a value is above `warn`; porthog warns at the first
            // count at the level, so the perfdata threshold is one below it.
            let warn = p.first_used_at(Level::Warn, thresholds).saturating_sub(1);
            let crit = p.first_used_at(Level::Critical, thresholds).saturating_sub(1);
            format!("{}={};{warn};{crit};0;{}", label(&p.label()), p.effective, p.capacity)
        })
        .collect();
    if !items.is_empty() {
        line.push_str(" | ");
        line.push_str(&items.join(" "));
    }
    line.push('\n');
    line
}

/// A perfdata label without what the plugin API gives a meaning (space separates items, `=`
/// ends the label, `'` quotes it, `;` separates fields, `|` starts perfdata): each becomes `_`.
fn label(text: &str) -> String {
    text.chars()
        .map(
            |c| {
                if c.is_whitespace() || matches!(c, '=' | '\'' | '"' | ';' | '|') { '_' } else { c }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use porthog_core::{
        AnalyzeOptions, Os, PortRange, Protocol, Snapshot, Socket, State, TwReuse, analyze,
    };

    use super::*;

    /// 60 of 100 ports to 127.0.0.1:7070: past half, so warn on Linux.
    fn report() -> Report {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let mut s = Snapshot::new(Os::Linux, "sock_diag");
        s.settings.tcp_range = PortRange::new(40000, 40099);
        s.settings.udp_range = s.settings.tcp_range;
        s.settings.tw_reuse = Some(TwReuse::Loopback);
        s.settings.timestamps = Some(true);
        s.sockets = (40000..40060)
            .map(|p| Socket::new(Protocol::Tcp, State::Established, (v4, p), (v4, 7070)))
            .collect();
        analyze(&s, &AnalyzeOptions::default())
    }

    #[test]
    fn the_first_line_carries_status_and_perfdata_of_the_tightest_pools() {
        let r = report();
        let line = status_line(&r, &Thresholds::default(), 2);
        assert_eq!(line.lines().count(), 1);
        let (text, perf) = line.trim_end().split_once(" | ").expect("perfdata after ` | `");
        assert!(text.starts_with("PORTHOG WARNING - "), "{text}");
        let items: Vec<&str> = perf.split(' ').collect();
        assert_eq!(
            items,
            [
                // Warn from 51 (half the range), critical from 90: the plugin alerts above.
                "tcp_127.0.0.1_->_127.0.0.1:7070=60;50;89;0;100",
                // The global bind() pool has no half-range rule: warn from 70.
                "tcp_bind(0.0.0.0,_0)=60;69;89;0;100",
            ]
        );
    }

    #[test]
    fn top_limits_the_items_and_an_empty_report_has_no_perfdata() {
        let r = report();
        let line = status_line(&r, &Thresholds::default(), 1);
        assert_eq!(line.matches('=').count(), 1, "{line}");
        let mut empty = r.clone();
        empty.pools.clear();
        empty.verdict = Level::Ok;
        empty.summary = "no pool | in use".into();
        let line = status_line(&empty, &Thresholds::default(), 5);
        assert_eq!(line, "PORTHOG OK - no pool / in use\n");
    }

    #[test]
    fn labels_lose_what_the_plugin_api_reserves() {
        assert_eq!(label("a b=c'd\"e;f|g\th"), "a_b_c_d_e_f_g_h");
        assert_eq!(label("udp pool"), "udp_pool");
    }
}
