//! The FDB's hash table: open addressing over buckets of one 64-byte cache line, each
//! holding four entries (keys, last-seen stamps, ports and kinds side by side), linear
//! probing from bucket to bucket. A lookup in a table that is not too full reads one line,
//! and [`Table::prefetch`] fetches that line ahead of time, so a burst of lookups in a
//! table far larger than the cache misses in parallel.
//!
//! Keys are the FDB's `(vid << 48) | mac`, so always below 2^63; the two values above
//! (`EMPTY`, `TOMB`) mark free slots and slots whose entry was removed. The table grows (or
//! is rebuilt at its size to drop tombstones) when free slots fall below an eighth. The
//! bucket count need not be a power of two: [`Table::reserve`] sizes the table for two
//! thirds full, because past the last-level cache a smaller table is a faster one (fewer
//! pages, more of it cached), and at that load few lookups spill into a second line.

use core::fmt;

use crate::fdb::EntryKind;
use crate::port::PortId;

/// Entries per bucket.
const WAYS: usize = 4;
/// A slot never used since the last rebuild: a probe stops at a bucket holding one.
const EMPTY: u64 = u64::MAX;
/// A slot whose entry was removed: probes go on past it; inserts may reuse it.
const TOMB: u64 = u64::MAX - 1;
/// Multiplier of the hash (2^64 / golden ratio, odd).
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// What the table keeps for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) port: PortId,
    pub(crate) kind: EntryKind,
    /// Last refresh, in milliseconds after the FDB's epoch (meaningful for dynamic entries).
    pub(crate) seen: u32,
}

/// One cache line of four entries.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; WAYS],
    seen: [u32; WAYS],
    ports: [u16; WAYS],
    kinds: [EntryKind; WAYS],
}

const _: () = assert!(size_of::<Bucket>() == 64);

impl Bucket {
    const EMPTY: Bucket = Bucket {
        keys: [EMPTY; WAYS],
        seen: [0; WAYS],
        ports: [0; WAYS],
        kinds: [EntryKind::Dynamic; WAYS],
    };

    #[inline]
    fn slot(&self, w: usize) -> Slot {
        Slot {
            port: PortId(self.ports[w]),
            kind: self.kinds[w],
            seen: self.seen[w],
        }
    }

    #[inline]
    fn set(&mut self, w: usize, s: Slot) {
        self.ports[w] = s.port.0;
        self.kinds[w] = s.kind;
        self.seen[w] = s.seen;
    }

    /// The way holding `k`. Keys in a bucket are distinct, so at most one compare is
    /// true and the way is read off the flags without branching (which way holds a key is
    /// random: an early exit would be mispredicted half the time); one compare confirms.
    #[inline(always)]
    fn way_of(&self, k: u64) -> Option<usize> {
        let w = usize::from(self.keys[1] == k)
            | (usize::from(self.keys[2] == k) * 2)
            | (usize::from(self.keys[3] == k) * 3);
        (self.keys[w] == k).then_some(w)
    }

    #[inline]
    fn has_empty(&self) -> bool {
        self.keys.contains(&EMPTY)
    }
}

/// Where an entry sits: bucket index times [`WAYS`] plus the way. Valid until a new key is
/// inserted or the table is retained or reserved in (any of which may rebuild it).
pub(crate) type Pos = usize;

/// Keys below 2^63 to [`Slot`]s.
#[derive(Clone)]
pub(crate) struct Table {
    /// At least one; any number.
    buckets: Box<[Bucket]>,
    len: usize,
    tombs: usize,
    /// The hash's key: with a random one, keys chosen to collide (MACs a guest picks)
    /// collide only by chance.
    seed: u64,
    /// The multiplier keyed with the seed, worked out once.
    mul: u64,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len)
            .field("tombs", &self.tombs)
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

/// The multiplier of the hash keyed with `seed` (odd, whatever the seed).
#[inline(always)]
pub(crate) const fn keyed_mul(seed: u64) -> u64 {
    MUL ^ (seed.rotate_left(29) & !1)
}

#[inline(always)]
pub(crate) fn hash(k: u64, seed: u64, mul: u64) -> u64 {
    // Keyed folded multiply (as foldhash does): the key and the multiplier both mixed
    // with the seed, then the well-mixed middle bits of the product are rotated to the
    // top, where the bucket index is taken from: a plain multiply leaves keys that differ
    // only in their middle bytes (MACs `..:xx:xx:00`) crowding a few buckets.
    let m = u128::from(k ^ seed) * u128::from(mul);
    ((m as u64) ^ ((m >> 64) as u64)).rotate_left(32)
}

/// The buckets [`Table::reserve`] sets aside for `n` entries: enough for two thirds full.
fn buckets_for(n: usize) -> usize {
    n.saturating_mul(3).div_ceil(2 * WAYS).max(1)
}

impl Table {
    /// An empty table whose hash is keyed with `seed`.
    pub(crate) fn new(seed: u64) -> Table {
        Table {
            buckets: Box::new([Bucket::EMPTY]),
            len: 0,
            tombs: 0,
            seed,
            mul: keyed_mul(seed),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// The bucket a probe for `k` starts at: the hash scaled to the bucket count.
    #[inline(always)]
    fn home(&self, k: u64) -> usize {
        debug_assert!(k < TOMB, "reserved key");
        ((u128::from(hash(k, self.seed, self.mul)) * self.buckets.len() as u128) >> 64) as usize
    }

    /// The bucket a probe visits after `b`.
    #[inline]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// Starts loading the line `k` would be found in into the cache.
    #[inline(always)]
    pub(crate) fn prefetch(&self, k: u64) {
        let line: *const Bucket = &self.buckets[self.home(k)];
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // SAFETY: a prefetch never faults whatever the address (here one inside
            // `self.buckets`), and SSE, which the intrinsic requires, is baseline x86_64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.cast::<i8>()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = line;
    }

    /// Where `k` is, if present.
    #[inline(always)]
    pub(crate) fn find(&self, k: u64) -> Option<Pos> {
        let b = self.home(k);
        let bucket = &self.buckets[b];
        if let Some(w) = bucket.way_of(k) {
            return Some(b * WAYS + w);
        }
        if bucket.has_empty() {
            return None;
        }
        self.find_after(b, k)
    }

    /// [`Table::find`] past the full bucket `b`, out of line to keep the common case short.
    #[inline(never)]
    fn find_after(&self, mut b: usize, k: u64) -> Option<Pos> {
        loop {
            b = self.next(b);
            let bucket = &self.buckets[b];
            if let Some(w) = bucket.way_of(k) {
                return Some(b * WAYS + w);
            }
            if bucket.has_empty() {
                return None;
            }
        }
    }

    /// The value for `k`, if present.
    #[inline(always)]
    pub(crate) fn get(&self, k: u64) -> Option<Slot> {
        self.find(k).map(|p| self.at(p))
    }

    /// The value at `p`.
    #[inline(always)]
    pub(crate) fn at(&self, p: Pos) -> Slot {
        self.buckets[p / WAYS].slot(p % WAYS)
    }

    /// Overwrites the value at `p`.
    #[inline(always)]
    pub(crate) fn set(&mut self, p: Pos, s: Slot) {
        self.buckets[p / WAYS].set(p % WAYS, s);
    }

    /// Refreshes the stamp at `p`.
    #[inline(always)]
    pub(crate) fn set_seen(&mut self, p: Pos, seen: u32) {
        let slot = &mut self.buckets[p / WAYS].seen[p % WAYS];
        // Frames of one station within the same millisecond leave the line clean, so a
        // busy table is not written back to memory for every frame.
        if *slot != seen {
            *slot = seen;
        }
    }

    /// Sets `k` to `s`; the value it replaced, if any.
    pub(crate) fn insert(&mut self, k: u64, s: Slot) -> Option<Slot> {
        if let Some(p) = self.find(k) {
            let old = self.at(p);
            self.set(p, s);
            return Some(old);
        }
        self.insert_new(k, s);
        None
    }

    /// Adds `k`, which must not be present.
    #[inline]
    pub(crate) fn insert_new(&mut self, k: u64, s: Slot) {
        debug_assert!(self.find(k).is_none());
        if (self.len + self.tombs + 1) * 8 > self.slots() * 7 {
            self.grow();
        }
        self.place(k, s);
    }

    /// Puts `k` in the first free or removed slot of its probe sequence.
    #[inline]
    fn place(&mut self, k: u64, s: Slot) {
        let mut b = self.home(k);
        loop {
            let bucket = &mut self.buckets[b];
            if let Some(w) = bucket.keys.iter().position(|&x| x >= TOMB) {
                if bucket.keys[w] == TOMB {
                    self.tombs -= 1;
                }
                bucket.keys[w] = k;
                bucket.set(w, s);
                self.len += 1;
                return;
            }
            b = self.next(b);
        }
    }

    /// Removes the entry at `p`; its value.
    pub(crate) fn remove_at(&mut self, p: Pos) -> Slot {
        let bucket = &mut self.buckets[p / WAYS];
        let w = p % WAYS;
        debug_assert!(bucket.keys[w] < TOMB);
        // A bucket with a free slot ends every probe that reaches it, so no entry further
        // on was placed past it: the slot may become free rather than a tombstone.
        bucket.keys[w] = if bucket.has_empty() {
            EMPTY
        } else {
            self.tombs += 1;
            TOMB
        };
        self.len -= 1;
        bucket.slot(w)
    }

    /// Removes `k`; its value, if it was present.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, k: u64) -> Option<Slot> {
        self.find(k).map(|p| self.remove_at(p))
    }

    /// Keeps the entries `f` returns true for; `f` may change the values it keeps.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(u64, &mut Slot) -> bool) {
        for p in 0..self.slots() {
            let k = self.buckets[p / WAYS].keys[p % WAYS];
            if k >= TOMB {
                continue;
            }
            let mut s = self.at(p);
            if f(k, &mut s) {
                self.set(p, s);
            } else {
                self.remove_at(p);
            }
        }
        if self.len == 0 {
            self.buckets.fill(Bucket::EMPTY);
            self.tombs = 0;
        } else if self.tombs * 8 > self.slots() {
            self.rebuild(self.buckets.len());
        }
    }

    /// Every entry, in table order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, Slot)> + '_ {
        self.buckets.iter().flat_map(|b| {
            (0..WAYS)
                .filter(|&w| b.keys[w] < TOMB)
                .map(|w| (b.keys[w], b.slot(w)))
        })
    }

    /// Makes room for `n` more entries without growing.
    pub(crate) fn reserve(&mut self, n: usize) {
        let used = self.len + self.tombs;
        if used.saturating_add(n).saturating_mul(8) > self.slots() * 7 {
            let want = buckets_for(self.len.saturating_add(n));
            self.rebuild(want.max(self.buckets.len()));
        }
    }

    /// Doubles the table, or rebuilds it at its size when tombstones fill it.
    #[cold]
    fn grow(&mut self) {
        let n = if self.len * 16 <= self.slots() * 7 {
            self.buckets.len()
        } else {
            self.buckets.len() * 2
        };
        self.rebuild(n);
    }

    /// Moves every entry into a fresh array of `n` buckets.
    fn rebuild(&mut self, n: usize) {
        debug_assert!(n * WAYS * 7 >= self.len * 8);
        let old = core::mem::replace(&mut self.buckets, vec![Bucket::EMPTY; n].into());
        self.len = 0;
        self.tombs = 0;
        for b in old.iter() {
            for w in 0..WAYS {
                if b.keys[w] < TOMB {
                    self.place(b.keys[w], b.slot(w));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn slot(n: u64) -> Slot {
        Slot {
            port: PortId(n as u16),
            kind: [EntryKind::Dynamic, EntryKind::Static, EntryKind::Local][n as usize % 3],
            seen: (n as u32).wrapping_mul(7),
        }
    }

    /// Keys shaped like the FDB's: a VID above a MAC.
    fn key(n: u64) -> u64 {
        ((n % 4095) << 48) | (0x0200_0000_0000 | n)
    }

    /// Everything the table holds, checked against its own bookkeeping.
    fn contents(t: &Table) -> HashMap<u64, Slot> {
        let m: HashMap<u64, Slot> = t.iter().collect();
        assert_eq!(m.len(), t.len());
        let tombs = t.buckets.iter().flat_map(|b| b.keys).filter(|&k| k == TOMB);
        assert_eq!(tombs.count(), t.tombs);
        assert!((t.len + t.tombs) * 8 <= t.slots() * 7);
        for (&k, &s) in &m {
            assert_eq!(t.get(k), Some(s));
        }
        m
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t = Table::new(0);
        assert_eq!(t.get(0), None, "0 is a key like any other, not a free slot");
        assert_eq!(t.insert(0, slot(1)), None);
        assert_eq!(t.insert(key(2), slot(2)), None);
        assert_eq!(t.insert(key(2), slot(3)), Some(slot(2)));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(0), Some(slot(1)));
        assert_eq!(t.get(key(2)), Some(slot(3)));
        assert_eq!(t.get(key(3)), None);
        let p = t.find(key(2)).unwrap();
        t.set_seen(p, 99);
        assert_eq!(t.at(p).seen, 99);
        assert_eq!(t.remove(key(2)).map(|s| s.port), Some(PortId(3)));
        assert_eq!(t.remove(key(2)), None);
        assert_eq!(t.get(key(2)), None);
        assert_eq!(t.len(), 1);
        contents(&t);
    }

    #[test]
    fn tombstones_keep_probe_chains_and_are_reused() {
        // Keys that all hash to bucket 0 of a 3-bucket table: more than it holds.
        let mut t = Table::new(0);
        t.reserve(8);
        assert_eq!(t.buckets.len(), 3);
        let same: Vec<u64> = (1..).map(key).filter(|&k| t.home(k) == 0).take(6).collect();
        for &k in &same {
            t.insert_new(k, slot(k));
        }
        // Bucket 0 is full, two spilled into bucket 1: removing from bucket 0 must leave
        // a tombstone or the spilled ones would be lost.
        assert_eq!(t.buckets[0].keys, same[..4]);
        t.remove(same[1]).unwrap();
        assert_eq!(t.tombs, 1);
        assert_eq!(t.get(same[4]), Some(slot(same[4])));
        assert_eq!(t.get(same[5]), Some(slot(same[5])));
        // A bucket with a free slot ends every probe: removing from it frees the slot.
        t.remove(same[5]).unwrap();
        assert_eq!(t.tombs, 1);
        // The tombstone is the first free slot of the chain, so it is reused.
        let k = (same[5] + 1..).find(|&k| t.home(k) == 0).unwrap();
        t.insert_new(k, slot(7));
        assert_eq!(t.tombs, 0);
        assert_eq!(t.buckets[0].keys[1], k);
        contents(&t);
    }

    #[test]
    fn grows_through_many_rehashes() {
        let mut t = Table::new(0);
        let n = 100_000;
        for i in 0..n {
            assert_eq!(t.insert(key(i), slot(i)), None);
        }
        assert_eq!(t.len(), n as usize);
        // Doubling from one bucket, at 7/8 full: 2^15 buckets hold up to 114 688 entries.
        assert_eq!(t.buckets.len(), 1 << 15);
        for i in 0..n {
            assert_eq!(t.get(key(i)), Some(slot(i)));
        }
        assert_eq!(t.get(key(n)), None);
        // Churn: replace every entry, three times over. Tombstones force rebuilds; the
        // table, 3/4 full, doubles once, then rebuilds at its size.
        let size = t.buckets.len();
        for i in n..4 * n {
            assert!(t.remove(key(i - n)).is_some());
            t.insert_new(key(i), slot(i));
        }
        assert_eq!(t.buckets.len(), 2 * size);
        let m = contents(&t);
        assert_eq!(m.len(), n as usize);
        assert!((3 * n..4 * n).all(|i| m[&key(i)] == slot(i)));
    }

    #[test]
    fn reserve_avoids_growth() {
        let mut t = Table::new(0);
        t.reserve(1000);
        let size = t.buckets.len();
        assert_eq!(size, 375, "two thirds full");
        for i in 0..1000 {
            t.insert_new(key(i), slot(i));
        }
        assert_eq!(t.buckets.len(), size);
        t.reserve(0);
        assert_eq!(t.buckets.len(), size);
    }

    #[test]
    fn retain_removes_and_updates() {
        let mut t = Table::new(0);
        for i in 0..5000 {
            t.insert_new(key(i), slot(i));
        }
        t.retain(|k, s| {
            s.seen = 1;
            k % 3 != 0
        });
        let m = contents(&t);
        assert_eq!(m.len(), (0..5000).filter(|i| key(*i) % 3 != 0).count());
        assert!(m.values().all(|s| s.seen == 1));
        t.retain(|_, _| false);
        assert_eq!((t.len(), t.tombs), (0, 0));
        assert_eq!(t.get(key(1)), None);
    }

    #[test]
    fn keys_spread_whatever_bytes_differ() {
        // Keys differing only in one part of the MAC or in the VID: few may miss their
        // home bucket (about 8% do for random keys at two thirds full).
        let base = (1 << 48) | 0x0200_0000_0000;
        for shift in [0, 8, 16, 24, 32] {
            let mut t = Table::new(0);
            let keys: Vec<u64> = (0..60_000u64)
                .map(|i| base ^ (i << shift))
                .chain((1..4095).map(|v| (v << 48) | 0x0200_0000_ab00))
                .collect();
            t.reserve(keys.len());
            for &k in &keys {
                t.insert(k, slot(1));
            }
            let home = |k: u64| t.find(k).unwrap() / WAYS == t.home(k);
            let away = keys.iter().filter(|&&k| !home(k)).count() as f64 / keys.len() as f64;
            assert!(away < 0.12, "shift {shift}: {away}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u16),
        Remove(u64),
        Get(u64),
        Retain(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys, so removals and re-inserts hit existing entries.
        let k = (0u64..300).prop_map(key);
        prop_oneof![
            6 => (k.clone(), any::<u16>()).prop_map(|(k, p)| Op::Insert(k, p)),
            3 => k.clone().prop_map(Op::Remove),
            3 => k.prop_map(Op::Get),
            1 => (2u64..9).prop_map(Op::Retain),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_hashmap(ops in prop::collection::vec(op(), 1..600)) {
            let mut t = Table::new(0);
            let mut model: HashMap<u64, Slot> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, p) => {
                        let s = Slot { port: PortId(p), ..slot(k) };
                        prop_assert_eq!(t.insert(k, s), model.insert(k, s));
                    }
                    Op::Remove(k) => prop_assert_eq!(t.remove(k), model.remove(&k)),
                    Op::Get(k) => prop_assert_eq!(t.get(k), model.get(&k).copied()),
                    Op::Retain(m) => {
                        t.retain(|k, _| k % m != 0);
                        model.retain(|k, _| k % m != 0);
                    }
                }
                prop_assert_eq!(t.len(), model.len());
            }
            prop_assert_eq!(contents(&t), model);
        }
    }
}
