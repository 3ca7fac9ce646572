//! porthog-core: the pure half of porthog. The socket model, the port-pool analysis that turns a
//! [`Snapshot`] into a [`Report`], and the text parsers shared by the live collector and the
//! offline importers. Nothing here opens a file, a socket or a clock, so it compiles on any OS.

pub mod analyze;
pub mod bind_pool;
pub mod bpf_record;
pub mod btf;
pub mod cgroup;
pub mod ctnetlink;
mod culprits;
pub mod event_log;
mod findings;
pub mod fleet;
pub mod import;
pub mod level;
pub mod lifecycle;
pub mod model;
pub mod nat_rules;
pub mod nsfs;
pub mod owner_book;
pub mod pool;
pub mod ports;
pub mod proc_net;
mod radix;
pub mod report;
pub mod reuse;
pub mod snat;
pub mod sockstat;
pub mod sysctl;
pub mod tcp_event;
pub mod timeline;
pub mod timestamp;
pub mod trace_report;
pub mod tracepoint;
pub mod win_table;

pub use analyze::{AnalyzeOptions, add_evidence, analyze, analyze_imported};
pub use fleet::{FleetReport, NamespaceReport};
pub use level::{Level, Thresholds};
pub use model::{
    BucketOrigin, Gap, GapKind, KernelFacts, Os, Placement, Process, Protocol, Settings, Snapshot,
    Socket, State, TwReuse,
};
pub use pool::{Pool, PoolKind};
pub use ports::{PortRange, PortSet};
pub use report::{Finding, FindingKind, Report};
