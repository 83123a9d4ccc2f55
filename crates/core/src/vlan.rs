//! VLAN membership of ports: access and trunk modes, ingress classification and the
//! tag operation each egress port needs. This is the 802.1Q C-VLAN component of the bridge.

use core::fmt;

use vbridge_wire::Vid;
use vbridge_wire::vlan::{TPID_8021Q, Tag};

use crate::counters::DropReason;
use crate::error::ConfigError;

/// A set of VLAN ids (1..=4094) as a 4096-bit map.
#[derive(Clone, PartialEq, Eq)]
pub struct VidSet([u64; 64]);

impl Default for VidSet {
    fn default() -> Self {
        VidSet([0; 64])
    }
}

impl VidSet {
    /// The empty set.
    pub fn new() -> VidSet {
        VidSet::default()
    }

    /// Every usable VID, 1..=4094.
    pub fn all() -> VidSet {
        let mut s = VidSet([u64::MAX; 64]);
        s.0[0] &= !1; // VID 0
        s.0[63] &= !(1 << 63); // VID 4095
        s
    }

    /// Adds `vid`.
    pub fn insert(&mut self, vid: Vid) {
        let v = vid.get() as usize;
        self.0[v / 64] |= 1 << (v % 64);
    }

    /// Removes `vid`.
    pub fn remove(&mut self, vid: Vid) {
        let v = vid.get() as usize;
        self.0[v / 64] &= !(1 << (v % 64));
    }

    /// Whether `vid` (a raw 12-bit value) is in the set.
    #[inline]
    pub fn contains_raw(&self, vid: u16) -> bool {
        let v = (vid & 0x0fff) as usize;
        self.0[v / 64] & (1 << (v % 64)) != 0
    }

    /// Whether `vid` is in the set.
    #[inline]
    pub fn contains(&self, vid: Vid) -> bool {
        self.contains_raw(vid.get())
    }

    /// Number of VIDs.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// No VID at all.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The VIDs in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = Vid> + '_ {
        (1..=Vid::MAX)
            .filter(|&v| self.contains_raw(v))
            .filter_map(|v| Vid::new(v).ok())
    }

    /// Parses `10,20,100-110` (the form `vbr link set ... trunk` takes).
    pub fn parse_list(s: &str) -> Result<VidSet, ConfigError> {
        let mut set = VidSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (parse_vid(a)?, parse_vid(b)?),
                None => {
                    let v = parse_vid(part)?;
                    (v, v)
                }
            };
            if lo > hi {
                return Err(ConfigError::OutOfRange {
                    what: "VLAN range",
                    value: u64::from(lo.get()),
                    range: "the first VID of a range must not exceed the last",
                });
            }
            for v in lo.get()..=hi.get() {
                set.insert(Vid::new(v).map_err(|_| ConfigError::InvalidVid(v))?);
            }
        }
        Ok(set)
    }
}

fn parse_vid(s: &str) -> Result<Vid, ConfigError> {
    let s = s.trim();
    let n: u16 = s
        .parse()
        .map_err(|_| ConfigError::NotAVid(s.escape_debug().to_string()))?;
    Vid::new(n).map_err(|_| ConfigError::InvalidVid(n))
}

impl fmt::Display for VidSet {
    /// Compact ranges: `10,20,100-110`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.iter().map(Vid::get).peekable();
        while let Some(lo) = iter.next() {
            let mut hi = lo;
            while iter.peek() == Some(&(hi + 1)) {
                hi = iter.next().unwrap_or(hi);
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for VidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VidSet({self})")
    }
}

/// How a port takes part in VLANs.
// A trunk's VID set is 512 bytes inline so classification reads it without a pointer
// chase; modes are only moved on configuration, never per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VlanMode {
    /// Untagged in and out, all traffic in one VLAN. Tagged frames are dropped.
    Access(Vid),
    /// Tagged frames of the allowed VIDs; untagged frames belong to `native`, if any, and
    /// frames of `native` leave untagged.
    Trunk {
        allowed: VidSet,
        native: Option<Vid>,
    },
}

impl Default for VlanMode {
    /// Access VLAN 1, as every Linux bridge port starts.
    fn default() -> Self {
        VlanMode::Access(Vid::DEFAULT)
    }
}

/// What must happen to a frame's outer tag on the way out of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOp {
    /// Leave the frame as it is.
    Keep,
    /// Insert this tag as the outermost one.
    Push(Tag),
    /// Remove the outer tag.
    Pop,
    /// Rewrite the outer tag's VID (priority-tagged frames leaving tagged).
    SetVid(Vid),
}

/// The VLAN a frame was classified into on ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Classified {
    pub(crate) vid: Vid,
    /// The frame arrived with an outer tag (usable VID or priority tag).
    pub(crate) tagged: bool,
    /// The VID carried in the tag (0 for priority tags).
    pub(crate) carried: u16,
}

impl VlanMode {
    /// Classifies a frame arriving with outer tag `tag` (None: untagged).
    #[inline]
    pub(crate) fn classify(&self, tag: Option<Tag>) -> Result<Classified, DropReason> {
        match (self, tag) {
            (_, Some(t)) if t.tpid != TPID_8021Q => Err(DropReason::BadTag),
            (_, Some(t)) if t.vid == 0x0fff => Err(DropReason::BadTag),
            (VlanMode::Access(pvid), None) => Ok(Classified {
                vid: *pvid,
                tagged: false,
                carried: 0,
            }),
            (VlanMode::Access(pvid), Some(t)) if t.vid == 0 => Ok(Classified {
                vid: *pvid,
                tagged: true,
                carried: 0,
            }),
            (VlanMode::Access(_), Some(_)) => Err(DropReason::TaggedOnAccess),
            (VlanMode::Trunk { allowed, native }, t) => match t.filter(|t| t.vid != 0) {
                None => native
                    .map(|n| Classified {
                        vid: n,
                        tagged: t.is_some(),
                        carried: 0,
                    })
                    .ok_or(DropReason::UntaggedOnTrunk),
                Some(t)
                    if allowed.contains_raw(t.vid) || native.is_some_and(|n| n.get() == t.vid) =>
                {
                    Ok(Classified {
                        vid: Vid::new(t.vid).map_err(|_| DropReason::BadTag)?,
                        tagged: true,
                        carried: t.vid,
                    })
                }
                Some(_) => Err(DropReason::VlanNotAllowed),
            },
        }
    }

    /// Whether frames of `vid` may leave (and enter) this port.
    #[inline]
    pub fn carries(&self, vid: Vid) -> bool {
        match self {
            VlanMode::Access(p) => *p == vid,
            VlanMode::Trunk { allowed, native } => allowed.contains(vid) || *native == Some(vid),
        }
    }

    /// Whether frames of `vid` leave this port untagged (assumes [`VlanMode::carries`]).
    #[inline]
    pub fn egress_untagged(&self, vid: Vid) -> bool {
        match self {
            VlanMode::Access(_) => true,
            VlanMode::Trunk { native, .. } => *native == Some(vid),
        }
    }

    /// The tag operation for a frame classified as `c` leaving this port.
    #[inline]
    pub(crate) fn egress_op(&self, c: Classified) -> TagOp {
        match (c.tagged, self.egress_untagged(c.vid)) {
            (false, true) => TagOp::Keep,
            (false, false) => TagOp::Push(Tag::dot1q(c.vid)),
            (true, true) => TagOp::Pop,
            (true, false) if c.carried == c.vid.get() => TagOp::Keep,
            (true, false) => TagOp::SetVid(c.vid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vid(v: u16) -> Vid {
        Vid::new(v).unwrap()
    }

    fn tag(v: u16) -> Option<Tag> {
        Some(Tag::from_tci(TPID_8021Q, v))
    }

    #[test]
    fn vidset_ops_and_format() {
        let s = VidSet::parse_list("10, 20,100-103").unwrap();
        assert_eq!(s.len(), 6);
        assert!(s.contains(vid(101)) && !s.contains(vid(11)));
        assert_eq!(s.to_string(), "10,20,100-103");
        assert_eq!(VidSet::all().len(), 4094);
        assert!(!VidSet::all().contains_raw(0) && !VidSet::all().contains_raw(4095));
        assert_eq!(VidSet::parse_list("0"), Err(ConfigError::InvalidVid(0)));
        assert_eq!(
            VidSet::parse_list("4095"),
            Err(ConfigError::InvalidVid(4095))
        );
        assert!(VidSet::parse_list("5-3").is_err());
        assert!(VidSet::parse_list("x").is_err());
        let mut e = VidSet::new();
        assert!(e.is_empty());
        e.insert(vid(7));
        e.remove(vid(7));
        assert!(e.is_empty());
    }

    #[test]
    fn access_classification() {
        let a = VlanMode::Access(vid(10));
        assert_eq!(a.classify(None).unwrap().vid, vid(10));
        assert_eq!(a.classify(tag(10)), Err(DropReason::TaggedOnAccess));
        assert_eq!(a.classify(tag(20)), Err(DropReason::TaggedOnAccess));
        let prio = a.classify(tag(0)).unwrap();
        assert_eq!((prio.vid, prio.tagged), (vid(10), true));
        assert_eq!(a.egress_op(prio), TagOp::Pop);
        let qinq = Some(Tag::from_tci(0x88a8, 10));
        assert_eq!(a.classify(qinq), Err(DropReason::BadTag));
    }

    #[test]
    fn trunk_classification_and_egress() {
        let t = VlanMode::Trunk {
            allowed: VidSet::parse_list("10,20").unwrap(),
            native: Some(vid(1)),
        };
        let c = t.classify(tag(20)).unwrap();
        assert_eq!(c.vid, vid(20));
        assert_eq!(t.classify(tag(30)), Err(DropReason::VlanNotAllowed));
        assert_eq!(t.classify(tag(4095)), Err(DropReason::BadTag));
        assert_eq!(t.classify(None).unwrap().vid, vid(1));
        assert_eq!(t.egress_op(c), TagOp::Keep);
        let access = VlanMode::Access(vid(20));
        assert_eq!(access.egress_op(c), TagOp::Pop);
        let untagged = access.classify(None).unwrap();
        assert_eq!(t.egress_op(untagged), TagOp::Push(Tag::dot1q(vid(20))));
        assert!(t.carries(vid(1)) && t.egress_untagged(vid(1)));
        let no_native = VlanMode::Trunk {
            allowed: VidSet::all(),
            native: None,
        };
        assert_eq!(no_native.classify(None), Err(DropReason::UntaggedOnTrunk));
        assert_eq!(no_native.classify(tag(0)), Err(DropReason::UntaggedOnTrunk));
        let prio_on_native = t.classify(tag(0)).unwrap();
        assert_eq!(no_native.egress_op(prio_on_native), TagOp::SetVid(vid(1)));
    }
}
