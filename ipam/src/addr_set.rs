//! Sets of IPv4 addresses as sorted, disjoint, inclusive ranges.
//!
//! Contract: an [`AddrSet`] is always canonical — its ranges are sorted, non-empty,
//! non-overlapping and non-adjacent — so two equal sets have equal representations, the
//! encoded size is the number of runs, and every operation is linear in the runs of its
//! operands. A set built from untrusted input ([`AddrSet::from_ranges`], serde) is checked,
//! never repaired silently.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An inclusive range of IPv4 addresses, as host-order integers (`start <= end`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrRange {
    /// First address.
    pub start: u32,
    /// Last address (inclusive).
    pub end: u32,
}

impl AddrRange {
    /// The range `start..=end`, or `None` if `start > end`.
    pub fn new(start: u32, end: u32) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// One address.
    pub fn single(addr: u32) -> Self {
        Self {
            start: addr,
            end: addr,
        }
    }

    /// Every address of a CIDR block, network and broadcast included.
    pub fn of_net(net: Ipv4Net) -> Self {
        Self {
            start: u32::from(net.network()),
            end: u32::from(net.broadcast()),
        }
    }

    /// Number of addresses (at most 2^32, so `u64`).
    pub fn len(self) -> u64 {
        u64::from(self.end - self.start) + 1
    }

    /// Always false: a range holds at least one address (clippy wants the pair).
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether `addr` is inside.
    pub fn contains(self, addr: u32) -> bool {
        self.start <= addr && addr <= self.end
    }

    /// The overlap with `other`, if any.
    pub fn intersect(self, other: Self) -> Option<Self> {
        Self::new(self.start.max(other.start), self.end.min(other.end))
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", Ipv4Addr::from(self.start))
        } else {
            write!(
                f,
                "{}-{}",
                Ipv4Addr::from(self.start),
                Ipv4Addr::from(self.end)
            )
        }
    }
}

impl fmt::Debug for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a list of ranges is not a canonical [`AddrSet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrSetError {
    /// A range whose start is after its end.
    #[error("address range {start}-{end} is reversed")]
    Reversed {
        /// Its start.
        start: Ipv4Addr,
        /// Its end.
        end: Ipv4Addr,
    },
    /// Ranges out of order, overlapping or touching (they should have been merged).
    #[error("address ranges are not sorted, disjoint and separated at {at}")]
    NotCanonical {
        /// Where the order breaks.
        at: Ipv4Addr,
    },
}

/// A canonical set of IPv4 addresses (see the module contract).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct AddrSet {
    ranges: Vec<AddrRange>,
}

impl AddrSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self { ranges: Vec::new() }
    }

    /// The set holding exactly `range`.
    pub fn from_range(range: AddrRange) -> Self {
        Self {
            ranges: vec![range],
        }
    }

    /// Every address of `net`.
    pub fn from_net(net: Ipv4Net) -> Self {
        Self::from_range(AddrRange::of_net(net))
    }

    /// Checks that `ranges` is canonical and wraps it.
    pub fn from_ranges(ranges: Vec<AddrRange>) -> Result<Self, AddrSetError> {
        let mut prev_end: Option<u32> = None;
        for r in &ranges {
            if r.start > r.end {
                return Err(AddrSetError::Reversed {
                    start: r.start.into(),
                    end: r.end.into(),
                });
            }
            if let Some(p) = prev_end
                && (p == u32::MAX || r.start <= p + 1)
            {
                return Err(AddrSetError::NotCanonical { at: r.start.into() });
            }
            prev_end = Some(r.end);
        }
        Ok(Self { ranges })
    }

    /// Builds a canonical set from ranges in any order, merging overlaps (for our own
    /// computations, never for input).
    pub fn from_unsorted(mut ranges: Vec<AddrRange>) -> Self {
        ranges.sort_unstable();
        let mut out: Vec<AddrRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match out.last_mut() {
                Some(last) if last.end == u32::MAX || r.start <= last.end + 1 => {
                    last.end = last.end.max(r.end);
                }
                _ => out.push(r),
            }
        }
        Self { ranges: out }
    }

    /// The runs, sorted.
    pub fn ranges(&self) -> &[AddrRange] {
        &self.ranges
    }

    /// Number of runs (the encoded size is proportional to this).
    pub fn run_count(&self) -> usize {
        self.ranges.len()
    }

    /// Number of addresses.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|r| r.len()).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `addr` is in the set.
    pub fn contains(&self, addr: u32) -> bool {
        let i = self.ranges.partition_point(|r| r.end < addr);
        self.ranges.get(i).is_some_and(|r| r.start <= addr)
    }

    /// Adds one address; returns whether it was absent.
    pub fn insert(&mut self, addr: u32) -> bool {
        if self.contains(addr) {
            return false;
        }
        self.insert_range(AddrRange::single(addr));
        true
    }

    /// Removes one address; returns whether it was present.
    pub fn remove(&mut self, addr: u32) -> bool {
        if !self.contains(addr) {
            return false;
        }
        self.remove_range(AddrRange::single(addr));
        true
    }

    /// Adds every address of `range`.
    pub fn insert_range(&mut self, range: AddrRange) {
        *self = self.union(&Self::from_range(range));
    }

    /// Removes every address of `range`.
    pub fn remove_range(&mut self, range: AddrRange) {
        *self = self.subtract(&Self::from_range(range));
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &Self) -> Self {
        let mut all = Vec::with_capacity(self.ranges.len() + other.ranges.len());
        let (mut i, mut j) = (0, 0);
        while i < self.ranges.len() || j < other.ranges.len() {
            let next = match (self.ranges.get(i), other.ranges.get(j)) {
                (Some(a), Some(b)) if a <= b => {
                    i += 1;
                    *a
                }
                (Some(_), Some(b)) => {
                    j += 1;
                    *b
                }
                (Some(a), None) => {
                    i += 1;
                    *a
                }
                (None, Some(b)) => {
                    j += 1;
                    *b
                }
                (None, None) => break,
            };
            match all.last_mut() {
                Some(last) if last_touches(*last, next) => {
                    let last: &mut AddrRange = last;
                    last.end = last.end.max(next.end);
                }
                _ => all.push(next),
            }
        }
        Self { ranges: all }
    }

    /// `self ∩ other`.
    pub fn intersect(&self, other: &Self) -> Self {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while let (Some(a), Some(b)) = (self.ranges.get(i), other.ranges.get(j)) {
            if let Some(x) = a.intersect(*b) {
                out.push(x);
            }
            if a.end < b.end {
                i += 1;
            } else {
                j += 1;
            }
        }
        Self { ranges: out }
    }

    /// `self ∩ range`.
    pub fn intersect_range(&self, range: AddrRange) -> Self {
        let first = self.ranges.partition_point(|r| r.end < range.start);
        let ranges = self.ranges[first..]
            .iter()
            .take_while(|r| r.start <= range.end)
            .filter_map(|r| r.intersect(range))
            .collect();
        Self { ranges }
    }

    /// `self \ other`.
    pub fn subtract(&self, other: &Self) -> Self {
        let mut out = Vec::with_capacity(self.ranges.len());
        let mut j = 0;
        for &r in &self.ranges {
            let mut start = r.start;
            let mut done = false;
            while let Some(&o) = other.ranges.get(j) {
                if o.end < start {
                    j += 1;
                    continue;
                }
                if o.start > r.end {
                    break;
                }
                if o.start > start {
                    out.push(AddrRange {
                        start,
                        end: o.start - 1,
                    });
                }
                if o.end >= r.end {
                    done = true;
                    break;
                }
                start = o.end + 1;
                j += 1;
            }
            if !done {
                out.push(AddrRange { start, end: r.end });
            }
        }
        Self { ranges: out }
    }

    /// Addresses of `self` inside `range`, counted without building the intersection.
    pub fn count_in(&self, range: AddrRange) -> u64 {
        let first = self.ranges.partition_point(|r| r.end < range.start);
        self.ranges[first..]
            .iter()
            .take_while(|r| r.start <= range.end)
            .filter_map(|r| r.intersect(range))
            .map(AddrRange::len)
            .sum()
    }

    /// Whether every address of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.subtract(other).is_empty()
    }

    /// Whether `self` and `other` share no address.
    pub fn is_disjoint(&self, other: &Self) -> bool {
        self.intersect(other).is_empty()
    }

    /// The lowest address of `self` inside `within` that is not in `taken`.
    pub fn first_free(&self, within: AddrRange, taken: &Self) -> Option<u32> {
        let first = self.ranges.partition_point(|r| r.end < within.start);
        for r in self.ranges[first..]
            .iter()
            .take_while(|r| r.start <= within.end)
        {
            let Some(r) = r.intersect(within) else {
                continue;
            };
            let mut candidate = r.start;
            let mut k = taken.ranges.partition_point(|t| t.end < candidate);
            loop {
                match taken.ranges.get(k) {
                    Some(t) if t.start <= candidate => {
                        if t.end >= r.end {
                            break;
                        }
                        candidate = t.end + 1;
                        k += 1;
                    }
                    _ => return Some(candidate),
                }
            }
        }
        None
    }

    /// The largest run of `self` inside `within` (the lowest one on ties).
    pub fn largest_run(&self, within: AddrRange) -> Option<AddrRange> {
        self.intersect_range(within)
            .ranges
            .into_iter()
            .fold(None, |best: Option<AddrRange>, r| match best {
                Some(b) if b.len() >= r.len() => Some(b),
                _ => Some(r),
            })
    }
}

/// Whether `next` (sorted after `last`) overlaps or touches `last`.
fn last_touches(last: AddrRange, next: AddrRange) -> bool {
    last.end == u32::MAX || next.start <= last.end + 1
}

impl fmt::Display for AddrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for AddrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for AddrRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        [Ipv4Addr::from(self.start), Ipv4Addr::from(self.end)].serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AddrRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let [a, b] = <[Ipv4Addr; 2]>::deserialize(deserializer)?;
        Self::new(a.into(), b.into())
            .ok_or_else(|| serde::de::Error::custom(AddrSetError::Reversed { start: a, end: b }))
    }
}

impl Serialize for AddrSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<[Ipv4Addr; 2]> = self
            .ranges
            .iter()
            .map(|r| [Ipv4Addr::from(r.start), Ipv4Addr::from(r.end)])
            .collect();
        pairs.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AddrSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = Vec::<[Ipv4Addr; 2]>::deserialize(deserializer)?;
        let ranges = pairs
            .into_iter()
            .map(|[a, b]| AddrRange {
                start: a.into(),
                end: b.into(),
            })
            .collect();
        Self::from_ranges(ranges).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn r(start: u32, end: u32) -> AddrRange {
        AddrRange { start, end }
    }

    fn model(set: &AddrSet) -> BTreeSet<u32> {
        set.ranges().iter().flat_map(|r| r.start..=r.end).collect()
    }

    fn arb_set() -> impl Strategy<Value = AddrSet> {
        proptest::collection::vec((0u32..200, 0u32..12), 0..8)
            .prop_map(|v| AddrSet::from_unsorted(v.into_iter().map(|(s, l)| r(s, s + l)).collect()))
    }

    #[test]
    fn from_ranges_rejects_non_canonical_input() {
        assert!(AddrSet::from_ranges(vec![r(1, 2), r(4, 5)]).is_ok());
        assert!(matches!(
            AddrSet::from_ranges(vec![r(3, 2)]),
            Err(AddrSetError::Reversed { .. })
        ));
        for bad in [
            vec![r(1, 2), r(3, 5)],
            vec![r(4, 5), r(1, 2)],
            vec![r(1, 5), r(5, 6)],
        ] {
            assert!(matches!(
                AddrSet::from_ranges(bad),
                Err(AddrSetError::NotCanonical { .. })
            ));
        }
        assert!(AddrSet::from_ranges(vec![r(0, u32::MAX)]).is_ok());
        assert!(AddrSet::from_ranges(vec![r(0, u32::MAX), r(0, 0)]).is_err());
    }

    #[test]
    fn first_free_skips_taken_and_respects_bounds() {
        let owned = AddrSet::from_unsorted(vec![r(10, 20), r(30, 40)]);
        let taken = AddrSet::from_unsorted(vec![r(10, 20), r(30, 31)]);
        assert_eq!(owned.first_free(r(0, 100), &taken), Some(32));
        assert_eq!(owned.first_free(r(0, 25), &taken), None);
        assert_eq!(owned.first_free(r(35, 36), &taken), Some(35));
        let all = AddrSet::from_range(r(0, u32::MAX));
        assert_eq!(
            all.first_free(r(u32::MAX, u32::MAX), &AddrSet::new()),
            Some(u32::MAX)
        );
        assert_eq!(all.first_free(r(5, 5), &all), None);
    }

    #[test]
    fn largest_run_prefers_the_lowest_on_ties() {
        let s = AddrSet::from_unsorted(vec![r(0, 3), r(10, 13), r(20, 21)]);
        assert_eq!(s.largest_run(r(0, 100)), Some(r(0, 3)));
        assert_eq!(s.largest_run(r(2, 100)), Some(r(10, 13)));
        assert_eq!(s.largest_run(r(50, 100)), None);
    }

    #[test]
    fn serde_round_trip_and_refusal() {
        let s = AddrSet::from_unsorted(vec![
            r(0x0a20_0000, 0x0a20_00ff),
            r(0x0a20_0200, 0x0a20_0200),
        ]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"[["10.32.0.0","10.32.0.255"],["10.32.2.0","10.32.2.0"]]"#
        );
        assert_eq!(serde_json::from_str::<AddrSet>(&json).unwrap(), s);
        let bad = r#"[["10.32.0.5","10.32.0.1"]]"#;
        assert!(serde_json::from_str::<AddrSet>(bad).is_err());
    }

    proptest! {
        #[test]
        fn set_operations_match_a_model(a in arb_set(), b in arb_set(), x in 0u32..220, lo in 0u32..220, len in 0u32..40) {
            let (ma, mb) = (model(&a), model(&b));
            prop_assert!(AddrSet::from_ranges(a.ranges().to_vec()).is_ok());
            prop_assert_eq!(model(&a.union(&b)), &ma | &mb);
            prop_assert_eq!(model(&a.intersect(&b)), &ma & &mb);
            prop_assert_eq!(model(&a.subtract(&b)), &ma - &mb);
            for op in [a.union(&b), a.intersect(&b), a.subtract(&b)] {
                prop_assert!(AddrSet::from_ranges(op.ranges().to_vec()).is_ok());
            }
            prop_assert_eq!(a.len(), ma.len() as u64);
            prop_assert_eq!(a.contains(x), ma.contains(&x));
            prop_assert_eq!(a.is_subset(&b), ma.is_subset(&mb));
            prop_assert_eq!(a.is_disjoint(&b), ma.is_disjoint(&mb));
            let within = r(lo, lo + len);
            let inside: BTreeSet<u32> = ma.iter().copied().filter(|v| within.contains(*v)).collect();
            prop_assert_eq!(model(&a.intersect_range(within)), inside.clone());
            prop_assert_eq!(a.count_in(within), inside.len() as u64);
            let expect_free = inside.iter().copied().find(|v| !mb.contains(v));
            prop_assert_eq!(a.first_free(within, &b), expect_free);
            let mut c = a.clone();
            prop_assert_eq!(c.insert(x), !ma.contains(&x));
            prop_assert!(c.contains(x));
            prop_assert!(c.remove(x));
            prop_assert!(!c.contains(x));
        }
    }
}
