//! Bounds on everything a peer can make us hold, so a hostile or broken peer costs bounded
//! memory and a record always fits one mesh frame.

/// Records (peers) we hold; also bounds per-peer lists (tombstones, acks, ring members).
pub const MAX_PEERS: usize = 4096;
/// Runs in one address set (`owned`, `used`): 8 bytes each on the wire.
pub const MAX_RUNS: usize = 32_768;
/// Entries of per-address lists (gifts, claims, grants).
pub const MAX_LIST: usize = 4096;
/// Outstanding space requests of one peer (one per subnet at a time).
pub const MAX_SPACE_REQUESTS: usize = 16;
/// Own earlier epochs kept until their heir took them over.
pub const MAX_RETIRED: usize = 4;
/// Longest handle, in bytes.
pub const MAX_HANDLE_LEN: usize = 512;
/// Handles held or waiting at once on one peer.
pub const MAX_HANDLES: usize = 65_536;
/// Requests waiting at once on one peer.
pub const MAX_PENDING: usize = 4096;
/// Target size of one encoded message; records are batched up to it (one record may
/// exceed it, up to [`MAX_MESSAGE_LEN`]).
pub const TARGET_MESSAGE_LEN: usize = 256 * 1024;
/// Largest message accepted (fits the mesh's 4 MiB frame with room to spare).
pub const MAX_MESSAGE_LEN: usize = 3 * 1024 * 1024;
