use super::*;
use crate::crypto::handshake::{Handshake, HandshakePayload, Role, frame_len};
use crate::crypto::identity::StaticKeypair;

/// Control ciphers of both ends of a real handshake (initiator, responder).
fn ciphers() -> (ControlCipher, ControlCipher) {
    let p = HandshakePayload {
        session_index: 1,
        tunnel_port: 6784,
        features: 0,
    };
    let mut i = Handshake::new(
        Role::Initiator,
        None,
        &StaticKeypair::generate().unwrap(),
        p,
    )
    .unwrap();
    let mut r = Handshake::new(
        Role::Responder,
        None,
        &StaticKeypair::generate().unwrap(),
        p,
    )
    .unwrap();
    for _ in 0..4 {
        deliver(&mut i, &mut r);
        deliver(&mut r, &mut i);
    }
    (i.finish().unwrap().control, r.finish().unwrap().control)
}

fn deliver(from: &mut Handshake, to: &mut Handshake) {
    let mut out = Vec::new();
    from.write_message(&mut out).unwrap();
    let mut rest = &out[..];
    while let Some(n) = frame_len(rest).unwrap() {
        to.read_message(&rest[..n]).unwrap();
        rest = &rest[n..];
    }
}

fn decode_all(cipher: &mut ControlCipher, wire: &[u8]) -> Result<Vec<u8>, ControlError> {
    let mut out = Vec::new();
    RecordDecoder::new().decode(cipher, wire, &mut out)?;
    Ok(out)
}

#[test]
fn records_round_trip_in_order_both_ways() {
    let (mut a, mut b) = ciphers();
    let mut wire = Vec::new();
    a.seal(b"first ", &mut wire).unwrap();
    a.seal(b"", &mut wire).unwrap();
    a.seal(b"second", &mut wire).unwrap();
    assert_eq!(
        wire.len(),
        2 * (2 + TAG_LEN) + 12,
        "empty plaintext makes no record"
    );
    assert_eq!(decode_all(&mut b, &wire).unwrap(), b"first second");
    let mut back = Vec::new();
    b.seal(b"reply", &mut back).unwrap();
    assert!(!back.windows(5).any(|w| w == b"reply"), "encrypted");
    assert_eq!(decode_all(&mut a, &back).unwrap(), b"reply");
}

#[test]
fn large_plaintext_is_chunked_and_reassembled_across_any_read_sizes() {
    let (mut a, mut b) = ciphers();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let mut wire = Vec::new();
    a.seal(&big, &mut wire).unwrap();
    let records = big.len().div_ceil(MAX_RECORD_PLAINTEXT);
    assert_eq!(records, 4);
    assert_eq!(wire.len(), big.len() + records * (2 + TAG_LEN));
    // Every record is within Noise's limit.
    let first_len = usize::from(u16::from_be_bytes([wire[0], wire[1]]));
    assert_eq!(first_len, MAX_RECORD_LEN);
    // Feed it in odd-sized pieces, including 1-byte ones splitting the length prefix.
    let mut decoder = RecordDecoder::new();
    let mut out = Vec::new();
    let mut rest = &wire[..];
    let sizes = [1, 1, 3, 65_536, 1, 7, 100_000, 2];
    let mut k = 0;
    while !rest.is_empty() {
        let n = sizes[k % sizes.len()].min(rest.len());
        decoder.decode(&mut b, &rest[..n], &mut out).unwrap();
        assert!(decoder.buffered() <= 2 + MAX_RECORD_LEN);
        rest = &rest[n..];
        k += 1;
    }
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(out, big);
}

#[test]
fn tampering_anywhere_is_detected_and_fatal() {
    let (mut a, mut b) = ciphers();
    let mut wire = Vec::new();
    a.seal(b"gossip update", &mut wire).unwrap();
    for i in 2..wire.len() {
        let mut t = wire.clone();
        t[i] ^= 0x20;
        let mut decoder = RecordDecoder::new();
        let mut out = Vec::new();
        assert_eq!(
            decoder.decode(&mut b, &t, &mut out),
            Err(ControlError::BadRecord),
            "byte {i}"
        );
        assert!(out.is_empty(), "no plaintext from a bad record");
        // The decoder stays failed, even for good bytes.
        assert_eq!(
            decoder.decode(&mut b, &wire, &mut out),
            Err(ControlError::BadRecord)
        );
    }
    // Failed records did not advance the receiver's nonce (snow >= 0.9.5): the genuine
    // record still opens with the same cipher.
    assert_eq!(decode_all(&mut b, &wire).unwrap(), b"gossip update");
}

#[test]
fn replayed_dropped_and_reordered_records_fail() {
    let (mut a, mut b) = ciphers();
    let (mut r1, mut r2) = (Vec::new(), Vec::new());
    a.seal(b"one", &mut r1).unwrap();
    a.seal(b"two", &mut r2).unwrap();
    // Out of order: the second record first.
    let mut decoder = RecordDecoder::new();
    let mut out = Vec::new();
    assert_eq!(
        decoder.decode(&mut b, &r2, &mut out),
        Err(ControlError::BadRecord)
    );
    // A replay of an accepted record.
    let (mut a, mut b) = ciphers();
    let mut r = Vec::new();
    a.seal(b"one", &mut r).unwrap();
    let mut decoder = RecordDecoder::new();
    decoder.decode(&mut b, &r, &mut out).unwrap();
    assert_eq!(
        decoder.decode(&mut b, &r, &mut out),
        Err(ControlError::BadRecord)
    );
}

#[test]
fn impossible_lengths_are_errors() {
    let (_, mut b) = ciphers();
    for bad in [&[0u8, 0][..], &[0, 15, 1, 2, 3]] {
        let mut out = Vec::new();
        assert_eq!(
            RecordDecoder::new().decode(&mut b, bad, &mut out),
            Err(ControlError::RecordTooShort)
        );
    }
    // A record announced but not complete is held, not an error.
    let mut decoder = RecordDecoder::new();
    let mut out = Vec::new();
    decoder
        .decode(&mut b, &[0xff, 0xff, 1, 2, 3], &mut out)
        .unwrap();
    assert_eq!(decoder.buffered(), 5);
}
