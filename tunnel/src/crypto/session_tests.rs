use super::*;
use crate::crypto::datagram::DatagramKind;

const A_INDEX: u32 = 0x1111_1111;
const B_INDEX: u32 = 0x2222_2222;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Sessions for both ends of a pair, A the initiator.
fn pair(config: SessionConfig, now: Instant) -> (TunnelSession, TunnelSession) {
    let (ka, kb) = TunnelKeys::pair_for_testing(&[7; 32]).unwrap();
    let a = TunnelSession::new(&ka, A_INDEX, B_INDEX, config, now).unwrap();
    let b = TunnelSession::new(&kb, B_INDEX, A_INDEX, config, now).unwrap();
    (a, b)
}

/// A sealed datagram carrying `payload`.
fn sealed(s: &mut TunnelSession, now: Instant, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    d[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    s.seal(now, DatagramKind::Frames, &mut d).unwrap();
    d
}

fn open(s: &mut TunnelSession, now: Instant, d: &[u8]) -> Result<Vec<u8>, TunnelDrop> {
    let mut copy = d.to_vec();
    s.open(now, &mut copy).map(|o| o.plaintext.to_vec())
}

#[test]
fn seal_open_round_trip_both_directions() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(SessionConfig::default(), t0);
    let d = sealed(&mut a, t0, b"hello from a");
    assert_ne!(
        &d[HEADER_LEN..HEADER_LEN + 12],
        b"hello from a",
        "not encrypted"
    );
    let header = ClearHeader::parse(&d).unwrap();
    assert_eq!(header.receiver_index, B_INDEX);
    assert_eq!((header.counter, header.epoch), (0, 0));
    let mut buf = d.clone();
    let opened = b.open(t0, &mut buf).unwrap();
    assert_eq!(opened.kind, DatagramKind::Frames);
    assert_eq!(opened.epoch, 0);
    assert_eq!(opened.plaintext, b"hello from a");

    let back = sealed(&mut b, t0, b"and back");
    assert_eq!(open(&mut a, t0, &back).unwrap(), b"and back");
    // A datagram is keyed per direction: A cannot open its own.
    let own = sealed(&mut a, t0, b"x");
    let mut a2 = pair(SessionConfig::default(), t0).0;
    assert_eq!(
        open(&mut a2, t0, &own),
        Err(TunnelDrop::UnknownSession(B_INDEX))
    );
    assert_eq!(a.counters().sealed, 2);
    assert_eq!(b.counters().opened, 1);
}

#[test]
fn empty_payload_and_short_buffers() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(SessionConfig::default(), t0);
    let d = sealed(&mut a, t0, b"");
    assert_eq!(d.len(), HEADER_LEN + TAG_LEN);
    assert_eq!(open(&mut b, t0, &d).unwrap(), b"");
    let mut short = [0u8; HEADER_LEN + TAG_LEN - 1];
    assert_eq!(
        a.seal(t0, DatagramKind::Frames, &mut short),
        Err(SealError::BufferTooShort)
    );
    for len in 0..HEADER_LEN + TAG_LEN {
        assert_eq!(open(&mut b, t0, &d[..len]), Err(TunnelDrop::Truncated));
    }
}

#[test]
fn any_tampered_byte_fails_authentication() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(SessionConfig::default(), t0);
    let d = sealed(&mut a, t0, &[0x5a; 40]);
    for i in 0..d.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = d.clone();
            t[i] ^= bit;
            let verdict = open(&mut b, t0, &t);
            let expected = match i {
                // Version/type nibbles and the session index are refused before
                // decryption; everything else (counter included) fails the tag.
                0 if bit == 0x80 => TunnelDrop::UnsupportedVersion(0x91 >> 4),
                0 => TunnelDrop::UnknownType(0x10),
                1 if bit == 0x01 => TunnelDrop::BadTag, // epoch 1: a rekey that does not verify
                1 => TunnelDrop::StaleEpoch,            // epoch 128 lies "behind"
                4..8 => TunnelDrop::UnknownSession(u32::from_le_bytes(t[4..8].try_into().unwrap())),
                _ => TunnelDrop::BadTag,
            };
            assert_eq!(verdict, Err(expected), "byte {i} bit {bit:#x}");
        }
    }
    // Nothing moved: the untouched datagram still opens, once.
    assert_eq!(open(&mut b, t0, &d).unwrap(), vec![0x5a; 40]);
    assert_eq!(b.recv_epoch(), 0);
    assert_eq!(b.counters().recv_rekeys, 0);
}

#[test]
fn flags_and_reserved_bytes_are_authenticated() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(SessionConfig::default(), t0);
    let d = sealed(&mut a, t0, b"payload");
    for i in [2, 3] {
        let mut t = d.clone();
        t[i] = 0xff;
        assert_eq!(open(&mut b, t0, &t), Err(TunnelDrop::BadTag), "byte {i}");
    }
}

#[test]
fn replayed_datagram_is_delivered_once() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(SessionConfig::default(), t0);
    let d = sealed(&mut a, t0, b"once");
    assert!(open(&mut b, t0, &d).is_ok());
    assert_eq!(open(&mut b, t0, &d), Err(TunnelDrop::Replayed));
    assert_eq!(b.counters().opened, 1);
}

#[test]
fn forged_datagram_does_not_move_the_window() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(SessionConfig::default(), t0);
    let first = sealed(&mut a, t0, b"1");
    // A forgery claiming a far-ahead counter must not push `first` out of the window.
    let mut forged = first.clone();
    forged[8..16].copy_from_slice(&1_000_000u64.to_le_bytes());
    assert_eq!(open(&mut b, t0, &forged), Err(TunnelDrop::BadTag));
    assert!(open(&mut b, t0, &first).is_ok());
}

#[test]
fn reordering_within_the_window_is_accepted_beyond_rejected() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(SessionConfig::default(), t0);
    let n = super::super::replay::WINDOW as usize + 10;
    let all: Vec<_> = (0..n)
        .map(|i| sealed(&mut a, t0, &(i as u32).to_be_bytes()))
        .collect();
    // Deliver the newest first, then the rest newest to oldest.
    assert!(open(&mut b, t0, &all[n - 1]).is_ok());
    let mut accepted = 1;
    let mut too_old = 0;
    for d in all[..n - 1].iter().rev() {
        match open(&mut b, t0, d) {
            Ok(_) => accepted += 1,
            Err(TunnelDrop::TooOld) => too_old += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(accepted, super::super::replay::WINDOW as usize);
    assert_eq!(too_old, 10);
    assert!(accepted >= 2048);
}

#[test]
fn rekey_by_time_with_overlap_and_grace() {
    let t0 = Instant::now();
    let config = SessionConfig::default();
    let (mut a, mut b) = pair(config, t0);
    let old1 = sealed(&mut a, t0, b"old 1");
    let old2 = sealed(&mut a, t0 + secs(119), b"old 2");
    assert_eq!(a.send_epoch(), 0);
    // 120 s after the epoch began the sender ratchets on its next datagram.
    let new1 = sealed(&mut a, t0 + secs(120), b"new 1");
    assert_eq!(a.send_epoch(), 1);
    assert_eq!(a.counters().send_rekeys, 1);
    let h = ClearHeader::parse(&new1).unwrap();
    assert_eq!(
        (h.epoch, h.counter),
        (1, 0),
        "counter restarts in a new epoch"
    );

    let t1 = t0 + secs(121);
    assert_eq!(open(&mut b, t1, &new1).unwrap(), b"new 1");
    assert_eq!(b.recv_epoch(), 1);
    assert_eq!(b.counters().recv_rekeys, 1);
    // A straggler of epoch 0 within the grace period: accepted, once.
    assert_eq!(open(&mut b, t1 + secs(5), &old2).unwrap(), b"old 2");
    assert_eq!(open(&mut b, t1 + secs(5), &old2), Err(TunnelDrop::Replayed));
    assert_eq!(b.poll_timeout(), Some(t1 + config.epoch_grace));
    // After the grace period epoch 0 is forgotten.
    b.handle_timeout(t1 + config.epoch_grace);
    assert_eq!(b.poll_timeout(), None);
    assert_eq!(
        open(&mut b, t1 + secs(11), &old1),
        Err(TunnelDrop::StaleEpoch)
    );
    // Epoch 1 keeps working, and a replay of the datagram that rekeyed is refused.
    assert_eq!(
        open(&mut b, t1 + secs(11), &new1),
        Err(TunnelDrop::Replayed)
    );
    let new2 = sealed(&mut a, t1 + secs(11), b"new 2");
    assert_eq!(open(&mut b, t1 + secs(11), &new2).unwrap(), b"new 2");
}

#[test]
fn straggler_after_grace_is_rejected_even_without_a_timer_call() {
    let t0 = Instant::now();
    let config = SessionConfig::default();
    let (mut a, mut b) = pair(config, t0);
    let old = sealed(&mut a, t0, b"old");
    let new = sealed(&mut a, t0 + secs(130), b"new");
    assert!(open(&mut b, t0 + secs(130), &new).is_ok());
    let late = t0 + secs(130) + config.epoch_grace;
    assert_eq!(open(&mut b, late, &old), Err(TunnelDrop::StaleEpoch));
}

#[test]
fn rekey_by_message_count() {
    let t0 = Instant::now();
    let config = SessionConfig {
        rekey_after_messages: 5,
        ..SessionConfig::default()
    };
    let (mut a, mut b) = pair(config, t0);
    let mut epochs = Vec::new();
    for i in 0..12u8 {
        let d = sealed(&mut a, t0, &[i]);
        let h = ClearHeader::parse(&d).unwrap();
        epochs.push((h.epoch, h.counter));
        assert_eq!(open(&mut b, t0, &d).unwrap(), [i]);
    }
    assert_eq!(
        epochs,
        [
            (0, 0),
            (0, 1),
            (0, 2),
            (0, 3),
            (0, 4),
            (1, 0),
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 4),
            (2, 0),
            (2, 1)
        ]
    );
    assert_eq!(b.recv_epoch(), 2);
}

#[test]
fn receiver_catches_up_over_lost_epochs_but_not_too_far() {
    let t0 = Instant::now();
    let config = SessionConfig {
        rekey_after_messages: 1,
        ..SessionConfig::default()
    };
    let (mut a, mut b) = pair(config, t0);
    let ds: Vec<_> = (0..12u8).map(|i| sealed(&mut a, t0, &[i])).collect();
    // Epochs 0..=11, one datagram each. Lose 1..=3: epoch 4 is 4 ahead of 0, allowed.
    assert!(open(&mut b, t0, &ds[0]).is_ok());
    assert_eq!(open(&mut b, t0, &ds[4]).unwrap(), [4]);
    assert_eq!(b.recv_epoch(), 4);
    // Epoch 10 is 6 ahead of 4: beyond MAX_EPOCH_SKIP.
    assert_eq!(open(&mut b, t0, &ds[10]), Err(TunnelDrop::UnknownEpoch));
    assert_eq!(b.recv_epoch(), 4);
    assert_eq!(open(&mut b, t0, &ds[8]).unwrap(), [8]);
}

#[test]
fn key_expires_without_rekey() {
    let t0 = Instant::now();
    let lazy = SessionConfig {
        rekey_after_time: secs(1_000),
        ..SessionConfig::default()
    };
    let (mut a, _) = pair(lazy, t0);
    let (_, mut b) = pair(SessionConfig::default(), t0);
    let d1 = sealed(&mut a, t0 + secs(179), b"ok");
    assert!(open(&mut b, t0 + secs(179), &d1).is_ok());
    let d2 = sealed(&mut a, t0 + secs(180), b"late");
    assert_eq!(
        open(&mut b, t0 + secs(180), &d2),
        Err(TunnelDrop::KeyExpired)
    );
}

#[test]
fn counter_limit_forces_a_rekey_on_send_and_is_refused_on_receive() {
    let t0 = Instant::now();
    let config = SessionConfig {
        rekey_after_messages: u64::MAX,
        ..SessionConfig::default()
    };
    let (mut a, mut b) = pair(config, t0);
    a.send.counter = COUNTER_LIMIT - 1;
    let last = sealed(&mut a, t0, b"last");
    assert_eq!(
        ClearHeader::parse(&last).unwrap().counter,
        COUNTER_LIMIT - 1
    );
    let next = sealed(&mut a, t0, b"next");
    let h = ClearHeader::parse(&next).unwrap();
    assert_eq!((h.epoch, h.counter), (1, 0));
    assert_eq!(open(&mut b, t0, &last).unwrap(), b"last");
    assert_eq!(open(&mut b, t0, &next).unwrap(), b"next");
    // A datagram claiming the limit is refused before decryption.
    let mut forged = next.clone();
    forged[8..16].copy_from_slice(&COUNTER_LIMIT.to_le_bytes());
    assert_eq!(open(&mut b, t0, &forged), Err(TunnelDrop::CounterLimit));
}

#[test]
fn exhausted_epochs_stop_sending() {
    let t0 = Instant::now();
    let (mut a, _) = pair(SessionConfig::default(), t0);
    a.send.key.epoch = u64::MAX;
    a.send.counter = COUNTER_LIMIT;
    let mut d = [0u8; 40];
    assert_eq!(
        a.seal(t0, DatagramKind::Frames, &mut d),
        Err(SealError::SessionExhausted)
    );
}

#[test]
fn epoch_byte_wraps_around() {
    let t0 = Instant::now();
    let config = SessionConfig {
        rekey_after_messages: 1,
        ..SessionConfig::default()
    };
    let (mut a, mut b) = pair(config, t0);
    for i in 0..300u32 {
        let d = sealed(&mut a, t0, &i.to_be_bytes());
        assert_eq!(open(&mut b, t0, &d).unwrap(), i.to_be_bytes(), "epoch {i}");
    }
    assert_eq!(b.recv_epoch(), 299);
}

#[test]
fn keys_from_handshake_differ_per_direction_and_label() {
    let split = ([1u8; 32], [2u8; 32]);
    let i = TunnelKeys::from_handshake(&split, &[9; 32], true, true).unwrap();
    let r = TunnelKeys::from_handshake(&split, &[9; 32], false, true).unwrap();
    assert_eq!(i.send, r.recv);
    assert_eq!(i.recv, r.send);
    assert_ne!(i.send, i.recv);
    // Never the control channel's keys (the split itself).
    for k in [i.send, i.recv] {
        assert_ne!(k, split.0);
        assert_ne!(k, split.1);
    }
    // A different transcript gives different keys.
    let other = TunnelKeys::from_handshake(&split, &[8; 32], true, true).unwrap();
    assert_ne!(other.send, i.send);
    assert!(
        !format!("{i:?}").contains("send"),
        "Debug must not print keys"
    );
}
