//! Fuzzes the encrypted tunnel's receive path (`TunnelSession::open`, the frame parser,
//! in-tunnel heartbeats) with arbitrary and almost-valid datagrams.
//!
//! Input: `[config, ops...]`; `config` picks the sender's rekey-by-count limit so epochs
//! change under the fuzzer. Each op is `[kind, len, bytes...]`:
//! - kind % 4 == 0: `bytes` is a raw datagram for the receiver;
//! - kind % 4 == 1: the sender seals `bytes` as a frames datagram, the op XORs nothing:
//!   it must open exactly once (a second open is `Replayed`) and its plaintext must be
//!   `bytes` exactly;
//! - kind % 4 == 2: as 1, but the fuzz bytes after position 0 are XORed into the sealed
//!   datagram: if anything changed it must not open;
//! - kind % 4 == 3: virtual time advances by `len` seconds (grace, expiry, rekey timers).
//!
//! An honest datagram must open unless the receiver lost epoch sync (it missed more than
//! `MAX_EPOCH_SKIP` epochs). Every opened plaintext goes through `frames` (all records) or
//! `parse_heartbeat`.
//! Nothing may panic.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tunnel::crypto::datagram::{DatagramKind, HEADER_LEN, TAG_LEN, frames, parse_heartbeat};
use tunnel::crypto::drop_reason::TunnelDrop;
use tunnel::crypto::session::{MAX_EPOCH_SKIP, SessionConfig, TunnelKeys, TunnelSession};

fn inspect(kind: DatagramKind, plaintext: &[u8]) {
    match kind {
        DatagramKind::Frames => {
            for record in frames(plaintext) {
                match record {
                    Ok((header, frame)) => {
                        assert!(frame.len() >= 14);
                        let _ = header.relayed();
                    }
                    Err(e) => assert_eq!(e, TunnelDrop::MalformedFrame),
                }
            }
        }
        DatagramKind::Heartbeat => {
            let _ = parse_heartbeat(plaintext);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&config, mut ops)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let mut now = t0;
    let send_cfg = SessionConfig {
        rekey_after_messages: u64::from(config % 8) + 1,
        ..SessionConfig::default()
    };
    let (ka, kb) = TunnelKeys::pair_for_testing(&[9; 32]).expect("keys");
    let mut sender = TunnelSession::new(&ka, 5, 6, send_cfg, t0).expect("session");
    let mut receiver =
        TunnelSession::new(&kb, 6, 5, SessionConfig::default(), t0).expect("session");
    let mut buf = Vec::with_capacity(2048);

    while let [kind, len, rest @ ..] = ops {
        let take = usize::from(*len).min(rest.len());
        let (bytes, tail) = rest.split_at(take);
        ops = tail;
        match kind % 4 {
            0 => {
                buf.clear();
                buf.extend_from_slice(bytes);
                if let Ok(opened) = receiver.open(now, &mut buf) {
                    inspect(opened.kind, opened.plaintext);
                }
            }
            1 | 2 => {
                buf.clear();
                buf.resize(HEADER_LEN, 0);
                buf.extend_from_slice(bytes);
                buf.resize(HEADER_LEN + bytes.len() + TAG_LEN, 0);
                let dkind = if kind & 4 == 0 {
                    DatagramKind::Frames
                } else {
                    DatagramKind::Heartbeat
                };
                sender.seal(now, dkind, &mut buf).expect("seal");
                let sealed = buf.clone();
                let mut changed = false;
                if kind % 4 == 2 {
                    for (b, m) in buf.iter_mut().zip(bytes.iter().skip(1)) {
                        *b ^= m;
                        changed |= *m != 0;
                    }
                }
                match receiver.open(now, &mut buf) {
                    Ok(opened) => {
                        assert!(!changed, "a modified datagram opened");
                        assert_eq!(opened.plaintext, bytes, "plaintext differs");
                        inspect(opened.kind, opened.plaintext);
                        let mut again = sealed.clone();
                        assert_eq!(
                            receiver.open(now, &mut again).err(),
                            Some(TunnelDrop::Replayed),
                            "a datagram opened twice"
                        );
                    }
                    Err(e) => {
                        let _ = e.name();
                        // An honest, unmodified datagram may only fail when the receiver
                        // lost sync: it missed more epochs than it derives ahead (the
                        // modified datagrams before it used them up; the epoch byte may
                        // even have wrapped onto the receiver's own).
                        let gap = sender.send_epoch() - receiver.recv_epoch();
                        if !changed {
                            assert!(
                                gap > u64::from(MAX_EPOCH_SKIP),
                                "honest datagram refused: {e:?} (epoch gap {gap})"
                            );
                        }
                    }
                }
            }
            _ => {
                now += Duration::from_secs(u64::from(*len));
                receiver.handle_timeout(now);
            }
        }
    }
});
