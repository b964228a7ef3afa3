use super::*;
use crate::crypto::datagram::DatagramKind;
use crate::crypto::session::{SessionConfig, TunnelSession};
use std::time::Instant;

const PSK: [u8; 32] = [0x42; 32];
const OTHER_PSK: [u8; 32] = [0x43; 32];

fn payload(index: u32, port: u16) -> HandshakePayload {
    HandshakePayload {
        session_index: index,
        tunnel_port: port,
        features: 0,
    }
}

struct Side {
    hs: Option<Handshake>,
    key: StaticKeypair,
    inbox: Vec<u8>,
    got_payload: Vec<HandshakePayload>,
    error: Option<HandshakeError>,
}

impl Side {
    fn new(role: Role, psk: Option<[u8; 32]>, index: u32) -> Self {
        let key = StaticKeypair::generate().unwrap();
        let hs = Handshake::new(role, psk, &key, payload(index, 6784)).unwrap();
        Self {
            hs: Some(hs),
            key,
            inbox: Vec::new(),
            got_payload: Vec::new(),
            error: None,
        }
    }

    fn done(&self) -> bool {
        self.error.is_some() || self.hs.as_ref().is_some_and(Handshake::is_finished)
    }
}

/// Runs both sides over an in-memory stream until each finished or failed (a failed side
/// flushes its REFUSE and "closes").
fn run(sides: &mut [Side; 2]) {
    for _round in 0..10 {
        for i in 0..2 {
            let mut out = Vec::new();
            if sides[i].error.is_none() {
                sides[i]
                    .hs
                    .as_mut()
                    .unwrap()
                    .write_message(&mut out)
                    .unwrap();
            }
            sides[1 - i].inbox.extend_from_slice(&out);
        }
        for i in 0..2 {
            while sides[i].error.is_none() {
                let Some(n) = frame_len(&sides[i].inbox).unwrap() else {
                    break;
                };
                if sides[i].inbox.len() < n {
                    break;
                }
                let frame: Vec<u8> = sides[i].inbox.drain(..n).collect();
                let hs = sides[i].hs.as_mut().unwrap();
                match hs.read_message(&frame) {
                    Ok(Some(p)) => sides[i].got_payload.push(p),
                    Ok(None) => {}
                    Err(e) => {
                        sides[i].error = Some(e);
                        // The failed side closes: whatever else arrived is never read.
                        sides[i].inbox.clear();
                        let mut refusal = Vec::new();
                        hs.write_message(&mut refusal).unwrap();
                        sides[1 - i].inbox.extend_from_slice(&refusal);
                    }
                }
            }
        }
        if sides.iter().all(Side::done) && sides.iter().all(|s| s.inbox.is_empty()) {
            return;
        }
    }
    panic!("handshake did not converge");
}

fn pair(ipsk: Option<[u8; 32]>, rpsk: Option<[u8; 32]>) -> [Side; 2] {
    [
        Side::new(Role::Initiator, ipsk, 0xaaaa_0001),
        Side::new(Role::Responder, rpsk, 0xbbbb_0002),
    ]
}

fn finish(side: &mut Side) -> HandshakeOutcome {
    side.hs.take().unwrap().finish().unwrap()
}

/// Checks two outcomes belong together: static keys, payloads, control and tunnel keys.
fn check_outcomes(sides: &mut [Side; 2], authenticated: bool) {
    assert_eq!(sides[0].error, None);
    assert_eq!(sides[1].error, None);
    assert_eq!(sides[0].got_payload, [payload(0xbbbb_0002, 6784)]);
    assert_eq!(sides[1].got_payload, [payload(0xaaaa_0001, 6784)]);
    let (ipub, rpub) = (*sides[0].key.public(), *sides[1].key.public());
    let mut i = finish(&mut sides[0]);
    let mut r = finish(&mut sides[1]);
    assert_eq!(i.remote_static, rpub);
    assert_eq!(r.remote_static, ipub);
    assert_eq!(i.authenticated, authenticated);
    assert_eq!(r.tunnel_keys.authenticated(), authenticated);

    // The control channel works both ways.
    let mut wire = Vec::new();
    i.control.seal(b"hello responder", &mut wire).unwrap();
    let mut plain = Vec::new();
    RecordDecoderForTest::decode(&mut r.control, &wire, &mut plain);
    assert_eq!(plain, b"hello responder");
    wire.clear();
    r.control.seal(b"hello initiator", &mut wire).unwrap();
    plain.clear();
    RecordDecoderForTest::decode(&mut i.control, &wire, &mut plain);
    assert_eq!(plain, b"hello initiator");

    // The tunnel keys match across, with each side's announced index.
    let now = Instant::now();
    let cfg = SessionConfig::default();
    let mut ti = TunnelSession::new(
        &i.tunnel_keys,
        0xaaaa_0001,
        i.remote_payload.session_index,
        cfg,
        now,
    )
    .unwrap();
    let mut tr = TunnelSession::new(
        &r.tunnel_keys,
        0xbbbb_0002,
        r.remote_payload.session_index,
        cfg,
        now,
    )
    .unwrap();
    let mut d = vec![0u8; 16 + 5 + 16];
    d[16..21].copy_from_slice(b"frame");
    ti.seal(now, DatagramKind::Frames, &mut d).unwrap();
    assert_eq!(tr.open(now, &mut d).unwrap().plaintext, b"frame");
    let mut d = vec![0u8; 16 + 4 + 16];
    tr.seal(now, DatagramKind::Frames, &mut d).unwrap();
    assert!(ti.open(now, &mut d).is_ok());
    // Tunnel keys are not the control keys: a control record does not open as a datagram.
    assert_ne!(format!("{:?}", i.tunnel_keys), "");
}

struct RecordDecoderForTest;
impl RecordDecoderForTest {
    fn decode(cipher: &mut ControlCipher, wire: &[u8], out: &mut Vec<u8>) {
        crate::crypto::control::RecordDecoder::new()
            .decode(cipher, wire, out)
            .unwrap();
    }
}

#[test]
fn succeeds_with_password() {
    let mut sides = pair(Some(PSK), Some(PSK));
    run(&mut sides);
    check_outcomes(&mut sides, true);
}

#[test]
fn succeeds_without_password() {
    let mut sides = pair(None, None);
    run(&mut sides);
    check_outcomes(&mut sides, false);
}

#[test]
fn wrong_password_is_refused_on_both_sides() {
    let mut sides = pair(Some(PSK), Some(OTHER_PSK));
    run(&mut sides);
    assert_eq!(sides[0].error, Some(HandshakeError::AuthenticationFailed));
    assert_eq!(sides[1].error, Some(HandshakeError::AuthenticationFailed));
    assert_eq!(
        HandshakeError::AuthenticationFailed.to_string(),
        "authentication failed: the peer's password differs"
    );
    // Neither side learned anything it could use.
    for s in &mut sides {
        assert!(!s.hs.as_ref().unwrap().is_finished());
        assert_eq!(
            s.hs.take().unwrap().finish().err(),
            Some(HandshakeError::NotFinished)
        );
    }
}

#[test]
fn password_mismatch_is_named_on_both_sides() {
    for (ipsk, rpsk) in [(Some(PSK), None), (None, Some(PSK))] {
        let mut sides = pair(ipsk, rpsk);
        run(&mut sides);
        for s in &sides {
            let expected = if s.hs.as_ref().unwrap().has_password() {
                HandshakeError::PeerHasNoPassword
            } else {
                HandshakeError::PeerRequiresPassword
            };
            assert_eq!(s.error, Some(expected));
        }
    }
    assert!(
        HandshakeError::PeerRequiresPassword
            .to_string()
            .contains("--password-file")
    );
    assert!(
        HandshakeError::PeerHasNoPassword
            .to_string()
            .contains("has a password but the peer has none")
    );
}

/// Records every frame each side sends in a successful run.
fn transcript(psk: Option<[u8; 32]>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut i = Handshake::new(
        Role::Initiator,
        psk,
        &StaticKeypair::generate().unwrap(),
        payload(1, 2),
    )
    .unwrap();
    let mut r = Handshake::new(
        Role::Responder,
        psk,
        &StaticKeypair::generate().unwrap(),
        payload(3, 4),
    )
    .unwrap();
    let (mut from_i, mut from_r) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let mut out = Vec::new();
        i.write_message(&mut out).unwrap();
        for f in split(&out) {
            r.read_message(&f).unwrap();
            from_i.push(f);
        }
        out.clear();
        r.write_message(&mut out).unwrap();
        for f in split(&out) {
            i.read_message(&f).unwrap();
            from_r.push(f);
        }
    }
    assert!(i.is_finished() && r.is_finished());
    (from_i, from_r)
}

fn split(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some(n) = frame_len(bytes).unwrap() {
        frames.push(bytes[..n].to_vec());
        bytes = &bytes[n..];
    }
    assert!(bytes.is_empty());
    frames
}

#[test]
fn message_shapes() {
    let (from_i, from_r) = transcript(Some(PSK));
    let kinds = |fs: &[Vec<u8>]| fs.iter().map(|f| f[2]).collect::<Vec<_>>();
    assert_eq!(kinds(&from_i), [FRAME_MODE, FRAME_NOISE, FRAME_NOISE]);
    assert_eq!(kinds(&from_r), [FRAME_MODE, FRAME_NOISE, FRAME_CONFIRM]);
    assert_eq!(from_i[0], [0, 2, FRAME_MODE, MODE_PASSWORD]);
    // Message 1 is the clear ephemeral key plus, in psk mode, an empty payload's tag.
    assert_eq!(from_i[1].len(), 3 + 32 + 16);
    assert!(
        from_i
            .iter()
            .chain(&from_r)
            .all(|f| f.len() <= 2 + MAX_FRAME_BODY)
    );
}

/// One static key for the many short-lived handshakes below (X25519 is slow in debug
/// builds).
fn shared_key() -> &'static StaticKeypair {
    static KEY: std::sync::OnceLock<StaticKeypair> = std::sync::OnceLock::new();
    KEY.get_or_init(|| StaticKeypair::generate().unwrap())
}

/// A new handshake for `role`.
fn fresh(role: Role, psk: Option<[u8; 32]>) -> Handshake {
    Handshake::new(role, psk, shared_key(), payload(9, 9)).unwrap()
}

#[test]
fn garbage_frames_are_errors_not_panics() {
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for psk in [None, Some(PSK)] {
        let mode = [
            0,
            2,
            FRAME_MODE,
            if psk.is_some() {
                MODE_PASSWORD
            } else {
                MODE_OPEN
            },
        ];
        for role in [Role::Initiator, Role::Responder] {
            // Few rounds: each new handshake costs an X25519 operation (slow in debug);
            // the `handshake` fuzz target does the volume.
            for _ in 0..40 {
                let mut hs = fresh(role, psk);
                // Reach deeper states some of the time: past the peer's MODE, and for the
                // initiator past its own message 1 (so garbage meets Noise message 2).
                if next() % 2 == 0 {
                    hs.read_message(&mode).unwrap();
                    if role == Role::Initiator && next() % 2 == 0 {
                        hs.write_message(&mut Vec::new()).unwrap();
                    }
                }
                let len = (next() % 120) as usize;
                let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if frame.len() >= 3 && next() % 4 != 0 {
                    // A consistent prefix and a real kind, so the body itself is judged.
                    let body = (frame.len() - 2) as u16;
                    frame[..2].copy_from_slice(&body.to_be_bytes());
                    frame[2] = [FRAME_NOISE, FRAME_CONFIRM, FRAME_MODE][(next() % 3) as usize];
                }
                if hs.read_message(&frame).is_err() {
                    assert!(!hs.is_finished());
                    assert_eq!(hs.read_message(&mode), Err(HandshakeError::AlreadyFailed));
                }
            }
        }
    }
}

#[test]
fn every_truncation_of_every_message_is_an_error() {
    let (from_i, from_r) = transcript(Some(PSK));
    // Responder-bound frames: MODE, msg1, msg3; initiator-bound: MODE, msg2, CONFIRM.
    for (target_role, frames) in [(Role::Responder, &from_i), (Role::Initiator, &from_r)] {
        for (k, frame) in frames.iter().enumerate() {
            let cuts = (0..frame.len()).filter(|c| *c < 4 || c % 7 == 0 || *c + 2 > frame.len());
            for cut in cuts {
                let mut hs = fresh(target_role, Some(PSK));
                let mut out = Vec::new();
                hs.write_message(&mut out).unwrap();
                // Deliver the earlier frames of the real transcript first where they still
                // fit this fresh state (MODE always does).
                if k > 0 {
                    hs.read_message(&frames[0]).unwrap();
                }
                let mut t = frame[..cut].to_vec();
                if t.len() >= 2 {
                    let body = (t.len() - 2) as u16;
                    t[..2].copy_from_slice(&body.to_be_bytes());
                }
                assert!(hs.read_message(&t).is_err(), "frame {k} cut at {cut}");
            }
        }
    }
}

#[test]
fn reordered_and_duplicated_frames_are_refused() {
    let (from_i, _) = transcript(None);
    // Noise message 1 before the peer's MODE.
    let mut r = fresh(Role::Responder, None);
    assert_eq!(
        r.read_message(&from_i[1]),
        Err(HandshakeError::Unexpected(
            "Noise message before the peer's MODE"
        ))
    );
    let mut refusal = Vec::new();
    r.write_message(&mut refusal).unwrap();
    assert_eq!(refusal, [0, 2, FRAME_REFUSE, REFUSE_MALFORMED]);
    assert_eq!(
        r.read_message(&from_i[0]),
        Err(HandshakeError::AlreadyFailed)
    );
    refusal.clear();
    r.write_message(&mut refusal).unwrap();
    assert!(refusal.is_empty(), "one refusal only");

    // A duplicated MODE.
    let mut r = fresh(Role::Responder, None);
    r.read_message(&from_i[0]).unwrap();
    assert!(matches!(
        r.read_message(&from_i[0]),
        Err(HandshakeError::Unexpected(_))
    ));

    // Message 3 where message 1 is due.
    let mut r = fresh(Role::Responder, None);
    r.read_message(&from_i[0]).unwrap();
    assert!(r.read_message(&from_i[2]).is_err());

    // A CONFIRM sent to the responder.
    let mut r = fresh(Role::Responder, None);
    r.read_message(&from_i[0]).unwrap();
    assert!(matches!(
        r.read_message(&[
            0,
            17,
            FRAME_CONFIRM,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0
        ]),
        Err(HandshakeError::Unexpected(_))
    ));
}

#[test]
fn tampered_message_without_password_is_corruption_on_both_sides() {
    let (from_i, from_r) = transcript(None);
    // The initiator gets a msg2 with a flipped bit in the encrypted static key.
    let mut i = fresh(Role::Initiator, None);
    let mut out = Vec::new();
    i.write_message(&mut out).unwrap();
    i.read_message(&from_r[0]).unwrap();
    let mut m2 = from_r[1].clone();
    m2[3 + 40] ^= 1;
    assert_eq!(i.read_message(&m2), Err(HandshakeError::Corrupted));
    out.clear();
    i.write_message(&mut out).unwrap();
    // The responder, fed that refusal, reports the same.
    let mut r = fresh(Role::Responder, None);
    r.read_message(&from_i[0]).unwrap();
    assert_eq!(r.read_message(&out), Err(HandshakeError::Corrupted));
}

#[test]
fn unknown_refusal_codes_and_bad_frames() {
    let mut i = fresh(Role::Initiator, None);
    assert_eq!(
        i.read_message(&[0, 2, FRAME_REFUSE, 77]),
        Err(HandshakeError::PeerRefused(77))
    );
    let mut i = fresh(Role::Initiator, None);
    assert_eq!(
        i.read_message(&[0, 2, FRAME_REFUSE, REFUSE_MALFORMED]),
        Err(HandshakeError::PeerRejectedMalformed)
    );
    let mut i = fresh(Role::Initiator, None);
    assert!(matches!(
        i.read_message(&[0, 2, 99, 0]),
        Err(HandshakeError::Malformed(_))
    ));
    let mut i = fresh(Role::Initiator, None);
    assert!(matches!(
        i.read_message(&[0, 2, FRAME_MODE, 7]),
        Err(HandshakeError::Malformed(_))
    ));
    assert_eq!(frame_len(&[]), Ok(None));
    assert_eq!(frame_len(&[0]), Ok(None));
    assert_eq!(frame_len(&[0, 5, 1]), Ok(Some(7)));
    assert!(frame_len(&[0, 0]).is_err());
    assert!(frame_len(&[0xff, 0xff]).is_err());
}

#[test]
fn payload_encoding_is_extensible_and_bounded() {
    let p = HandshakePayload {
        session_index: 0xdead_beef,
        tunnel_port: 6784,
        features: 5,
    };
    let b = p.encode();
    assert_eq!(b, [1, 0xde, 0xad, 0xbe, 0xef, 0x1a, 0x80, 0, 0, 0, 5]);
    assert_eq!(HandshakePayload::decode(&b), Ok(p));
    let mut longer = b.to_vec();
    longer[0] = 2;
    longer.extend_from_slice(&[9; 20]);
    assert_eq!(HandshakePayload::decode(&longer), Ok(p));
    assert!(HandshakePayload::decode(&b[..10]).is_err());
    assert!(HandshakePayload::decode(&[0; 11]).is_err());
    assert!(HandshakePayload::decode(&[1; 257]).is_err());
}

#[test]
fn names_are_distinct() {
    use std::collections::HashSet;
    let all = [
        HandshakeError::PeerHasNoPassword,
        HandshakeError::PeerRequiresPassword,
        HandshakeError::AuthenticationFailed,
        HandshakeError::Corrupted,
        HandshakeError::PeerRejectedMalformed,
        HandshakeError::PeerRefused(1),
        HandshakeError::Malformed(""),
        HandshakeError::Unexpected(""),
        HandshakeError::AlreadyFailed,
        HandshakeError::NotFinished,
        HandshakeError::Setup(""),
    ];
    let names: HashSet<_> = all.iter().map(HandshakeError::name).collect();
    assert_eq!(names.len(), all.len());
}
