//! Arbitrary bytes as a control stream: frame reassembly, message decoding, the
//! encode/decode round trip, and a node handling whatever decodes, must never panic.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh::{
    ConnId, Direction, FrameDecoder, Hello, Mesh, MeshConfig, Message, Nickname, PeerName,
    encode_frame,
};

/// A node with one inbound connection; established (Hello received) if `hello`.
fn node(now: Instant, hello: bool) -> Option<(Mesh, ConnId)> {
    let name = PeerName([2, 0, 0, 0, 0, 1]);
    let mut config = MeshConfig::new(name, Nickname::truncated("fuzz"), 1);
    config.max_frame_len = 64 * 1024;
    config.gossip_batch_len = 16 * 1024;
    let mut mesh = Mesh::new(config, now, 7).ok()?;
    let conn = ConnId(1);
    let remote = SocketAddr::from(([127, 0, 0, 2], 40000));
    mesh.handle_connection_opened(now, conn, Direction::Inbound, remote)
        .ok()?;
    if !hello {
        return Some((mesh, conn));
    }
    let hello = Message::Hello(Hello {
        name: PeerName([2, 0, 0, 0, 0, 2]),
        nickname: Nickname::truncated("peer"),
        uid: 2,
        listen_port: 6783,
        vxlan_port: 4789,
        tunnel_port: 6784,
        features: 0,
        conn_nonce: 3,
    });
    mesh.handle_message(now, conn, hello);
    Some((mesh, conn))
}

fn drain(mesh: &mut Mesh) {
    while mesh.poll_transmit().is_some() {}
    while mesh.poll_action().is_some() {}
    while mesh.poll_event().is_some() {}
    let _ = mesh.poll_timeout();
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let Some((mut established, conn)) = node(now, true) else {
        return;
    };
    // 1. The codec alone, with round trips.
    let mut decoder = FrameDecoder::new(64 * 1024);
    decoder.push(data);
    while let Ok(Some(body)) = decoder.next_frame() {
        let Ok(message) = Message::decode(body) else {
            continue;
        };
        let mut encoded = Vec::new();
        message.encode(&mut encoded);
        assert_eq!(Message::decode(&encoded).as_ref(), Ok(&message));
        let mut framed = Vec::new();
        encode_frame(&message, &mut framed);
        assert_eq!(framed.len(), encoded.len() + 4);
        // 2. Decoded messages on an established connection.
        established.handle_message(now, conn, message);
        drain(&mut established);
    }
    // 3. The raw bytes as a stream on an established connection and on a fresh one
    // (where anything but a Hello must close it), in two chunks.
    let Some((mut fresh, fresh_conn)) = node(now, false) else {
        return;
    };
    let split = data.len() / 2;
    for mesh_and_conn in [(&mut established, conn), (&mut fresh, fresh_conn)] {
        let (mesh, id) = mesh_and_conn;
        mesh.handle_bytes(now, id, &data[..split]);
        mesh.handle_bytes(now, id, &data[split..]);
        drain(mesh);
        let later = now + Duration::from_secs(60);
        mesh.handle_timeout(later);
        drain(mesh);
        let _ = mesh.status(later);
    }
});
