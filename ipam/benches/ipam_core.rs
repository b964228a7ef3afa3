//! Benchmarks of the IPAM core (filled in with the node).

fn main() {}
