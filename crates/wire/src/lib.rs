//! `vbridge-wire`: the frame formats vbridge reads and writes.
//!
//! One module per protocol, in the style of smoltcp's `wire`: a zero-copy view
//! `Foo<T: AsRef<[u8]>>` over a buffer with field getters (and `set_*` setters when the
//! buffer is mutable), plus a parsed `FooRepr` with `parse`, `buffer_len` and `emit`.
//!
//! # The contract for untrusted bytes
//! Every view has `new_unchecked` (the caller vouches for the length) and `new_checked`
//! (checks that every fixed field is inside the buffer and returns [`Error::Truncated`]
//! otherwise). After `new_checked` succeeds no getter of that view panics, whatever the
//! bytes are. Values that are in range but not understood are kept (`EtherType::Unknown`,
//! `BpduType::Unknown`), never rejected; values that make the packet meaningless (an
//! IPv4 header length below 20, a BPDU whose length contradicts its type) give
//! [`Error::Malformed`]. Nothing in this crate panics on input and nothing is `unsafe`.

#![forbid(unsafe_code)]

pub mod arp;
pub mod bpdu;
pub mod ethernet;
pub mod icmp;
pub mod ifname;
pub mod ipv4;
pub mod llc;
pub mod summary;
pub mod vlan;
pub mod vxlan;

#[cfg(feature = "serde")]
mod serde_impls;

pub use ethernet::{EtherType, MacAddr};
pub use summary::{summarize, summarize_into};
pub use vlan::{Tag, Vid};

/// Why bytes could not be read as the format asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before a fixed field of the format does.
    #[error("truncated: {what} needs {need} bytes, buffer has {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A field holds a value that makes the rest unreadable.
    #[error("malformed {what}: {why}")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
    /// A value given to a setter or `emit` is out of the format's range.
    #[error("invalid {what}: {why}")]
    Invalid {
        what: &'static str,
        why: &'static str,
    },
}

/// Result of the fallible functions of this crate.
pub type Result<T> = core::result::Result<T, Error>;

/// Checks that `buf` holds at least `need` bytes, naming `what` in the error.
pub(crate) fn check_len(what: &'static str, buf: &[u8], need: usize) -> Result<()> {
    if buf.len() < need {
        Err(Error::Truncated {
            what,
            need,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Checks that an output buffer for `emit` holds `need` bytes ([`Error::Invalid`] if not).
pub(crate) fn check_room(what: &'static str, buf: &[u8], need: usize) -> Result<()> {
    if buf.len() < need {
        Err(Error::Invalid {
            what,
            why: "buffer too small",
        })
    } else {
        Ok(())
    }
}

/// Reads a big-endian u16 at `at`; the caller has checked the length.
#[inline]
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads a big-endian u32 at `at`; the caller has checked the length.
#[inline]
pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}
