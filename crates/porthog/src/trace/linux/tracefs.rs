//! Where tracefs is, and what it says about a tracepoint: its id and its record format. Only
//! reads: porthog never enables events through tracefs (perf_event_open does that, per file
//! descriptor). When tracefs is not mounted, root mounts it at /sys/kernel/tracing, as
//! `perf` and `bpftrace` users expect; that mount is the one thing left behind, and harmless.

use std::io;
use std::path::{Path, PathBuf};

use porthog_core::tracepoint::{self as format, Format};

use super::error::SysError;

const MOUNT_POINT: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

pub struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// Finds tracefs at /sys/kernel/tracing or /sys/kernel/debug/tracing, mounting it at the
    /// former when neither has it.
    pub fn find_or_mount() -> Result<Tracefs, SysError> {
        for root in [MOUNT_POINT, DEBUGFS_TRACING] {
            match std::fs::metadata(Path::new(root).join("events")) {
                Ok(_) => return Ok(Tracefs { root: root.into() }),
                // Not mounted there (an empty directory or none at all).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(SysError { what: format!("reading {root}/events"), error });
                }
            }
        }
        rustix::mount::mount(
            "tracefs",
            MOUNT_POINT,
            "tracefs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .map_err(|e| SysError {
            what: format!("mounting tracefs at {MOUNT_POINT} (it is not mounted)"),
            error: e.into(),
        })?;
        Ok(Tracefs { root: MOUNT_POINT.into() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The format of `group/name`, with the id from its `id` file.
    pub fn format(&self, group: &str, name: &str) -> Result<Format, SysError> {
        let dir = self.root.join("events").join(group).join(name);
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path)
                .map_err(|error| SysError { what: format!("reading {}", path.display()), error })
        };
        let id = read("id")?;
        let mut format = format::parse(&read("format")?).map_err(|e| SysError {
            what: format!("parsing {}", dir.join("format").display()),
            error: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        format.id = id.trim().parse().map_err(|_| SysError {
            what: format!("reading {}", dir.join("id").display()),
            error: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("id {:?} is not a number", id.trim()),
            ),
        })?;
        Ok(format)
    }
}
