//! Fuzz target: the mountinfo nsfs parser and the `net:[INODE]` link parser must never panic,
//! and a mount they find must name a mount point that unescapes from the input's line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = porthog_core::nsfs::net_link_inode(data);
    let text = String::from_utf8_lossy(data);
    for mount in porthog_core::nsfs::netns_mounts(&text) {
        // The inode is the number in a `net:[...]` field (leading zeros allowed).
        assert!(text.contains("net:["), "{mount:?}");
        if let Some(name) = mount.ip_netns_name() {
            assert!(!name.is_empty() && !name.contains('/'), "{name:?}");
        }
    }
});
