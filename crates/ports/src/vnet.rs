//! `struct virtio_net_hdr`, the 10-byte offload header that TAP (`IFF_VNET_HDR`) and
//! `AF_PACKET` (`PACKET_VNET_HDR`) put in front of every frame: checksum and GSO state.

/// The legacy 10-byte `struct virtio_net_hdr` (no `num_buffers`).
///
/// Multi-byte fields travel in the host's byte order: that is what TAP does without
/// `TUNSETVNETLE`/`TUNSETVNETBE` and what `AF_PACKET` always does (legacy virtio).
/// On x86-64 and little-endian arm64 this is little-endian.
///
/// Offsets (`hdr_len`, `csum_start`) count from the first byte of the Ethernet header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// One of the `GSO_*` kinds, possibly or-ed with [`VnetHdr::GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers to copy in front of every segment (a hint; kernels accept 0
    /// or a too-small value and recompute it).
    pub hdr_len: u16,
    /// Payload bytes per segment when `gso_type` is not `GSO_NONE`.
    pub gso_size: u16,
    /// Where checksumming starts (the L4 header) when `F_NEEDS_CSUM` is set.
    pub csum_start: u16,
    /// Where, counted from `csum_start`, the checksum field is.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Bytes on the wire.
    pub const LEN: usize = 10;

    /// The checksum from `csum_start` to the end still has to be computed and stored at
    /// `csum_start + csum_offset` (which holds the pseudo-header sum meanwhile).
    pub const F_NEEDS_CSUM: u8 = 1;
    /// The checksum has been verified (receive side).
    pub const F_DATA_VALID: u8 = 2;

    pub const GSO_NONE: u8 = 0;
    pub const GSO_TCPV4: u8 = 1;
    /// UDP fragmentation offload (UFO); the kernel no longer produces it.
    pub const GSO_UDP: u8 = 3;
    pub const GSO_TCPV6: u8 = 4;
    /// UDP segmentation offload (USO, `UDP_SEGMENT`).
    pub const GSO_UDP_L4: u8 = 5;
    /// Flag on `gso_type`: TCP segments carry ECN CWR.
    pub const GSO_ECN: u8 = 0x80;

    /// Decodes the header (host byte order, see the type's docs).
    pub fn from_bytes(b: &[u8; Self::LEN]) -> Self {
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    /// Encodes the header (host byte order, see the type's docs).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// Whether the frame still needs its L4 checksum filled in.
    pub fn needs_csum(&self) -> bool {
        self.flags & Self::F_NEEDS_CSUM != 0
    }

    /// Whether the frame is a GSO super-frame to be cut into `gso_size` segments.
    pub fn is_gso(&self) -> bool {
        self.gso_kind() != Self::GSO_NONE
    }

    /// `gso_type` without the ECN flag.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !Self::GSO_ECN
    }

    /// Whether the header says nothing: the frame is complete as it is.
    pub fn is_plain(&self) -> bool {
        !self.needs_csum() && !self.is_gso()
    }

    /// Follows bytes inserted (`delta > 0`) or removed (`delta < 0`) between the MAC
    /// addresses and the L3 header, e.g. `+4` for a pushed 802.1Q tag, `-4` for a popped
    /// one: moves `csum_start` (when `F_NEEDS_CSUM`) and `hdr_len` (when set).
    /// Saturates at 0 and `u16::MAX` rather than wrapping.
    pub fn shift(&mut self, delta: i16) {
        let moved = |v: u16| (i32::from(v) + i32::from(delta)).clamp(0, i32::from(u16::MAX)) as u16;
        if self.needs_csum() {
            self.csum_start = moved(self.csum_start);
        }
        if self.hdr_len != 0 {
            self.hdr_len = moved(self.hdr_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCPv4 GSO header as the kernel writes it on x86-64: NEEDS_CSUM, TCPV4|ECN,
    /// hdr_len 66, gso_size 1448, csum_start 34, csum_offset 16.
    #[cfg(target_endian = "little")]
    static TCP4_GSO: [u8; 10] = [0x01, 0x81, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00];

    #[cfg(target_endian = "little")]
    #[test]
    fn deconstruct() {
        let h = VnetHdr::from_bytes(&TCP4_GSO);
        assert_eq!(h.flags, VnetHdr::F_NEEDS_CSUM);
        assert_eq!(h.gso_type, VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN);
        assert_eq!(h.gso_kind(), VnetHdr::GSO_TCPV4);
        assert_eq!(h.hdr_len, 66);
        assert_eq!(h.gso_size, 1448);
        assert_eq!(h.csum_start, 34);
        assert_eq!(h.csum_offset, 16);
        assert!(h.needs_csum() && h.is_gso() && !h.is_plain());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn construct() {
        let h = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(h.to_bytes(), TCP4_GSO);
    }

    #[test]
    fn round_trip_and_default() {
        let h = VnetHdr {
            flags: VnetHdr::F_DATA_VALID,
            gso_type: VnetHdr::GSO_UDP_L4,
            hdr_len: 0x1234,
            gso_size: 0xfedc,
            csum_start: 0xa55a,
            csum_offset: 6,
        };
        assert_eq!(VnetHdr::from_bytes(&h.to_bytes()), h);
        assert_eq!(VnetHdr::default().to_bytes(), [0u8; 10]);
        assert!(VnetHdr::default().is_plain());
    }

    #[test]
    fn shift_moves_offsets_for_a_tag() {
        let mut h = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV6,
            hdr_len: 74,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
        };
        h.shift(4);
        assert_eq!((h.csum_start, h.hdr_len), (58, 78));
        assert_eq!(
            (h.csum_offset, h.gso_size),
            (16, 1428),
            "only offsets from the frame start move"
        );
        h.shift(-4);
        assert_eq!((h.csum_start, h.hdr_len), (54, 74));
    }

    #[test]
    fn shift_leaves_unused_fields_alone() {
        // csum_start means nothing without NEEDS_CSUM; hdr_len 0 means "not given".
        let mut h = VnetHdr {
            csum_start: 34,
            ..VnetHdr::default()
        };
        h.shift(4);
        assert_eq!(
            h,
            VnetHdr {
                csum_start: 34,
                ..VnetHdr::default()
            }
        );
    }

    #[test]
    fn shift_saturates() {
        let mut h = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 2,
            hdr_len: 3,
            ..VnetHdr::default()
        };
        h.shift(-4);
        assert_eq!((h.csum_start, h.hdr_len), (0, 0));
        let mut h = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: u16::MAX - 1,
            ..h
        };
        h.shift(4);
        assert_eq!(h.csum_start, u16::MAX);
    }
}
