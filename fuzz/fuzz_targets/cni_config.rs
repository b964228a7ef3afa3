//! The CNI plugin's input parsers: the network configuration on stdin (with its
//! prevResult), `CNI_ARGS`, and the results it renders back. None may panic; a config
//! that parses must render a result in its own version that parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cni::NetConf::sniff_version(data);
    if let Ok(conf) = cni::NetConf::parse(data) {
        if let Some(prev) = &conf.prev_result {
            let json = prev.to_json(conf.cni_version);
            let back = cni::CniResult::from_value(&json, "fuzz").expect("a rendered result reads back");
            assert_eq!(back.ips, prev.ips);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cni::parse_cni_args(text);
        let _ = cni::Invocation::from_env([("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", text), ("CNI_IFNAME", text), ("CNI_NETNS", text)]);
    }
});
