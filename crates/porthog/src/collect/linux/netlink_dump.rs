//! The receive side of a netlink dump, shared by sock_diag and ctnetlink: messages until
//! NLMSG_DONE, its final status, NLMSG_ERROR, the interrupted flag, and the 4-byte padding.

use std::io;

use netlink_packet_core::{ErrorBuffer, NLM_F_DUMP_INTR, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer};
use netlink_sys::Socket;

/// Reads the answers to the dump request with sequence number `seq` (messages of an earlier,
/// abandoned request are skipped) and hands each other message (type, payload) to `each`.
/// Returns whether the kernel flagged the dump interrupted (NLM_F_DUMP_INTR: the table changed
/// under it, so the caller retries or says so).
pub fn receive(
    socket: &Socket,
    buf: &mut [u8],
    seq: u32,
    mut each: impl FnMut(u16, &[u8]) -> io::Result<()>,
) -> io::Result<bool> {
    let mut interrupted = false;
    loop {
        let len = match socket.recv(&mut &mut buf[..], 0) {
            Ok(len) => len,
            // A signal (e.g. the TUI's SIGWINCH) is no reason to lose the dump.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut rest = buf.get(..len).unwrap_or(&buf[..]);
        while !rest.is_empty() {
            let msg = NetlinkBuffer::new_checked(rest).map_err(invalid)?;
            let msg_len = msg.length() as usize;
            interrupted |= msg.flags() & NLM_F_DUMP_INTR != 0;
            if msg.sequence_number() == seq {
                match msg.message_type() {
                    NLMSG_DONE => {
                        // The payload is the dump's final status (`netlink_dump_done`).
                        return match msg.payload().get(..4) {
                            Some(&[a, b, c, d]) if i32::from_ne_bytes([a, b, c, d]) < 0 => {
                                let code = i32::from_ne_bytes([a, b, c, d]);
                                Err(io::Error::from_raw_os_error(-code))
                            }
                            _ => Ok(interrupted),
                        };
                    }
                    NLMSG_ERROR => {
                        let error = ErrorBuffer::new_checked(msg.payload()).map_err(invalid)?;
                        if let Some(code) = error.code() {
                            return Err(io::Error::from_raw_os_error(-code.get()));
                        }
                    }
                    kind => each(kind, msg.payload())?,
                }
            }
            // Messages are padded to 4 bytes (NLMSG_ALIGN).
            rest = rest.get(msg_len.next_multiple_of(4)..).unwrap_or(&[]);
        }
    }
}

fn invalid(e: netlink_packet_core::DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
