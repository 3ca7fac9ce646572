//! The files `porthog analyze` reads. A large regular file is mapped rather than copied, and the
//! pages the importer is done with are dropped as it goes (`import::Release`), so a
//! million-row capture never sits in memory whole (issue 11: under 200 bytes per row). Small
//! files, standard input and whatever cannot be mapped are read into memory.
//! A mapped file must not be cut short while porthog reads it (the kernel would stop it with
//! SIGBUS): captures are finished files, and a file still being written is read, not mapped.
//! Mapping is Linux only (MADV_DONTNEED); elsewhere every file is read.

use std::io::Read;
use std::ops::Deref;
use std::path::Path;

use anyhow::{Context, Result};

/// Files at least this large are mapped: below it, the copy costs less than the mapping.
pub const MAP_AT_LEAST: u64 = 32 << 20;

/// One input's bytes.
pub enum Contents {
    Read(Vec<u8>),
    #[cfg(target_os = "linux")]
    Mapped(memmap2::Mmap),
}

impl Deref for Contents {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Contents::Read(v) => v,
            #[cfg(target_os = "linux")]
            Contents::Mapped(m) => m,
        }
    }
}

/// Reads `-` (standard input) or a file; a regular file of `map_at_least` bytes or more is
/// mapped.
pub fn open(path: &Path, map_at_least: u64) -> Result<Contents> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading standard input")?;
        return Ok(Contents::Read(buf));
    }
    let read = || -> Result<Contents> {
        Ok(Contents::Read(
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        ))
    };
    #[cfg(not(target_os = "linux"))]
    {
        let _ = map_at_least;
        read()
    }
    #[cfg(target_os = "linux")]
    map(path, map_at_least, read)
}

#[cfg(target_os = "linux")]
fn map(path: &Path, map_at_least: u64, read: impl Fn() -> Result<Contents>) -> Result<Contents> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
    // A file that is still growing (a capture being written) is read: its mapping could be
    // cut short under us.
    if !meta.is_file() || meta.len() < map_at_least || still_written(&meta) {
        return read();
    }
    // SAFETY: the mapping is read-only and private; porthog never writes the file. Another
    // process could change or truncate it while it is mapped, which is why recently modified
    // files are read instead (above) and the module says so.
    match unsafe { memmap2::MmapOptions::new().map(&file) } {
        Ok(map) => {
            let _ = map.advise(memmap2::Advice::Sequential);
            Ok(Contents::Mapped(map))
        }
        Err(_) => read(),
    }
}

#[cfg(target_os = "linux")]
/// Modified in the last two seconds: perhaps still being written.
fn still_written(meta: &std::fs::Metadata) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_none_or(|age| age < std::time::Duration::from_secs(2))
}

/// What the importer calls with each span it has read: drops the pages of a mapped input the
/// span covers. They come back from the file if the importer looks back (an error quoting a
/// line). Two threads may call it at once (a large section is read in two halves). Elsewhere
/// than Linux nothing is mapped, so it has nothing to do.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub struct Pager<'a> {
    inputs: &'a [Contents],
}

impl<'a> Pager<'a> {
    pub fn new(inputs: &'a [Contents]) -> Pager<'a> {
        Pager { inputs }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn release(&self, _done: &[u8]) {}

    #[cfg(target_os = "linux")]
    pub fn release(&self, done: &[u8]) {
        let page = rustix::param::page_size();
        for contents in self.inputs {
            #[allow(irrefutable_let_patterns)]
            let Contents::Mapped(map) = contents else { continue };
            let base = map.as_ptr() as usize;
            let at = done.as_ptr() as usize;
            if at < base || at + done.len() > base + map.len() {
                continue;
            }
            // Whole pages only: the first from the span's first page boundary on, and the
            // last page kept (a line may run on into it).
            let from = (at - base).div_ceil(page) * page;
            let end = ((at - base + done.len()) / page).saturating_sub(1) * page;
            if end > from {
                // SAFETY: the range lies inside this private, read-only file mapping; after
                // MADV_DONTNEED a read faults the bytes back in from the file. They are the
                // same bytes only while nobody writes the file: the assumption every file
                // mapping makes (see `map`), narrowed by mapping only files unchanged for 2 s.
                // A capture rewritten during the analysis can break the UTF-8 check's promise.
                let _ = unsafe {
                    map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, end - from)
                };
            }
            return;
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_file_reads_the_same_after_its_pages_are_dropped() {
        let dir = std::env::temp_dir().join(format!("porthog-capture-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cap.txt");
        let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        // Old enough to be mapped.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
        let inputs = [open(&path, 1).unwrap()];
        assert!(matches!(inputs[0], Contents::Mapped(_)));
        let pager = Pager::new(&inputs);
        pager.release(&inputs[0][..text.len() / 2]);
        pager.release(&inputs[0][text.len() / 2..]);
        pager.release(&inputs[0][5000..70_000]);
        assert_eq!(&inputs[0][..], text.as_bytes());
        // Fresh files and small ones are read.
        std::fs::write(&path, &text).unwrap();
        assert!(matches!(open(&path, 1).unwrap(), Contents::Read(_)));
        assert!(matches!(open(&path, u64::MAX).unwrap(), Contents::Read(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
