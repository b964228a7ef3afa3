//! Arbitrary bytes as a request to the Docker plugin: the bounded HTTP head parser, and
//! every protocol method's body decoder, must never panic, and what they accept must be
//! within their bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::docker::http::{MAX_BODY, MAX_HEAD, parse_head};
use weft::docker::protocol::parse_call;

/// Every path Docker POSTs to, and one it does not.
const PATHS: [&str; 20] = [
    "/Plugin.Activate",
    "/NetworkDriver.GetCapabilities",
    "/NetworkDriver.CreateNetwork",
    "/NetworkDriver.DeleteNetwork",
    "/NetworkDriver.CreateEndpoint",
    "/NetworkDriver.EndpointOperInfo",
    "/NetworkDriver.DeleteEndpoint",
    "/NetworkDriver.Join",
    "/NetworkDriver.Leave",
    "/NetworkDriver.DiscoverNew",
    "/NetworkDriver.DiscoverDelete",
    "/NetworkDriver.ProgramExternalConnectivity",
    "/NetworkDriver.RevokeExternalConnectivity",
    "/IpamDriver.GetCapabilities",
    "/IpamDriver.GetDefaultAddressSpaces",
    "/IpamDriver.RequestPool",
    "/IpamDriver.ReleasePool",
    "/IpamDriver.RequestAddress",
    "/IpamDriver.ReleaseAddress",
    "/Nope.Nothing",
];

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, used))) = parse_head(data) {
        assert!(used <= data.len() && used <= MAX_HEAD);
        assert!(head.content_length <= MAX_BODY);
        assert!(head.path.starts_with('/'));
    }
    if let Some((first, body)) = data.split_first() {
        let _ = parse_call(PATHS[usize::from(*first) % PATHS.len()], body);
    }
});
