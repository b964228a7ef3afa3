//! Routes over the topology: unicast next hops from us and per-origin broadcast trees.
//!
//! Contract:
//! - The graph has one vertex per stored record and an edge A–B only when *both* records
//!   list the connection (symmetric), so a half-open or stale connection never carries data.
//! - Unicast: shortest hop count from us by BFS; vertices are numbered in name order and
//!   neighbours visited in that order, so ties break by name deterministically.
//! - Broadcast: the tree for origin O is the BFS tree from O built the same way, so every
//!   peer with the same graph computes the same tree, and a broadcast reaches each peer of
//!   O's component exactly once.
//! - A [`RouteTable`] is immutable once built (O(n log n + e log d)); broadcast trees are
//!   computed lazily on first use per origin and cached inside the table (a `OnceLock` per
//!   origin: lock-free reads after the first), so the data-plane thread can share it behind
//!   an `Arc` without locks on the per-frame path. A topology change builds a new table.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::peer::PeerName;
use crate::topology::Topology;

const NONE: u32 = u32::MAX;

/// A spanning tree rooted at one origin, as children lists in CSR form.
#[derive(Debug)]
struct BroadcastTree {
    /// `child_start[v]..child_start[v + 1]` indexes `children` for vertex `v`.
    child_start: Box<[u32]>,
    children: Box<[PeerName]>,
}

/// An immutable snapshot of the routing graph and our unicast next hops.
#[derive(Debug)]
pub struct RouteTable {
    me: PeerName,
    /// Vertex names, sorted.
    names: Box<[PeerName]>,
    index: HashMap<PeerName, u32>,
    /// CSR adjacency (symmetric edges only), each list sorted.
    adj_start: Box<[u32]>,
    adj: Box<[u32]>,
    /// First hop from us to each vertex (`NONE` when unreachable or us).
    next_hop: Box<[u32]>,
    /// Hop count from us (`NONE` when unreachable).
    hops: Box<[u32]>,
    trees: Box<[OnceLock<BroadcastTree>]>,
}

impl PartialEq for RouteTable {
    /// Equal when the graph and our next hops are equal (caches ignored).
    fn eq(&self, other: &Self) -> bool {
        self.me == other.me
            && self.names == other.names
            && self.adj_start == other.adj_start
            && self.adj == other.adj
            && self.next_hop == other.next_hop
    }
}

impl Eq for RouteTable {}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(NONE)
}

impl RouteTable {
    /// A table knowing only ourselves.
    pub fn empty(me: PeerName) -> Self {
        Self::from_edges(me, vec![me], &[])
    }

    /// Builds the table from the topology's records.
    pub fn build(topology: &Topology) -> Self {
        let mut names: Vec<PeerName> = topology.records().map(|r| r.name).collect();
        names.sort_unstable();
        let index: HashMap<PeerName, u32> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, to_u32(i)))
            .collect();
        // Directed "A lists B" lists, sorted and deduplicated.
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); names.len()];
        for record in topology.records() {
            let Some(&from) = index.get(&record.name) else {
                continue;
            };
            let Some(list) = out.get_mut(from as usize) else {
                continue;
            };
            list.extend(
                record
                    .connections
                    .iter()
                    .filter_map(|c| index.get(&c.peer).copied())
                    .filter(|&to| to != from),
            );
            list.sort_unstable();
            list.dedup();
        }
        let mut edges = Vec::new();
        for (from, list) in out.iter().enumerate() {
            let from = to_u32(from);
            for &to in list {
                let back = out
                    .get(to as usize)
                    .is_some_and(|l| l.binary_search(&from).is_ok());
                if back {
                    edges.push((from, to));
                }
            }
        }
        Self::from_edges(topology.me(), names, &edges)
    }

    /// Builds from sorted vertex names and directed edges (each symmetric edge appears in
    /// both directions, sorted by `(from, to)`).
    fn from_edges(me: PeerName, names: Vec<PeerName>, edges: &[(u32, u32)]) -> Self {
        let n = names.len();
        let index: HashMap<PeerName, u32> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, to_u32(i)))
            .collect();
        let mut adj_start = vec![0u32; n + 1];
        for &(from, _) in edges {
            if let Some(slot) = adj_start.get_mut(from as usize + 1) {
                *slot += 1;
            }
        }
        for i in 0..n {
            let prev = adj_start.get(i).copied().unwrap_or(0);
            if let Some(slot) = adj_start.get_mut(i + 1) {
                *slot += prev;
            }
        }
        let adj: Vec<u32> = edges.iter().map(|&(_, to)| to).collect();
        let mut table = Self {
            me,
            names: names.into_boxed_slice(),
            index,
            adj_start: adj_start.into_boxed_slice(),
            adj: adj.into_boxed_slice(),
            next_hop: Box::default(),
            hops: Box::default(),
            trees: (0..n).map(|_| OnceLock::new()).collect(),
        };
        let (next_hop, hops) = match table.index.get(&me) {
            Some(&root) => table.first_hops(root),
            None => (vec![NONE; n], vec![NONE; n]),
        };
        table.next_hop = next_hop.into_boxed_slice();
        table.hops = hops.into_boxed_slice();
        table
    }

    fn neighbours_of(&self, v: u32) -> &[u32] {
        let start = self.adj_start.get(v as usize).copied().unwrap_or(0) as usize;
        let end = self.adj_start.get(v as usize + 1).copied().unwrap_or(0) as usize;
        self.adj.get(start..end).unwrap_or_default()
    }

    /// BFS from `root`: parents (`NONE` for unreached; the root is its own parent) and
    /// the visit order (by level, then parent order, then name).
    fn bfs(&self, root: u32) -> (Vec<u32>, Vec<u32>) {
        let mut parent = vec![NONE; self.names.len()];
        let mut order = Vec::with_capacity(self.names.len());
        if let Some(slot) = parent.get_mut(root as usize) {
            *slot = root;
            order.push(root);
        }
        let mut head = 0;
        while let Some(&v) = order.get(head) {
            head += 1;
            for &w in self.neighbours_of(v) {
                if let Some(slot) = parent.get_mut(w as usize)
                    && *slot == NONE
                {
                    *slot = v;
                    order.push(w);
                }
            }
        }
        (parent, order)
    }

    /// First hops and hop counts from `root`, resolving each vertex after its parent.
    fn first_hops(&self, root: u32) -> (Vec<u32>, Vec<u32>) {
        let n = self.names.len();
        let (parent, order) = self.bfs(root);
        let mut next_hop = vec![NONE; n];
        let mut hops = vec![NONE; n];
        if let Some(slot) = hops.get_mut(root as usize) {
            *slot = 0;
        }
        for &v in order.iter().skip(1) {
            let p = parent.get(v as usize).copied().unwrap_or(NONE);
            let via = if p == root {
                v
            } else {
                next_hop.get(p as usize).copied().unwrap_or(NONE)
            };
            let depth = hops
                .get(p as usize)
                .copied()
                .unwrap_or(NONE)
                .saturating_add(1);
            if let Some(slot) = next_hop.get_mut(v as usize) {
                *slot = via;
            }
            if let Some(slot) = hops.get_mut(v as usize) {
                *slot = depth;
            }
        }
        (next_hop, hops)
    }

    fn tree(&self, origin: u32) -> Option<&BroadcastTree> {
        let cell = self.trees.get(origin as usize)?;
        Some(cell.get_or_init(|| {
            let (parent, order) = self.bfs(origin);
            let n = self.names.len();
            let mut child_start = vec![0u32; n + 1];
            for (v, &p) in parent.iter().enumerate() {
                if p != NONE
                    && to_u32(v) != origin
                    && let Some(slot) = child_start.get_mut(p as usize + 1)
                {
                    *slot += 1;
                }
            }
            for i in 0..n {
                let prev = child_start.get(i).copied().unwrap_or(0);
                if let Some(slot) = child_start.get_mut(i + 1) {
                    *slot += prev;
                }
            }
            let mut fill: Vec<u32> = child_start.clone();
            let mut children = vec![PeerName::default(); order.len().saturating_sub(1)];
            // Vertices in name order, so each parent's children come out sorted by name.
            for (v, &p) in parent.iter().enumerate() {
                if p == NONE || to_u32(v) == origin {
                    continue;
                }
                let Some(at) = fill.get_mut(p as usize) else {
                    continue;
                };
                if let (Some(slot), Some(name)) =
                    (children.get_mut(*at as usize), self.names.get(v))
                {
                    *slot = *name;
                }
                *at += 1;
            }
            BroadcastTree {
                child_start: child_start.into_boxed_slice(),
                children: children.into_boxed_slice(),
            }
        }))
    }

    /// The peer this table routes from.
    pub fn me(&self) -> PeerName {
        self.me
    }

    /// Where to send a frame for `dst` next; `None` for us or an unreachable peer.
    pub fn next_hop(&self, dst: PeerName) -> Option<PeerName> {
        let &v = self.index.get(&dst)?;
        let &hop = self.next_hop.get(v as usize)?;
        self.names.get(hop as usize).copied()
    }

    /// Hop count from us to `dst` (0 for us); `None` when unreachable.
    pub fn hops(&self, dst: PeerName) -> Option<u32> {
        let &v = self.index.get(&dst)?;
        self.hops.get(v as usize).copied().filter(|&h| h != NONE)
    }

    /// Whether `dst` can be reached over symmetric connections.
    pub fn is_reachable(&self, dst: PeerName) -> bool {
        self.hops(dst).is_some()
    }

    /// The peers `at` must forward a broadcast from `origin` to: `at`'s children in
    /// `origin`'s tree, sorted by name. Empty if either is unknown.
    pub fn broadcast_children(&self, origin: PeerName, at: PeerName) -> &[PeerName] {
        let (Some(&o), Some(&a)) = (self.index.get(&origin), self.index.get(&at)) else {
            return &[];
        };
        let Some(tree) = self.tree(o) else {
            return &[];
        };
        let start = tree.child_start.get(a as usize).copied().unwrap_or(0) as usize;
        let end = tree.child_start.get(a as usize + 1).copied().unwrap_or(0) as usize;
        tree.children.get(start..end).unwrap_or_default()
    }

    /// The neighbour to relay frames for `dst` through when no direct data path to it
    /// works (the last resort): our next hop when that is not `dst` itself and `usable`
    /// accepts it; otherwise the first neighbour of ours, by name, that is also a neighbour
    /// of `dst` and that `usable` accepts. The second case covers a neighbour whose control
    /// connection works while UDP between us is blocked: a common neighbour routes to
    /// `dst` directly, so a frame sent through it cannot come back. `usable` says whether
    /// our own data path to a candidate works. `None`: no relay.
    pub fn relay(&self, dst: PeerName, usable: impl Fn(PeerName) -> bool) -> Option<PeerName> {
        if dst == self.me {
            return None;
        }
        if let Some(hop) = self.next_hop(dst)
            && hop != dst
            && usable(hop)
        {
            return Some(hop);
        }
        let (&me, &d) = (self.index.get(&self.me)?, self.index.get(&dst)?);
        let theirs = self.neighbours_of(d);
        self.neighbours_of(me)
            .iter()
            .filter(|&&w| w != d && theirs.binary_search(&w).is_ok())
            .filter_map(|&w| self.names.get(w as usize).copied())
            .find(|&w| usable(w))
    }

    /// Symmetric neighbours of `peer`, sorted by name.
    pub fn neighbours(&self, peer: PeerName) -> impl Iterator<Item = PeerName> + '_ {
        let list = self
            .index
            .get(&peer)
            .map(|&v| self.neighbours_of(v))
            .unwrap_or_default();
        list.iter()
            .filter_map(|&w| self.names.get(w as usize).copied())
    }

    /// Every vertex (peer with a record), sorted by name.
    pub fn peers(&self) -> &[PeerName] {
        &self.names
    }

    /// Number of undirected symmetric edges.
    pub fn edge_count(&self) -> usize {
        self.adj.len() / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Nickname;
    use crate::protocol::{ConnectionRecord, PeerRecord};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    fn name(n: u16) -> PeerName {
        let [a, b] = n.to_be_bytes();
        PeerName([2, 0, 0, 0, a, b])
    }

    fn record(n: u16, conns: &[u16]) -> PeerRecord {
        PeerRecord {
            name: name(n),
            nickname: Nickname::default(),
            uid: u64::from(n),
            version: 1,
            connections: conns
                .iter()
                .map(|&c| ConnectionRecord {
                    peer: name(c),
                    addr: SocketAddr::from(([127, 0, 0, 1], c)),
                    outbound: n < c,
                })
                .collect(),
        }
    }

    /// A topology (seen from `me`) of undirected `edges`, plus one-sided `half` edges.
    fn topology(me: u16, n: u16, edges: &[(u16, u16)], half: &[(u16, u16)]) -> Topology {
        let mut lists: Vec<Vec<u16>> = vec![Vec::new(); usize::from(n)];
        for &(a, b) in edges {
            lists[usize::from(a)].push(b);
            lists[usize::from(b)].push(a);
        }
        for &(a, b) in half {
            lists[usize::from(a)].push(b);
        }
        let mut topo = Topology::new(record(me, &lists[usize::from(me)]));
        for v in 0..n {
            if v != me {
                topo.merge(record(v, &lists[usize::from(v)]));
            }
        }
        topo
    }

    fn random_edges(rng: &mut ChaCha8Rng, n: u16, degree: usize) -> Vec<(u16, u16)> {
        let mut set = BTreeSet::new();
        for v in 1..n {
            // Keep it connected: link to an earlier vertex.
            set.insert((rng.random_range(0..v), v));
        }
        while set.len() < usize::from(n) * degree / 2 {
            let a = rng.random_range(0..n);
            let b = rng.random_range(0..n);
            if a != b {
                set.insert((a.min(b), a.max(b)));
            }
        }
        set.into_iter().collect()
    }

    #[test]
    fn unicast_uses_only_symmetric_edges() {
        // 0-1-2 symmetric, 0->2 only listed by 0.
        let topo = topology(0, 3, &[(0, 1), (1, 2)], &[(0, 2)]);
        let table = RouteTable::build(&topo);
        assert_eq!(table.next_hop(name(1)), Some(name(1)));
        assert_eq!(table.next_hop(name(2)), Some(name(1)));
        assert_eq!(table.hops(name(2)), Some(2));
        assert_eq!(table.next_hop(name(0)), None);
        assert_eq!(table.hops(name(0)), Some(0));
        assert_eq!(table.edge_count(), 2);
    }

    #[test]
    fn ties_break_by_name() {
        // Square 0-1-3, 0-2-3: both paths to 3 have two hops; via 1 (smaller name) wins.
        let topo = topology(0, 4, &[(0, 2), (2, 3), (0, 1), (1, 3)], &[]);
        let table = RouteTable::build(&topo);
        assert_eq!(table.next_hop(name(3)), Some(name(1)));
        // Seen from 3, the path to 0 goes via 1 as well.
        let topo = topology(3, 4, &[(0, 2), (2, 3), (0, 1), (1, 3)], &[]);
        let table = RouteTable::build(&topo);
        assert_eq!(table.next_hop(name(0)), Some(name(1)));
    }

    #[test]
    fn unreachable_peers_have_no_route() {
        let topo = topology(0, 4, &[(0, 1), (2, 3)], &[]);
        let table = RouteTable::build(&topo);
        assert!(table.is_reachable(name(1)));
        assert!(!table.is_reachable(name(2)));
        assert_eq!(table.next_hop(name(3)), None);
        assert_eq!(table.next_hop(name(99)), None);
    }

    #[test]
    fn broadcast_trees_span_each_component_exactly_once() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 60;
        let edges = random_edges(&mut rng, n, 4);
        let table = RouteTable::build(&topology(0, n, &edges, &[]));
        for origin in 0..n {
            let mut reached = vec![0u32; usize::from(n)];
            for at in 0..n {
                for child in table.broadcast_children(name(origin), name(at)) {
                    // Each child is a neighbour of its parent.
                    assert!(table.neighbours(name(at)).any(|w| w == *child));
                    let [_, _, _, _, a, b] = child.0;
                    reached[usize::from(u16::from_be_bytes([a, b]))] += 1;
                }
            }
            for (v, count) in reached.iter().enumerate() {
                let expected = u32::from(v != usize::from(origin));
                assert_eq!(*count, expected, "origin {origin}, vertex {v}");
            }
        }
    }

    #[test]
    fn every_peer_computes_the_same_tree_and_consistent_routes() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let n = 40;
        let edges = random_edges(&mut rng, n, 3);
        let tables: Vec<RouteTable> = (0..n)
            .map(|me| RouteTable::build(&topology(me, n, &edges, &[])))
            .collect();
        for origin in [0, 7, 39] {
            for at in 0..n {
                let first = tables[0].broadcast_children(name(origin), name(at));
                for table in &tables[1..] {
                    assert_eq!(table.broadcast_children(name(origin), name(at)), first);
                }
            }
        }
        // Following next hops from anyone reaches anyone, in exactly `hops` steps.
        for src in 0..n {
            for dst in 0..n {
                let expected = tables[usize::from(src)].hops(name(dst)).unwrap();
                let mut at = src;
                let mut steps = 0;
                while at != dst {
                    let hop = tables[usize::from(at)].next_hop(name(dst)).unwrap();
                    let [_, _, _, _, a, b] = hop.0;
                    at = u16::from_be_bytes([a, b]);
                    steps += 1;
                    assert!(steps <= u32::from(n), "loop from {src} to {dst}");
                }
                assert_eq!(steps, expected);
            }
        }
    }

    #[test]
    fn relay_is_the_next_hop_for_a_distant_peer() {
        // 0-1-2 in a line: 2 is reached through 1, if 1 is usable.
        let table = RouteTable::build(&topology(0, 3, &[(0, 1), (1, 2)], &[]));
        assert_eq!(table.relay(name(2), |_| true), Some(name(1)));
        assert_eq!(table.relay(name(2), |_| false), None);
        // A direct neighbour with no common neighbour has no relay.
        assert_eq!(table.relay(name(1), |_| true), None);
        // Unknown peers and ourselves have none either.
        assert_eq!(table.relay(name(9), |_| true), None);
        assert_eq!(table.relay(name(0), |_| true), None);
    }

    #[test]
    fn relay_for_a_neighbour_is_a_usable_common_neighbour() {
        // 0 is connected to 1, 2, 3 and 4; 2 and 3 are also connected to 1; 4 is not.
        let edges = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (1, 3)];
        let table = RouteTable::build(&topology(0, 5, &edges, &[]));
        assert_eq!(table.relay(name(1), |_| true), Some(name(2)));
        assert_eq!(table.relay(name(1), |p| p != name(2)), Some(name(3)));
        assert_eq!(table.relay(name(1), |p| p == name(4)), None);
        // A one-sided connection is no relay: 4 lists 1, 1 does not list 4.
        let table = RouteTable::build(&topology(0, 5, &edges, &[(4, 1)]));
        assert_eq!(table.relay(name(1), |p| p == name(4)), None);
    }

    #[test]
    fn relay_for_a_distant_peer_falls_back_to_another_common_neighbour() {
        // Square 0-1-3, 0-2-3: the next hop to 3 is 1; when 1 is unusable, 2 carries.
        let table = RouteTable::build(&topology(0, 4, &[(0, 1), (1, 3), (0, 2), (2, 3)], &[]));
        assert_eq!(table.relay(name(3), |_| true), Some(name(1)));
        assert_eq!(table.relay(name(3), |p| p != name(1)), Some(name(2)));
    }

    #[test]
    fn equality_ignores_caches_and_sees_graph_changes() {
        let a = RouteTable::build(&topology(0, 3, &[(0, 1), (1, 2)], &[]));
        let b = RouteTable::build(&topology(0, 3, &[(0, 1), (1, 2)], &[]));
        let _ = a.broadcast_children(name(0), name(1));
        assert_eq!(a, b);
        let c = RouteTable::build(&topology(0, 3, &[(0, 1), (1, 2), (0, 2)], &[]));
        assert_ne!(a, c);
    }
}
