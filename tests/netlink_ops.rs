//! Netlink and namespace operations against the real kernel (needs root).
//!
//! Everything happens inside namespaces this test creates (named with the test
//! process's pid); the root namespace is never touched. `NamedNetns` guards
//! delete the namespaces, and with them every link inside, even on failure.

// Test helpers outside #[test] fns count as non-test code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::fd::AsFd;
use std::process::Command;

use weft::netlink::{Netlink, NetlinkError, set_link_sysctl};
use weft::netns::{NamedNetns, NetnsError, NetnsTarget, command_in_netns, netns_id, run_in_netns};

/// True when running as root; otherwise skips (or fails under CI=true).
fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root and CI=true"
    );
    println!("skipped {test}: needs root");
    false
}

fn ns_name(tag: &str) -> String {
    format!("wtn{}{tag}", std::process::id())
}

#[test]
fn veth_into_a_named_netns_is_configured_and_visible_inside() {
    if !have_root("veth_into_a_named_netns_is_configured_and_visible_inside") {
        return;
    }
    let pid = std::process::id();
    let host = NamedNetns::create(&ns_name("h")).unwrap();
    let container = NamedNetns::create(&ns_name("c")).unwrap();
    let host_fd = host.open().unwrap();
    let container_fd = container.open().unwrap();
    let host_if = format!("wv{pid}h");
    let peer_if = format!("wv{pid}c");
    let mac = [0x02, 0x77, 0, 0, 0, 1];
    let addr: ipnet::IpNet = "10.77.0.1/24".parse().unwrap();

    let (index, links, addresses) = run_in_netns(host_fd.as_fd(), || {
        let mut nl = Netlink::new().unwrap();
        let index = nl
            .create_veth(&host_if, &peer_if, container_fd.as_fd())
            .unwrap();
        nl.set_mtu(index, 1400).unwrap();
        nl.set_mac(index, mac).unwrap();
        nl.add_address(index, addr).unwrap();
        nl.set_up(index, true).unwrap();
        let sysctl = |key: &str| {
            let value = fs::read_to_string(format!("/proc/sys/net/{key}")).unwrap();
            value.trim().to_string()
        };
        set_link_sysctl(&host_if, "disable_ipv6", "1").unwrap();
        assert_eq!(sysctl(&format!("ipv6/conf/{host_if}/disable_ipv6")), "1");
        set_link_sysctl(&host_if, "ipv4/rp_filter", "2").unwrap();
        assert_eq!(sysctl(&format!("ipv4/conf/{host_if}/rp_filter")), "2");

        let link = nl.link(index).unwrap().expect("the new veth exists");
        assert_eq!(link.name, host_if);
        assert_eq!(link.mtu, 1400);
        assert_eq!(link.mac, Some(mac));
        assert_eq!(link.kind.as_deref(), Some("veth"));
        assert!(link.up);
        assert_eq!(nl.link_by_name(&host_if).unwrap(), Some(link));
        assert_eq!(
            nl.link_by_name(&peer_if).unwrap(),
            None,
            "the peer was born elsewhere"
        );
        assert_eq!(nl.link(u32::MAX >> 1).unwrap(), None);

        // Error paths.
        let err = nl
            .create_veth(&host_if, &format!("wv{pid}x"), container_fd.as_fd())
            .unwrap_err();
        assert!(matches!(err, NetlinkError::AlreadyExists { .. }), "{err:?}");
        let err = nl.add_address(index, addr).unwrap_err();
        assert!(matches!(err, NetlinkError::AddressExists { .. }), "{err:?}");
        let err = nl.set_mtu(u32::MAX >> 1, 1400).unwrap_err();
        assert!(matches!(err, NetlinkError::NoSuchDevice { .. }), "{err:?}");
        let err = nl.set_mtu(index, 10).unwrap_err();
        assert!(
            matches!(
                err,
                NetlinkError::Kernel {
                    errno: libc::EINVAL,
                    ..
                }
            ),
            "{err:?}"
        );

        (index, nl.links().unwrap(), nl.addresses().unwrap())
    })
    .unwrap();

    // /proc/sys/net is per namespace: the link's sysctls are not visible from here.
    let root_view = format!("/proc/sys/net/ipv6/conf/{host_if}");
    assert!(!std::path::Path::new(&root_view).exists());

    let kinds: Vec<(String, Option<String>)> = links
        .iter()
        .map(|l| (l.name.clone(), l.kind.clone()))
        .collect();
    assert!(kinds.contains(&("lo".into(), None)), "{kinds:?}");
    assert!(
        kinds.contains(&(host_if.clone(), Some("veth".into()))),
        "{kinds:?}"
    );
    assert!(addresses.contains(&(index, addr)), "{addresses:?}");

    // Inside the container: the peer is there under its final name, pointing back.
    let multicast: ipnet::IpNet = "224.0.0.0/4".parse().unwrap();
    let peer = run_in_netns(container_fd.as_fd(), || {
        let mut nl = Netlink::new().unwrap();
        let peer = nl.link_by_name(&peer_if).unwrap().expect("peer inside");
        nl.set_up(peer.index, true).unwrap();
        nl.add_address(peer.index, "10.77.0.2/24".parse().unwrap())
            .unwrap();
        nl.add_route(multicast, peer.index).unwrap();
        let err = nl.add_route(multicast, peer.index).unwrap_err();
        assert!(matches!(err, NetlinkError::AlreadyExists { .. }), "{err:?}");
        peer
    })
    .unwrap();
    assert_eq!(peer.kind.as_deref(), Some("veth"));
    assert_eq!(peer.peer_index, Some(index));

    // Cross-check with iproute2, started inside the namespace by command_in_netns.
    let out = command_in_netns(
        Command::new("ip").args(["-4", "route", "show"]),
        container.open().unwrap(),
    )
    .output()
    .unwrap();
    let routes = String::from_utf8_lossy(&out.stdout);
    assert!(
        routes.contains(&format!("224.0.0.0/4 dev {peer_if}")),
        "{routes}"
    );

    // Deleting the host end removes the pair, including the end inside the container.
    run_in_netns(host_fd.as_fd(), || {
        let mut nl = Netlink::new().unwrap();
        nl.delete_link(index).unwrap();
        assert_eq!(nl.link(index).unwrap(), None);
        let err = nl.delete_link(index).unwrap_err();
        assert!(matches!(err, NetlinkError::NoSuchDevice { .. }), "{err:?}");
    })
    .unwrap();
    let gone = run_in_netns(container_fd.as_fd(), || {
        Netlink::new().unwrap().link_by_name(&peer_if).unwrap()
    })
    .unwrap();
    assert_eq!(gone, None);
}

#[test]
fn named_namespaces_interoperate_with_iproute2_and_leave_nothing_behind() {
    if !have_root("named_namespaces_interoperate_with_iproute2_and_leave_nothing_behind") {
        return;
    }
    let ours = ns_name("o");
    let theirs = ns_name("i");
    let mounts_before = netns_mounts(&[&ours, &theirs]);

    // Ours is usable by `ip netns exec`, and is a different namespace than ours.
    let netns = NamedNetns::create(&ours).unwrap();
    let err = NamedNetns::create(&ours).unwrap_err();
    assert!(matches!(err, NetnsError::AlreadyExists { .. }), "{err:?}");
    let out = Command::new("ip")
        .args(["netns", "exec", &ours, "readlink", "/proc/self/ns/net"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let inside = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let ours_id = netns_id(netns.open().unwrap().as_fd()).unwrap();
    assert!(inside.contains("net:["), "{inside}");
    let own = fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        inside,
        own.to_string_lossy(),
        "ip netns exec entered a new namespace"
    );
    assert!(inside.contains(&netns_ino(&netns.path())), "{inside}");

    // Theirs is usable by us, and NamedNetns::delete removes it like `ip netns del`.
    let status = Command::new("ip")
        .args(["netns", "add", &theirs])
        .status()
        .unwrap();
    assert!(status.success());
    let target: NetnsTarget = theirs.parse().unwrap();
    let fd = target.open().unwrap();
    assert_ne!(netns_id(fd.as_fd()).unwrap(), ours_id);
    let links = run_in_netns(fd.as_fd(), || Netlink::new().unwrap().links().unwrap()).unwrap();
    assert_eq!(links.len(), 1, "a fresh namespace has only lo: {links:?}");
    drop(fd);
    NamedNetns::delete(&theirs).unwrap();
    let err = target.open().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no network namespace named {theirs} (no /run/netns/{theirs})")
    );

    drop(netns);
    assert!(!std::path::Path::new("/run/netns").join(&ours).exists());
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !listed.contains(&ours) && !listed.contains(&theirs),
        "{listed}"
    );
    assert_eq!(
        netns_mounts(&[&ours, &theirs]),
        mounts_before,
        "no namespace mount leaked"
    );
    assert!(mounts_before.is_empty());
}

/// Mount points of the named namespaces `names`.
fn netns_mounts(names: &[&str]) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .any(|field| names.iter().any(|n| field == format!("/run/netns/{n}")))
        })
        .map(str::to_owned)
        .collect()
}

/// The inode number of a namespace file, as `net:[INO]` shows it.
fn netns_ino(path: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("[{}]", fs::metadata(path).unwrap().ino())
}
