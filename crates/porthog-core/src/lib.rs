//! porthog-core: the pure half of porthog. The socket model, the port-pool analysis that turns a
//! [`Snapshot`] into a [`Report`], and the text parsers shared by the live collector and the
//! offline importers. Nothing here opens a file, a socket or a clock, so it compiles on any OS.

pub mod cgroup;
pub mod model;
pub mod ports;
pub mod proc_net;
pub mod sysctl;

pub use model::{
    Gap, GapKind, Os, Placement, Process, Protocol, Settings, Snapshot, Socket, State, TwReuse,
};
pub use ports::{PortRange, PortSet};
