//! Fuzzes the control-connection handshake (`tunnel::crypto::handshake`) with a live peer.
//!
//! Input: `[setup, ops...]`. `setup` picks which side is under test (bit 0: initiator or
//! responder), whether each side has a password (bits 1–2) and how many honest rounds the
//! two sides exchange first (bits 3–4), so the fuzz bytes meet every state. Then each op is
//! `[kind, len, bytes...]`: kind even feeds `bytes` as a raw frame; kind odd feeds the
//! honest peer's next frame with `bytes` XORed into it (and cut to `len` if shorter), which
//! reaches the Noise layer and the payload decoder with almost-valid messages.
//!
//! Invariants checked besides "never panics": after an error every later read is
//! `AlreadyFailed` and the side writes at most one REFUSE frame; a side never reports
//! finished after an error; `finish` succeeds exactly when `is_finished` says so.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tunnel::crypto::handshake::{Handshake, HandshakeError, HandshakePayload, Role, frame_len};
use tunnel::crypto::identity::StaticKeypair;

const PSK_A: [u8; 32] = [0x11; 32];
const PSK_B: [u8; 32] = [0x22; 32];

fn keys() -> &'static (StaticKeypair, StaticKeypair) {
    static KEYS: OnceLock<(StaticKeypair, StaticKeypair)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let a = StaticKeypair::from_private([0x41; 32]).expect("key");
        let b = StaticKeypair::from_private([0x42; 32]).expect("key");
        (a, b)
    })
}

fn payload(i: u32) -> HandshakePayload {
    HandshakePayload {
        session_index: i,
        tunnel_port: 6784,
        features: 0,
    }
}

/// Splits a byte stream into complete frames (stops at the first bad prefix).
fn frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(Some(n)) = frame_len(bytes) {
        let Some((frame, rest)) = bytes.split_at_checked(n) else {
            break;
        };
        out.push(frame.to_vec());
        bytes = rest;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, mut ops)) = data.split_first() else {
        return;
    };
    let (ka, kb) = keys();
    let target_role = if setup & 1 == 0 {
        Role::Initiator
    } else {
        Role::Responder
    };
    let peer_role = match target_role {
        Role::Initiator => Role::Responder,
        Role::Responder => Role::Initiator,
    };
    let target_psk = (setup & 2 != 0).then_some(PSK_A);
    let peer_psk = match setup & 6 {
        6 => Some(PSK_A),
        4 => Some(PSK_B),
        _ => None,
    };
    let honest_rounds = (setup >> 3) & 3;
    let mut target = Handshake::new(target_role, target_psk, ka, payload(1)).expect("setup");
    let mut peer = Handshake::new(peer_role, peer_psk, kb, payload(2)).expect("setup");

    // Honest rounds: both write, both read everything. Peer frames not yet delivered to
    // the target queue up for "mutate" ops.
    let mut failed = false;
    let mut pending: Vec<Vec<u8>> = Vec::new();
    for _ in 0..honest_rounds {
        let mut t_out = Vec::new();
        let mut p_out = Vec::new();
        if target.write_message(&mut t_out).is_err() || peer.write_message(&mut p_out).is_err() {
            return;
        }
        for f in frames(&t_out) {
            if peer.read_message(&f).is_err() {
                break;
            }
        }
        for f in frames(&p_out) {
            if !failed && target.read_message(&f).is_err() {
                failed = true;
            }
        }
    }
    if failed {
        return;
    }
    let mut t_out = Vec::new();
    if target.write_message(&mut t_out).is_err() {
        return;
    }
    for f in frames(&t_out) {
        let _ = peer.read_message(&f);
    }
    let mut p_out = Vec::new();
    let _ = peer.write_message(&mut p_out);
    pending.extend(frames(&p_out));
    pending.reverse();

    while let [kind, len, rest @ ..] = ops {
        let take = usize::from(*len).min(rest.len());
        let (bytes, tail) = rest.split_at(take);
        ops = tail;
        let frame = if kind % 2 == 0 {
            bytes.to_vec()
        } else {
            let Some(mut honest) = pending.pop() else {
                continue;
            };
            for (b, m) in honest.iter_mut().zip(bytes) {
                *b ^= m;
            }
            if usize::from(*len) < honest.len() && kind & 2 != 0 {
                honest.truncate(usize::from(*len));
            }
            honest
        };
        let was_failed = failed;
        match target.read_message(&frame) {
            Ok(_) => assert!(!was_failed, "a failed handshake accepted a frame"),
            Err(e) => {
                if was_failed {
                    assert_eq!(e, HandshakeError::AlreadyFailed);
                }
                failed = true;
                let _ = e.name();
                let _ = e.to_string();
                let mut refusal = Vec::new();
                target
                    .write_message(&mut refusal)
                    .expect("flushing a refusal");
                assert!(refusal.is_empty() || (refusal.len() == 4 && refusal[2] == 4));
                let mut again = Vec::new();
                target.write_message(&mut again).expect("after a refusal");
                assert!(again.is_empty(), "more than one refusal");
                assert!(!target.is_finished());
            }
        }
        if !failed {
            // Keep the honest exchange going so later ops meet later states.
            let mut t_out = Vec::new();
            if target.write_message(&mut t_out).is_err() {
                failed = true;
            }
            for f in frames(&t_out) {
                let _ = peer.read_message(&f);
            }
            let mut p_out = Vec::new();
            let _ = peer.write_message(&mut p_out);
            let mut more = frames(&p_out);
            more.reverse();
            more.append(&mut pending);
            pending = more;
        }
    }
    let finished = target.is_finished();
    assert_eq!(target.finish().is_ok(), finished);
});
