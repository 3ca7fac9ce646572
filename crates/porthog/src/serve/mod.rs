//! `porthog serve`: a Prometheus exporter. A collector thread takes a snapshot every
//! `--interval` (every namespace with `--all-netns`), analyzes it and renders the exposition
//! text once; the HTTP side (`http.rs`, hyper on a single-threaded tokio runtime) only hands
//! out the latest text, so a scrape never waits for more than the first collection.

mod failures;
mod http;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context, Result};
use porthog_core::{FleetReport, GapKind, NamespaceReport};

use crate::cli::ServeOptions;
use crate::collect::{self, CollectOptions};
use crate::present::metrics::{self, Scrape};

/// The latest exposition text, swapped whole after each collection.
#[derive(Clone, Default)]
pub struct Latest(Arc<Mutex<Arc<String>>>);

impl Latest {
    fn set(&self, text: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(text);
    }

    pub fn get(&self) -> Arc<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

pub fn run(opts: &ServeOptions) -> Result<u8> {
    if opts.all_netns {
        crate::fleet::may_enter_namespaces()?;
    }
    let root = collect::may_read_owners();
    // Bound before the first collection, so a taken port fails at once.
    let listener = std::net::TcpListener::bind(opts.listen).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "another process listens there: stop it or choose another port with --listen"
            }
            std::io::ErrorKind::PermissionDenied => {
                "ports below 1024 need root or CAP_NET_BIND_SERVICE: choose another with --listen"
            }
            _ => "check the address with --listen",
        };
        anyhow::anyhow!("cannot listen on {}: {e}; {hint}", opts.listen)
    })?;
    let mode = if root { "root" } else { "unprivileged" };
    // Each failure carries its namespace: with --all-netns every namespace's are counted.
    let book = failures::Book::default();
    let feed = if !root {
        None
    } else {
        let counted = book.clone();
        let scope = crate::trace::Scope::of(opts.all_netns, opts.netns.clone());
        match crate::trace::spawn_feed(scope, move |f| counted.record(&f), |_lost| {}) {
            Ok(feed) => Some(feed),
            Err(e) => {
                eprintln!("porthog: note: no porthog_allocation_failures_total: {e:#}");
                None
            }
        }
    };
    let failures = feed.as_ref().map(|_| book);
    let failures_counted = failures.is_some();
    let latest = Latest::default();
    // With --all-netns as root: the change signal, so unchanged namespaces are not walked again.
    let cache = (opts.all_netns && root).then(|| {
        let (cache, refused) = collect::FleetCache::new();
        match refused {
            None => eprintln!(
                "porthog: change signal on: a namespace is walked again when its TCP sockets \
                 change state or its sockstat counters change, and at least every {} s",
                porthog_core::reuse::MAX_REUSE_AGE.as_secs()
            ),
            Some(e) => eprintln!(
                "porthog: note: no change signal, every namespace walked every collection: {e:#}"
            ),
        }
        cache
    });
    let signal = cache.as_ref().is_some_and(collect::FleetCache::signal_on);
    let mut collector = Collector {
        opts: opts.clone(),
        mode,
        errors: BTreeMap::new(),
        last: None,
        failures,
        cache,
    };
    // The first collection happens before the first answer: scrapes queue on the socket.
    latest.set(collector.round()?);
    let background = latest.clone();
    std::thread::Builder::new()
        .name("porthog-collect".into())
        .spawn(move || collector.forever(&background))
        .context("cannot start the collector thread")?;
    eprintln!("porthog: serving metrics on http://{}/metrics", opts.listen);
    http::serve(listener, latest, page(mode, failures_counted, signal).into())
}

/// The `/` page: what is exported and what this mode leaves out.
fn page(mode: &str, failures: bool, signal: bool) -> String {
    let owners = if mode == "root" {
        "Pools, owners and containers are shown."
    } else {
        "Pools only: naming the processes that hold ports needs root (CAP_SYS_PTRACE)."
    };
    let failures = if failures {
        "Allocation failures the kernel refuses are counted (porthog_allocation_failures_total)."
    } else {
        "No allocation failures are counted: the kernel tracer needs root (and tracefs)."
    };
    let signal = if signal {
        format!(
            "Change signal on: a namespace is walked again only when its TCP sockets change state \
             or its sockstat counters change, and at least every {} s (porthog_netns_reused).",
            porthog_core::reuse::MAX_REUSE_AGE.as_secs()
        )
    } else {
        "Change signal off: every namespace is walked every collection.".to_string()
    };
    format!(
        "<!DOCTYPE html>\n<html><head><title>porthog exporter</title></head><body>\n\
         <h1>porthog exporter</h1>\n<p>Ephemeral-port pools, their fill and level, per network \
         namespace: <a href=\"/metrics\">/metrics</a> (Prometheus text format 0.0.4).</p>\n\
         <p>Mode: {mode}. {owners}</p>\n<p>{failures}</p>\n<p>{signal}</p>\n</body></html>\n"
    )
}

struct Collector {
    opts: ServeOptions,
    mode: &'static str,
    /// Failures since start, by reason (porthog_collect_errors_total).
    errors: BTreeMap<String, u64>,
    /// The last good collection and how long it took: shown again when one fails.
    last: Option<(FleetReport, f64)>,
    /// The tracer's failure counts, when it runs.
    failures: Option<failures::Book>,
    /// With --all-netns as root: the change signal and each namespace's last walk.
    cache: Option<collect::FleetCache>,
}

impl Collector {
    fn forever(mut self, latest: &Latest) {
        let mut next = Instant::now() + self.opts.interval;
        loop {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            next += self.opts.interval;
            // A collection longer than the interval starts the next one at once, not in a burst.
            next = next.max(Instant::now());
            match self.round() {
                Ok(text) => latest.set(text),
                Err(e) => eprintln!("porthog: error: cannot render metrics: {e:#}"),
            }
        }
    }

    /// One collection, rendered.
    fn round(&mut self) -> Result<String> {
        let start = Instant::now();
        match self.collect() {
            Ok(fleet) => {
                for gap in &fleet.gaps {
                    let reason = match gap.kind {
                        GapKind::ProcessGone => metrics::ERROR_REASONS[1],
                        _ => metrics::ERROR_REASONS[2],
                    };
                    *self.errors.entry(reason.into()).or_default() += gap.count.unwrap_or(1);
                }
                if let Some(book) = &self.failures {
                    book.set_labels(
                        fleet.namespaces.iter().map(|ns| (ns.inode, ns.label())).collect(),
                    );
                }
                self.last = Some((fleet, start.elapsed().as_secs_f64()));
            }
            Err(e) => {
                eprintln!("porthog: error: collection failed: {e:#}");
                *self.errors.entry(metrics::ERROR_REASONS[0].into()).or_default() += 1;
            }
        }
        let failures = self.failures.as_ref().map(failures::Book::counts);
        let empty = FleetReport::new(vec![], vec![]);
        let (fleet, seconds) = self.last.as_ref().map_or((&empty, 0.0), |(f, s)| (f, *s));
        let text = metrics::render(&Scrape {
            fleet,
            mode: self.mode,
            collect_seconds: seconds,
            errors: &self.errors,
            top_pools: self.opts.top_pools,
            top_processes: self.opts.top_processes,
            failures: failures.as_ref(),
            reuse: self.cache.as_ref().map(|c| metrics::Reuse {
                signal: c.signal_on(),
                walked: c.walked,
                reused: c.reused,
            }),
        })
        .context("encoding the metrics")?;
        if crate::collect::timings() {
            eprintln!(
                "porthog: collection and rendering took {:.1} ms (rendering {} bytes {:.1} ms)",
                start.elapsed().as_secs_f64() * 1e3,
                text.len(),
                (start.elapsed().as_secs_f64() - seconds).max(0.0) * 1e3
            );
        }
        Ok(text)
    }

    fn collect(&mut self) -> Result<FleetReport> {
        if let Some(cache) = self.cache.as_mut() {
            let started = Instant::now();
            let (collected, gaps) = collect::all_namespaces_reusing(cache)?;
            let read = started.elapsed();
            // The last judgement's reports, moved out: `round` replaces `last` with this one.
            let previous = self.last.take().map(|(fleet, _)| fleet.namespaces).unwrap_or_default();
            let fleet = crate::fleet::judge_keeping(collected, gaps, &self.opts.analyze, previous);
            if crate::collect::timings() {
                // Found and read (the namespace reads are timed on their own line): the rest
                // of that is the discovery walk of /proc.
                eprintln!(
                    "porthog: namespaces found and read in {:.1} ms, judged in {:.1} ms",
                    read.as_secs_f64() * 1e3,
                    (started.elapsed() - read).as_secs_f64() * 1e3
                );
            }
            return Ok(fleet);
        }
        if self.opts.all_netns {
            return crate::fleet::report(&self.opts.analyze);
        }
        let snapshot = collect::snapshot(&CollectOptions { netns: self.opts.netns.clone() })?;
        let inode = match &self.opts.netns {
            Some(target) => collect::netns_inode(target)?,
            None => collect::netns_inode(&collect::NetnsTarget::Path("/proc/self/ns/net".into()))?,
        };
        let report = porthog_core::analyze(&snapshot, &self.opts.analyze);
        let ns = NamespaceReport {
            inode,
            name: snapshot.netns.clone(),
            container: None,
            pids: vec![],
            report,
        };
        Ok(FleetReport::new(vec![ns], vec![]))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command, DEFAULT_LISTEN};

    fn serve(args: &[&str]) -> anyhow::Result<crate::cli::ServeOptions> {
        let cli = Cli::try_parse_from(["porthog", "serve"].iter().chain(args))?;
        match cli.command {
            Some(Command::Serve(s)) => s.validate(),
            _ => anyhow::bail!("not serve"),
        }
    }

    #[test]
    fn options() {
        let o = serve(&[]).unwrap();
        assert_eq!(o.listen.to_string(), DEFAULT_LISTEN);
        assert!(o.listen.ip().is_loopback(), "loopback by default");
        assert_eq!((o.interval.as_secs(), o.top_pools, o.top_processes), (15, 20, 10));
        assert!(!o.all_netns);
        let o = serve(&["--all-netns", "--listen", "[::1]:9999", "--top-pools", "3"]).unwrap();
        assert_eq!(
            (o.listen.to_string().as_str(), o.all_netns, o.top_pools),
            ("[::1]:9999", true, 3)
        );
        let e = serve(&["--listen", "localhost"]).unwrap_err().to_string();
        assert!(e.starts_with("--listen localhost: an address and port"), "{e}");
        assert!(
            serve(&["--json"]).unwrap_err().to_string().contains("--json"),
            "serve has no --json"
        );
        assert!(serve(&["--interval", "0"]).is_err());
        assert!(serve(&["--all-netns", "--netns", "blue"]).is_err(), "one or the other");
    }
}
