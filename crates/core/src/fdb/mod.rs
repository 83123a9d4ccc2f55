//! The forwarding database: (VLAN, MAC) -> port, with dynamic entries learned from source
//! addresses and aged out, static entries set by hand, and local entries (the bridge's
//! and its ports' own addresses). Learning is bounded per port and bridge-wide. Entries
//! live in the cache-line hash table of `table.rs`, their last-seen times as 32-bit
//! millisecond stamps counted from an epoch that moves forward before they overflow.

mod table;

use core::time::Duration;

use vbridge_wire::{MacAddr, Vid};

use self::table::{Slot, Table};
use crate::port::PortId;
use crate::time::Instant;

/// The VID under which local entries are kept: they match in every VLAN.
const LOCAL_VID: u16 = 0;
/// The port local entries of the bridge's own MAC point to.
pub const BRIDGE_SELF: PortId = PortId(u16::MAX);

/// How an entry came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Learned from a source address; ages out.
    Dynamic,
    /// Added by hand; never ages, never moves.
    Static,
    /// One of the bridge's own addresses: frames to it are delivered to the host port.
    Local,
}

impl EntryKind {
    /// The word `vbr fdb show` prints.
    pub const fn name(self) -> &'static str {
        match self {
            EntryKind::Dynamic => "dynamic",
            EntryKind::Static => "static",
            EntryKind::Local => "local",
        }
    }
}

/// An entry as the forwarding path sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) port: PortId,
    pub(crate) kind: EntryKind,
}

/// One entry as listed by [`crate::Bridge::fdb_entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: MacAddr,
    /// The VLAN, or `None` for local entries, which match in every VLAN.
    pub vid: Option<Vid>,
    /// The port; [`BRIDGE_SELF`] for the bridge's own MAC.
    pub port: PortId,
    pub kind: EntryKind,
    /// Time since the entry was last refreshed (zero for static and local ones).
    pub age: Duration,
}

/// Which entries a flush removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushFilter {
    /// Only entries on this port.
    pub port: Option<PortId>,
    /// Only entries in this VLAN.
    pub vid: Option<Vid>,
    /// Static entries too (local ones never).
    pub include_static: bool,
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// Known already on this port: its age starts again.
    Refreshed,
    /// A static or local entry holds the address (here or on another port): unchanged.
    Kept,
    /// The bridge's own address coming back: never learned.
    Own,
    /// Ageing time 0: the bridge learns nothing.
    Off,
    /// A new entry.
    New,
    /// The address moved from another port.
    Moved { from: PortId },
    /// Not learned: a limit is reached.
    LimitReached,
    /// Known on `from` but seen here, where a limit keeps it from being learned: the
    /// entry is gone (frames to the address flood until it is learned again).
    Left { from: PortId },
}

#[inline]
/// The FDB's hash of `(vid, mac)` keyed with `seed`, as the table places it (its top bits
/// choose the bucket). For benchmarks and tests that build colliding addresses.
#[doc(hidden)]
pub fn hash_of(vid: u16, mac: MacAddr, seed: u64) -> u64 {
    table::hash(key(vid, mac), seed, table::keyed_mul(seed))
}

const fn key(vid: u16, mac: MacAddr) -> u64 {
    ((vid as u64) << 48) | mac.to_u64()
}

/// The MAC bits of a key: `key(vid, mac) & MAC_MASK == key(LOCAL_VID, mac)`.
const MAC_MASK: u64 = (1 << 48) - 1;

#[inline]
const fn unkey(k: u64) -> (u16, MacAddr) {
    ((k >> 48) as u16, MacAddr::from_u64(k))
}

/// The table with its limits and ageing bookkeeping.
#[derive(Debug, Clone)]
pub(crate) struct Fdb {
    table: Table,
    /// The instant stamps count from: an entry last seen at `t` holds `t - epoch` in
    /// milliseconds. Moved forward before stamps could overflow.
    epoch: u64,
    /// Dynamic entries per port index.
    learned_per_port: Vec<u32>,
    learned_total: u32,
    pub(crate) max_learned: u32,
    pub(crate) ageing: Duration,
    /// No dynamic entry expires before this.
    next_sweep: Option<Instant>,
    pub(crate) moves: u64,
    pub(crate) limit_hits: u64,
    pub(crate) aged_out: u64,
}

/// Least time between two ageing sweeps, so a large table is not scanned too often.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Milliseconds of history kept behind `now` when the epoch moves (about 24.8 days, more
/// than the longest ageing time); an entry older than that is stamped as that old.
const EPOCH_KEEP: u64 = 1 << 31;

impl Fdb {
    pub(crate) fn new(ageing: Duration, max_learned: u32, seed: u64) -> Fdb {
        Fdb {
            table: Table::new(seed),
            epoch: 0,
            learned_per_port: Vec::new(),
            learned_total: 0,
            max_learned,
            ageing,
            next_sweep: None,
            moves: 0,
            limit_hits: 0,
            aged_out: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn learned_total(&self) -> u32 {
        self.learned_total
    }

    pub(crate) fn learned_on(&self, port: PortId) -> u32 {
        self.learned_per_port
            .get(port.index())
            .copied()
            .unwrap_or(0)
    }

    /// Starts bringing the entry for `mac` in `vid` into the cache (see `Bridge::warm`).
    #[inline]
    pub(crate) fn prefetch(&self, vid: Vid, mac: MacAddr) {
        self.table.prefetch(key(vid.get(), mac));
    }

    /// The port a frame to `mac` in `vid` goes to, with the entry kind.
    #[inline(always)]
    pub(crate) fn lookup(&self, vid: Vid, mac: MacAddr) -> Option<(PortId, EntryKind)> {
        match self.table.get(key(vid.get(), mac)) {
            Some(e) => Some((e.port, e.kind)),
            None => self.lookup_local(mac),
        }
    }

    /// [`Fdb::lookup`] of an address not known in the frame's VLAN: one of ours?
    #[inline(never)]
    fn lookup_local(&self, mac: MacAddr) -> Option<(PortId, EntryKind)> {
        self.table
            .get(key(LOCAL_VID, mac))
            .map(|e| (e.port, EntryKind::Local))
    }

    /// The entry for `mac` in `vid` exactly (no local fallback).
    #[inline]
    pub(crate) fn get(&self, vid: Vid, mac: MacAddr) -> Option<Entry> {
        self.table.get(key(vid.get(), mac)).map(|e| Entry {
            port: e.port,
            kind: e.kind,
        })
    }

    /// `now` as a stamp.
    #[inline]
    fn stamp(&mut self, now: Instant) -> u32 {
        match u32::try_from(now.millis().wrapping_sub(self.epoch)) {
            Ok(s) => s,
            Err(_) => self.stamp_slow(now),
        }
    }

    #[cold]
    fn stamp_slow(&mut self, now: Instant) -> u32 {
        if now.millis() < self.epoch {
            return 0; // more than EPOCH_KEEP back in time: as old as can be told
        }
        self.move_epoch(now);
        (now.millis() - self.epoch) as u32
    }

    /// Moves the epoch to `EPOCH_KEEP` before `now`, restamping the dynamic entries.
    fn move_epoch(&mut self, now: Instant) {
        let epoch = now.millis().saturating_sub(EPOCH_KEEP).max(self.epoch);
        let shift = u32::try_from(epoch - self.epoch).unwrap_or(u32::MAX);
        self.table.retain(|_, e| {
            e.seen = e.seen.saturating_sub(shift);
            true
        });
        self.epoch = epoch;
    }

    /// The instant a stamp stands for.
    #[inline]
    fn instant(&self, seen: u32) -> Instant {
        Instant::from_millis(self.epoch + u64::from(seen))
    }

    /// Marks `mac` in `vid` as seen now behind `port` if it is a dynamic entry there;
    /// never creates or moves an entry (what a fast path reports is old news).
    pub(crate) fn refresh(&mut self, now: Instant, vid: Vid, mac: MacAddr, port: PortId) {
        let seen = self.stamp(now);
        if let Some(p) = self.table.find(key(vid.get(), mac)) {
            let e = self.table.at(p);
            if e.port == port && e.kind == EntryKind::Dynamic {
                self.table.set_seen(p, seen);
            }
        }
    }

    /// Learns that `mac` in `vid` sits behind `port`. With `apply` false it only says
    /// what learning would do, changing nothing (`vbr trace`): one code for both.
    #[inline(always)]
    pub(crate) fn learn(
        &mut self,
        now: Instant,
        vid: Vid,
        mac: MacAddr,
        port: PortId,
        port_limit: u32,
        apply: bool,
    ) -> Learned {
        let k = key(vid.get(), mac);
        let seen = if apply { self.stamp(now) } else { 0 };
        match self.table.find(k) {
            // The common case, kept inline: a known address, seen again where it was.
            Some(p) if self.table.at(p).port == port => {
                if self.table.at(p).kind != EntryKind::Dynamic {
                    return Learned::Kept;
                }
                if apply {
                    self.table.set_seen(p, seen);
                }
                Learned::Refreshed
            }
            Some(p) => self.learn_moved(p, seen, port, port_limit, apply),
            None => self.learn_new(now, k, port, port_limit, seen, apply),
        }
    }

    /// [`Fdb::learn`] of a known address seen on another port.
    #[inline(never)]
    fn learn_moved(
        &mut self,
        p: table::Pos,
        seen: u32,
        port: PortId,
        limit: u32,
        apply: bool,
    ) -> Learned {
        let e = self.table.at(p);
        if e.kind != EntryKind::Dynamic {
            return Learned::Kept;
        }
        let from = e.port;
        if limit != 0 && self.learned_on(port) >= limit {
            // Moving would break the limit: forget the address so frames to it flood.
            if apply {
                self.table.remove_at(p);
                self.count(from, -1);
                self.limit_hits += 1;
            }
            return Learned::Left { from };
        }
        if apply {
            self.table.set(p, Slot { port, seen, ..e });
            self.count(from, -1);
            self.count(port, 1);
            self.moves += 1;
        }
        Learned::Moved { from }
    }

    /// [`Fdb::learn`] of an address not in the table.
    #[inline(never)]
    fn learn_new(
        &mut self,
        now: Instant,
        k: u64,
        port: PortId,
        limit: u32,
        seen: u32,
        apply: bool,
    ) -> Learned {
        if self.ageing.is_zero() {
            return Learned::Off;
        }
        if self.table.find(k & MAC_MASK).is_some() {
            return Learned::Own; // our own address coming back: never learn it
        }
        let port_full = limit != 0 && self.learned_on(port) >= limit;
        if self.learned_total >= self.max_learned || port_full {
            if apply {
                self.limit_hits += 1;
            }
            return Learned::LimitReached;
        }
        if apply {
            let kind = EntryKind::Dynamic;
            self.table.insert_new(k, Slot { port, kind, seen });
            self.count(port, 1);
            if self.next_sweep.is_none() {
                self.next_sweep = Some(now + self.ageing);
            }
        }
        Learned::New
    }

    /// How long ago the dynamic entry for `mac` in `vid` was refreshed (`None` for no
    /// entry, zero for static and local ones).
    pub(crate) fn age_of(&self, now: Instant, vid: Vid, mac: MacAddr) -> Option<Duration> {
        let e = self.table.get(key(vid.get(), mac))?;
        Some(match e.kind {
            EntryKind::Dynamic => now.saturating_since(self.instant(e.seen)),
            _ => Duration::ZERO,
        })
    }

    fn count(&mut self, port: PortId, delta: i32) {
        let i = port.index();
        if self.learned_per_port.len() <= i {
            self.learned_per_port.resize(i + 1, 0);
        }
        let c = &mut self.learned_per_port[i];
        *c = c.saturating_add_signed(delta);
        self.learned_total = self.learned_total.saturating_add_signed(delta);
    }

    /// Adds or replaces a static entry.
    pub(crate) fn add_static(&mut self, vid: Vid, mac: MacAddr, port: PortId) {
        let kind = EntryKind::Static;
        let old = self.table.insert(
            key(vid.get(), mac),
            Slot {
                port,
                kind,
                seen: 0,
            },
        );
        if let Some(old) = old.filter(|o| o.kind == EntryKind::Dynamic) {
            self.count(old.port, -1);
        }
    }

    /// Removes the entry for `mac` in `vid` (any kind but local); whether one existed.
    pub(crate) fn remove(&mut self, vid: Vid, mac: MacAddr) -> bool {
        let Some(p) = self.table.find(key(vid.get(), mac)) else {
            return false;
        };
        let e = self.table.at(p);
        match e.kind {
            EntryKind::Local => return false,
            EntryKind::Dynamic => self.count(e.port, -1),
            EntryKind::Static => {}
        }
        self.table.remove_at(p);
        true
    }

    /// Replaces every local entry with `(mac, owner)` from `locals`, and drops dynamic
    /// entries for addresses that are now the bridge's own.
    pub(crate) fn set_locals(&mut self, locals: &[(MacAddr, PortId)]) {
        let mut freed: Vec<PortId> = Vec::new();
        self.table.retain(|k, e| match e.kind {
            EntryKind::Local => false,
            EntryKind::Dynamic if locals.iter().any(|(m, _)| *m == unkey(k).1) => {
                freed.push(e.port);
                false
            }
            _ => true,
        });
        for p in freed {
            self.count(p, -1);
        }
        for &(mac, port) in locals {
            let k = key(LOCAL_VID, mac);
            if self.table.find(k).is_none() {
                let kind = EntryKind::Local;
                self.table.insert_new(
                    k,
                    Slot {
                        port,
                        kind,
                        seen: 0,
                    },
                );
            }
        }
    }

    /// Removes what `filter` selects; returns how many entries went.
    pub(crate) fn flush(&mut self, filter: FlushFilter) -> usize {
        let before = self.table.len();
        let mut freed: Vec<PortId> = Vec::new();
        self.table.retain(|k, e| {
            let selected = match e.kind {
                EntryKind::Local => false,
                EntryKind::Static => filter.include_static,
                EntryKind::Dynamic => true,
            } && filter.port.is_none_or(|p| p == e.port)
                && filter.vid.is_none_or(|v| v.get() == unkey(k).0);
            if selected && e.kind == EntryKind::Dynamic {
                freed.push(e.port);
            }
            !selected
        });
        for p in freed {
            self.count(p, -1);
        }
        before - self.table.len()
    }

    /// The instant of the next ageing sweep, if any dynamic entry exists.
    pub(crate) fn poll_at(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Removes dynamic entries not refreshed for `ageing` (or `override_ageing`, which STP
    /// uses while a topology change lasts). Returns how many went.
    pub(crate) fn age(&mut self, now: Instant, override_ageing: Option<Duration>) -> usize {
        match self.next_sweep {
            Some(t) if now >= t => {}
            _ => return 0,
        }
        let ageing = override_ageing.unwrap_or(self.ageing);
        let epoch = self.epoch;
        let mut oldest: Option<u32> = None;
        let mut freed: Vec<PortId> = Vec::new();
        self.table.retain(|_, e| {
            if e.kind != EntryKind::Dynamic {
                return true;
            }
            let seen = Instant::from_millis(epoch + u64::from(e.seen));
            if now.saturating_since(seen) >= ageing {
                freed.push(e.port);
                return false;
            }
            oldest = Some(oldest.map_or(e.seen, |o| o.min(e.seen)));
            true
        });
        let n = freed.len();
        for p in freed {
            self.count(p, -1);
        }
        self.aged_out += n as u64;
        let oldest = oldest.map(|o| self.instant(o));
        self.next_sweep = oldest.map(|o| (o + ageing).max(now + MIN_SWEEP_INTERVAL));
        if now.millis().saturating_sub(self.epoch) > EPOCH_KEEP {
            self.move_epoch(now);
        }
        n
    }

    /// Brings the next sweep forward to `at` at the latest (after a change of ageing time).
    pub(crate) fn reschedule(&mut self, at: Instant) {
        if self.learned_total > 0 {
            self.next_sweep = Some(self.next_sweep.map_or(at, |t| t.min(at)));
        }
    }

    /// Every entry with its age at `now`.
    pub(crate) fn entries(&self, now: Instant) -> impl Iterator<Item = FdbEntry> + '_ {
        self.table.iter().map(move |(k, e)| {
            let (vid, mac) = unkey(k);
            FdbEntry {
                mac,
                vid: Vid::new(vid).ok(),
                port: e.port,
                kind: e.kind,
                age: match e.kind {
                    EntryKind::Dynamic => now.saturating_since(self.instant(e.seen)),
                    _ => Duration::ZERO,
                },
            }
        })
    }

    /// Forgets the per-port count of a port that is being removed (its entries are gone).
    pub(crate) fn forget_port(&mut self, port: PortId) {
        if let Some(c) = self.learned_per_port.get_mut(port.index()) {
            debug_assert_eq!(*c, 0);
            *c = 0;
        }
    }

    /// Reserves room for `n` more entries (benchmarks, large static tables).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.table.reserve(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    fn vid() -> Vid {
        Vid::new(1).unwrap()
    }

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    fn age(f: &Fdb, now: u64, m: MacAddr) -> Option<Duration> {
        let now = Instant::from_millis(now);
        f.entries(now).find(|e| e.mac == m).map(|e| e.age)
    }

    #[test]
    fn ages_stay_exact_as_the_epoch_moves_at_sweeps() {
        let mut f = Fdb::new(Duration::from_secs(300), 10, 0);
        f.add_static(vid(), mac(9), PortId(2));
        let mut now = 0;
        while now < 30 * DAY {
            f.learn(Instant::from_millis(now), vid(), mac(1), PortId(1), 0, true);
            f.age(Instant::from_millis(now), None);
            assert_eq!(
                age(&f, now + 1234, mac(1)),
                Some(Duration::from_millis(1234))
            );
            now += 200_000;
        }
        assert!(f.epoch > 0, "moved");
        assert_eq!(age(&f, now, mac(9)), Some(Duration::ZERO));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn a_stamp_far_ahead_moves_the_epoch_and_old_entries_still_age_out() {
        let mut f = Fdb::new(Duration::from_secs(1_000_000), 10, 0);
        f.learn(Instant::ZERO, vid(), mac(1), PortId(1), 0, true);
        // Sixty days on, with no sweep in between: past what 32-bit stamps hold.
        let now = 60 * DAY;
        f.learn(Instant::from_millis(now), vid(), mac(2), PortId(1), 0, true);
        assert_eq!(age(&f, now, mac(2)), Some(Duration::ZERO));
        // The old entry reads as at least EPOCH_KEEP old: still older than any ageing time.
        let old = age(&f, now, mac(1)).unwrap();
        assert!(old >= Duration::from_millis(EPOCH_KEEP) && old > f.ageing);
        assert_eq!(f.age(Instant::from_millis(now), None), 1);
        assert_eq!(age(&f, now, mac(1)), None);
        assert_eq!(f.learned_total(), 1);
    }

    #[test]
    fn time_going_back_reads_as_age_zero() {
        let mut f = Fdb::new(Duration::from_secs(300), 10, 0);
        f.learn(Instant::from_secs(10), vid(), mac(1), PortId(1), 0, true);
        assert_eq!(age(&f, 5000, mac(1)), Some(Duration::ZERO));
        assert_eq!(age(&f, 12_000, mac(1)), Some(Duration::from_secs(2)));
    }
}
