//! Frame and UDP ports against the real kernel (needs root).
//!
//! Topology for the veth test: two "containers" c1, c2 and a "host" h, all
//! namespaces made by this test (pid-prefixed names). Each container's veth has
//! its host end in h; the test opens PacketPorts there and runs a tiny forwarder
//! (recv_batch on one port, send_frames on the other, vnet header untouched)
//! while ping-like UDP and a TCP transfer cross it. Dropping the `NamedNetns`
//! guards removes the namespaces and every link in them, even on failure.

// Test helpers outside #[test] fns count as non-test code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use weft::io::{
    FramePort, MAX_FRAME_LEN, PacketPort, PortError, PortOptions, RxBatch, TapPort, UdpOptions,
    UdpPort, UdpRxBatch, UdpSendPool, VNET_HDR_LEN, VnetFrame,
};
use weft::netlink::{Netlink, set_link_sysctl};
use weft::netns::{NamedNetns, run_in_netns};

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
    format!("wtp{}{tag}", std::process::id())
}

/// virtio_net_hdr byte 1: the GSO type (0 = none).
fn gso_type(vnet: &[u8; VNET_HDR_LEN]) -> u8 {
    vnet[1]
}

/// FNV-1a over a byte stream, to compare what was sent with what arrived.
#[derive(Clone, Copy)]
struct Fnv(u64);
impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Sets the flag when dropped, so helper threads stop even if the test panics.
struct StopOnDrop<'a>(&'a AtomicBool);
impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the forwarder saw.
#[derive(Debug, Default)]
struct ForwardStats {
    frames: [usize; 2],
    dropped: usize,
    /// Largest frame with a GSO type, per direction (0: c1→c2, 1: c2→c1).
    largest_gso: [usize; 2],
    truncated: usize,
}

/// Forwards frames between two ports until `stop` (or a 120 s safety deadline).
fn forward(a: &mut PacketPort, b: &mut PacketPort, stop: &AtomicBool) -> ForwardStats {
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(a, Token(0), Interest::READABLE)
        .unwrap();
    poll.registry()
        .register(b, Token(1), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(8);
    let mut batch = RxBatch::new(64);
    let mut stats = ForwardStats::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        // Edge-triggered: drain both ports whatever woke us.
        for (dir, (from, to)) in [(&*a, &*b), (&*b, &*a)].into_iter().enumerate() {
            loop {
                match from.recv_batch(&mut batch) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut out: Vec<VnetFrame<'_>> = Vec::with_capacity(n);
                        for (i, frame) in batch.iter().enumerate() {
                            if batch.is_truncated(i) {
                                stats.truncated += 1;
                                continue;
                            }
                            if gso_type(frame.vnet) != 0 {
                                stats.largest_gso[dir] =
                                    stats.largest_gso[dir].max(frame.frame.len());
                            }
                            out.push(frame);
                        }
                        let sent = to.send_frames(&out).unwrap();
                        stats.frames[dir] += sent;
                        stats.dropped += out.len() - sent;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("recv_batch: {e}"),
                }
            }
        }
    }
    stats
}

/// One container: a namespace with lo up and a veth whose host end is in `host`.
struct Container {
    netns: NamedNetns,
    fd: OwnedFd,
    host_ifindex: u32,
}

fn container(tag: &str, host: &OwnedFd, addr: &str) -> Container {
    let pid = std::process::id();
    let netns = NamedNetns::create(&ns_name(tag)).unwrap();
    let fd = netns.open().unwrap();
    let host_if = format!("wh{pid}{tag}");
    let peer_if = format!("wc{pid}{tag}");
    let host_ifindex = run_in_netns(host.as_fd(), || {
        let mut nl = Netlink::new().unwrap();
        let index = nl.create_veth(&host_if, &peer_if, fd.as_fd()).unwrap();
        // The host end carries no IP at all, so the host stack stays out.
        set_link_sysctl(&host_if, "ipv6/disable_ipv6", "1").unwrap();
        nl.set_up(index, true).unwrap();
        index
    })
    .unwrap();
    let addr: ipnet::IpNet = addr.parse().unwrap();
    run_in_netns(fd.as_fd(), || {
        let mut nl = Netlink::new().unwrap();
        let lo = nl.link_by_name("lo").unwrap().unwrap();
        nl.set_up(lo.index, true).unwrap();
        let eth = nl.link_by_name(&peer_if).unwrap().unwrap();
        nl.add_address(eth.index, addr).unwrap();
        nl.set_up(eth.index, true).unwrap();
    })
    .unwrap();
    Container {
        netns,
        fd,
        host_ifindex,
    }
}

#[test]
fn packet_ports_carry_udp_and_tcp_super_frames_between_veths() {
    if !have_root("packet_ports_carry_udp_and_tcp_super_frames_between_veths") {
        return;
    }
    let host = NamedNetns::create(&ns_name("h")).unwrap();
    let host_fd = host.open().unwrap();
    let c1 = container("a", &host_fd, "10.78.0.1/24");
    let c2 = container("b", &host_fd, "10.78.0.2/24");
    let mtu = run_in_netns(host_fd.as_fd(), || {
        Netlink::new()
            .unwrap()
            .link(c1.host_ifindex)
            .unwrap()
            .unwrap()
            .mtu
    })
    .unwrap() as usize;
    let (mut p1, mut p2) = run_in_netns(host_fd.as_fd(), || {
        let opts = PortOptions::default();
        (
            PacketPort::open(c1.host_ifindex, &opts).unwrap(),
            PacketPort::open(c2.host_ifindex, &opts).unwrap(),
        )
    })
    .unwrap();
    assert_eq!(p1.ifindex(), c1.host_ifindex);

    // Sockets are created inside the containers and used from this thread.
    let echo = run_in_netns(c2.fd.as_fd(), || UdpSocket::bind("10.78.0.2:7000"))
        .unwrap()
        .unwrap();
    let client = run_in_netns(c1.fd.as_fd(), || UdpSocket::bind("10.78.0.1:0"))
        .unwrap()
        .unwrap();
    let listener = run_in_netns(c2.fd.as_fd(), || TcpListener::bind("10.78.0.2:7001"))
        .unwrap()
        .unwrap();
    let tcp = run_in_netns(c1.fd.as_fd(), || {
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
    })
    .unwrap()
    .unwrap();

    let stop = AtomicBool::new(false);
    let total = 20 << 20;
    let (stats, sent_hash, received) = std::thread::scope(|s| {
        let _stop_guard = StopOnDrop(&stop);
        let forwarder = s.spawn(|| forward(&mut p1, &mut p2, &stop));

        // (a) ping-like: a UDP echo across the forwarder (ARP included).
        for timeout in [
            echo.set_read_timeout(Some(Duration::from_secs(10))),
            client.set_read_timeout(Some(Duration::from_secs(10))),
        ] {
            timeout.unwrap();
        }
        client.send_to(b"ping", "10.78.0.2:7000").unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = echo.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        echo.send_to(b"pong", from).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");

        // (b) 20 MiB of TCP from c1 to c2, compared by hash.
        let dest: SocketAddr = "10.78.0.2:7001".parse().unwrap();
        tcp.connect_timeout(&dest.into(), Duration::from_secs(10))
            .unwrap();
        let mut sender: TcpStream = tcp.into();
        let (mut server, _) = listener.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let reader = s.spawn(move || {
            let mut hash = Fnv::new();
            let mut count = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = server.read(&mut buf).unwrap();
                if n == 0 {
                    break (hash.0, count);
                }
                hash.update(&buf[..n]);
                count += n;
            }
        });
        sender
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut hash = Fnv::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut chunk = vec![0u8; 1 << 16];
        for _ in 0..total / chunk.len() {
            for b in chunk.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            hash.update(&chunk);
            sender.write_all(&chunk).unwrap();
        }
        sender.shutdown(Shutdown::Write).unwrap();
        let received = reader.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        (forwarder.join().unwrap(), hash.0, received)
    });
    println!("veth MTU {mtu}, forwarder: {stats:?}");
    assert_eq!(received, (sent_hash, total), "TCP bytes arrived intact");
    assert_eq!(stats.truncated, 0);
    assert!(
        stats.largest_gso[0] > mtu + 14,
        "a GSO super-frame larger than the MTU crossed whole: {stats:?}"
    );
    assert!(stats.largest_gso[0] <= MAX_FRAME_LEN);
    let counters = p1.stats().unwrap();
    assert!(counters.packets > 0, "{counters:?}");
    drop((c1.netns, c2.netns, host));
}

#[test]
fn packet_port_on_a_missing_interface_is_a_clear_error() {
    if !have_root("packet_port_on_a_missing_interface_is_a_clear_error") {
        return;
    }
    let netns = NamedNetns::create(&ns_name("m")).unwrap();
    let fd = netns.open().unwrap();
    let err = run_in_netns(fd.as_fd(), || {
        PacketPort::open(4242, &PortOptions::default())
    })
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(err, PortError::NoSuchInterface { ifindex: 4242 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "no network interface with index 4242 in this network namespace"
    );
}

#[test]
fn refused_frames_are_skipped_and_the_rest_of_the_batch_is_sent() {
    if !have_root("refused_frames_are_skipped_and_the_rest_of_the_batch_is_sent") {
        return;
    }
    let host = NamedNetns::create(&ns_name("s")).unwrap();
    let host_fd = host.open().unwrap();
    let c = container("k", &host_fd, "10.80.0.1/24");
    let peer_if = format!("wc{}k", std::process::id());
    let sender = run_in_netns(host_fd.as_fd(), || {
        PacketPort::open(c.host_ifindex, &PortOptions::default()).unwrap()
    })
    .unwrap();
    let mut receiver = run_in_netns(c.fd.as_fd(), || {
        let index = Netlink::new()
            .unwrap()
            .link_by_name(&peer_if)
            .unwrap()
            .unwrap()
            .index;
        PacketPort::open(index, &PortOptions::default()).unwrap()
    })
    .unwrap();

    // Broadcast frames of a local experimental ethertype, so nothing else matches.
    let frame = |len: usize, tag: u8| {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0x80, 0, 0, 0, 1, 0x88, 0xb5]);
        f.resize(len, tag);
        f
    };
    let oversize = frame(3000, 1);
    let good = frame(60, 2);
    let no_offload = [0u8; VNET_HDR_LEN];
    // GSO TCPv4 with gso_size 0 on a non-TCP frame: an invalid header.
    let bogus_gso = [0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    let batch = [
        VnetFrame {
            vnet: &bogus_gso,
            frame: &good,
        },
        VnetFrame {
            vnet: &no_offload,
            frame: &oversize,
        },
        VnetFrame {
            vnet: &no_offload,
            frame: &good,
        },
    ];
    assert_eq!(
        sender.send_frames(&batch).unwrap(),
        1,
        "only the valid frame goes out"
    );

    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut receiver, Token(0), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    let mut rx = RxBatch::new(8);
    let mut ours = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ours.is_empty() {
        match receiver.recv_batch(&mut rx) {
            Ok(_) => ours.extend(
                rx.iter()
                    .filter(|f| f.frame.get(12..14) == Some(&[0x88, 0xb5][..]))
                    .map(|f| f.frame.to_vec()),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "the valid frame never arrived");
                poll.poll(&mut events, Some(left)).unwrap();
            }
            Err(e) => panic!("recv_batch: {e}"),
        }
    }
    assert_eq!(ours, vec![good]);
}

/// Waits (with a deadline) until `port` yields a frame accepted by `pick`.
fn wait_for_frame<T>(
    port: &mut TapPort,
    batch: &mut RxBatch,
    mut pick: impl FnMut(&[u8; VNET_HDR_LEN], &[u8]) -> Option<T>,
) -> T {
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(port, Token(0), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        loop {
            match port.recv_batch(batch) {
                Ok(0) => break,
                Ok(_) => {
                    for frame in batch.iter() {
                        if let Some(found) = pick(frame.vnet, frame.frame) {
                            poll.registry().deregister(port).unwrap();
                            return found;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("TAP read: {e}"),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no matching frame from the TAP within 10 s"
        );
        poll.poll(&mut events, Some(left)).unwrap();
    }
}

#[test]
fn tap_port_exchanges_frames_with_the_kernel_and_persists() {
    if !have_root("tap_port_exchanges_frames_with_the_kernel_and_persists") {
        return;
    }
    let pid = std::process::id();
    let netns = NamedNetns::create(&ns_name("t")).unwrap();
    let fd = netns.open().unwrap();
    let name = format!("wtap{pid}");
    let (mut tap, udp) = run_in_netns(fd.as_fd(), || {
        let tap = TapPort::open(&name).unwrap();
        let mut nl = Netlink::new().unwrap();
        nl.add_address(tap.ifindex(), "10.79.0.1/24".parse().unwrap())
            .unwrap();
        nl.set_up(tap.ifindex(), true).unwrap();
        let busy = TapPort::open(&name).unwrap_err();
        assert!(matches!(busy, PortError::TapBusy { .. }), "{busy:?}");
        (tap, UdpSocket::bind("10.79.0.1:0").unwrap())
    })
    .unwrap();
    assert_eq!(tap.name(), name);

    // The kernel must resolve 10.79.0.2 first: an ARP request comes out of the TAP.
    udp.send_to(b"hello over tap", "10.79.0.2:9").unwrap();
    let mut batch = RxBatch::new(8);
    let (vnet, tap_mac) = wait_for_frame(&mut tap, &mut batch, |vnet, f| {
        let is_arp_request = f.len() >= 42
            && f[12..14] == [0x08, 0x06]
            && f[20..22] == [0, 1]
            && f[38..42] == [10, 79, 0, 2];
        is_arp_request.then(|| (*vnet, <[u8; 6]>::try_from(&f[6..12]).unwrap()))
    });
    assert_eq!(gso_type(&vnet), 0, "an ARP request is no GSO frame");

    // Answer it; the kernel then sends the queued datagram to our MAC.
    let peer_mac = [0x02, 0x79, 0, 0, 0, 2];
    let mut reply = Vec::with_capacity(42);
    reply.extend_from_slice(&tap_mac);
    reply.extend_from_slice(&peer_mac);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&peer_mac);
    reply.extend_from_slice(&[10, 79, 0, 2]);
    reply.extend_from_slice(&tap_mac);
    reply.extend_from_slice(&[10, 79, 0, 1]);
    let no_offload = [0u8; VNET_HDR_LEN];
    let sent = tap
        .send_frames(&[VnetFrame {
            vnet: &no_offload,
            frame: &reply,
        }])
        .unwrap();
    assert_eq!(sent, 1);
    let payload = wait_for_frame(&mut tap, &mut batch, |_, f| {
        let is_ipv4_udp = f.len() > 42 && f[12..14] == [0x08, 0x00] && f[23] == 17;
        (is_ipv4_udp && f[0..6] == peer_mac).then(|| f[42..].to_vec())
    });
    assert_eq!(payload, b"hello over tap");

    // Persistent: the device outlives the descriptor, and can be reattached.
    let index = tap.ifindex();
    drop(tap);
    let reopened = run_in_netns(fd.as_fd(), || {
        let link = Netlink::new().unwrap().link(index).unwrap();
        assert_eq!(
            link.map(|l| (l.name, l.kind)),
            Some((name.clone(), Some("tun".into())))
        );
        TapPort::open(&name).unwrap()
    })
    .unwrap();
    assert_eq!(reopened.ifindex(), index, "reattached to the same device");
    reopened.set_persistent(false).unwrap();
    drop(reopened);
    let gone = run_in_netns(fd.as_fd(), || Netlink::new().unwrap().link(index).unwrap()).unwrap();
    assert_eq!(
        gone, None,
        "not persistent any more: gone with its descriptor"
    );
}

/// Receives until `want` datagrams arrived (deadline 10 s); returns
/// (source, size) per datagram, the concatenated payload and the buffer count.
fn receive_datagrams(
    port: &mut UdpPort,
    want: usize,
) -> (Vec<(SocketAddr, usize)>, Vec<u8>, usize) {
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(port, Token(0), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    let mut batch = UdpRxBatch::new(32);
    let (mut seen, mut bytes, mut buffers) = (Vec::new(), Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < want {
        match port.recv_batch(&mut batch) {
            Ok(_) => {
                buffers += batch.buffers_filled();
                for (from, datagram) in batch.iter() {
                    seen.push((from, datagram.len()));
                    bytes.extend_from_slice(datagram);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "only {} of {want} datagrams arrived",
                    seen.len()
                );
                poll.poll(&mut events, Some(left)).unwrap();
            }
            Err(e) => panic!("UDP receive: {e}"),
        }
    }
    poll.registry().deregister(port).unwrap();
    (seen, bytes, buffers)
}

#[test]
fn udp_gso_sends_arrive_as_datagrams_with_and_without_gro() {
    if !have_root("udp_gso_sends_arrive_as_datagrams_with_and_without_gro") {
        return;
    }
    let netns = NamedNetns::create(&ns_name("u")).unwrap();
    let fd = netns.open().unwrap();
    let with_gro = UdpOptions::default();
    let without_gro = UdpOptions {
        gro: false,
        ..UdpOptions::default()
    };
    let no_gso = UdpOptions {
        gso: false,
        ..UdpOptions::default()
    };
    let (mut gro_port, mut plain_port, pool, plain_pool) = run_in_netns(fd.as_fd(), || {
        let mut nl = Netlink::new().unwrap();
        let lo = nl.link_by_name("lo").unwrap().unwrap();
        nl.set_up(lo.index, true).unwrap();
        let localhost = "127.0.0.1".parse().unwrap();
        (
            UdpPort::bind("127.0.0.1:0".parse().unwrap(), &with_gro).unwrap(),
            UdpPort::bind("127.0.0.1:0".parse().unwrap(), &without_gro).unwrap(),
            UdpSendPool::new(4, localhost, &with_gro).unwrap(),
            UdpSendPool::new(2, localhost, &no_gso).unwrap(),
        )
    })
    .unwrap();

    // Binding an address in use is a clear error.
    let taken = gro_port.local_addr();
    let err = run_in_netns(fd.as_fd(), || UdpPort::bind(taken, &with_gro))
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, PortError::AddressInUse { addr } if addr == taken),
        "{err:?}"
    );

    assert!(pool.max_gso_segments() > 1, "loopback supports UDP GSO");
    assert_eq!(plain_pool.max_gso_segments(), 1, "gso: false disables GSO");

    // 20 segments: 19 of 1000 bytes and a 500-byte tail.
    let payload: Vec<u8> = (0..19 * 1000 + 500).map(|i| (i * 7 % 251) as u8).collect();
    let mut expected_sizes = vec![1000; 19];
    expected_sizes.push(500);

    let hashes = [0u32, 1 << 30, 2 << 30, 3 << 30];
    let ports: Vec<u16> = hashes.iter().map(|h| pool.source_port(*h)).collect();
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        4,
        "each flow hash quarter has its own source port: {ports:?}"
    );

    for (port, gro) in [(&mut gro_port, true), (&mut plain_port, false)] {
        let dest = port.local_addr();
        for hash in hashes {
            pool.send(hash, dest, &payload, 1000).unwrap();
            let (seen, bytes, buffers) = receive_datagrams(port, 20);
            let sizes: Vec<usize> = seen.iter().map(|(_, n)| *n).collect();
            assert_eq!(sizes, expected_sizes, "gro={gro}");
            assert_eq!(bytes, payload, "gro={gro}");
            assert!(
                seen.iter()
                    .all(|(from, _)| from.port() == pool.source_port(hash))
            );
            if gro {
                assert!(
                    buffers < 20,
                    "GRO coalesced the datagrams ({buffers} buffers)"
                );
            } else {
                assert_eq!(buffers, 20, "without GRO every datagram is its own buffer");
            }
        }
        // The same through the sendmmsg path of a pool without GSO.
        plain_pool.send(7, dest, &payload, 1000).unwrap();
        let (seen, bytes, _) = receive_datagrams(port, 20);
        assert_eq!(
            seen.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            expected_sizes
        );
        assert_eq!(bytes, payload);
    }

    // More than 64 segments are split across several GSO sends.
    let big: Vec<u8> = (0..150 * 200).map(|i| (i % 256) as u8).collect();
    pool.send(0, plain_port.local_addr(), &big, 200).unwrap();
    let (seen, bytes, _) = receive_datagrams(&mut plain_port, 150);
    assert!(seen.iter().all(|(_, n)| *n == 200));
    assert_eq!(bytes, big);
}
