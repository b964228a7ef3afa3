//! A pair of links driven by hand (their sockets idle): the stages must work whatever the
//! read boundaries, and every failure must be an error value.

use super::*;

const PASSWORD: [u8; 32] = [7; 32];

fn credentials(psk: Option<[u8; 32]>) -> Credentials {
    Credentials {
        psk,
        static_key: StaticKeypair::generate().unwrap(),
        tunnel_port: 6784,
    }
}

/// An initiator and a responder link over a real (unused) loopback connection.
fn pair() -> (ControlLink, ControlLink) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    let (server, remote) = listener.accept().unwrap();
    let mut initiator =
        ControlLink::connecting(TcpStream::from_std(client), addr, 11, Instant::now());
    initiator.start();
    let mut responder = ControlLink::accepted(TcpStream::from_std(server), remote, 22);
    responder.start();
    (initiator, responder)
}

/// Moves everything `from` queued into `to`, `chunk` bytes per `ingest`; true if any
/// bytes moved.
fn shuttle(
    from: &mut ControlLink,
    to: &mut ControlLink,
    creds: &Credentials,
    plain: &mut Vec<u8>,
    chunk: usize,
) -> Result<bool, LinkError> {
    let bytes = from.out.pending().to_vec();
    from.out.advance(bytes.len());
    for piece in bytes.chunks(chunk) {
        to.ingest(piece, creds, plain)?;
    }
    Ok(!bytes.is_empty())
}

/// Runs both links until neither has anything to send; returns what each decrypted.
fn run(
    a: &mut ControlLink,
    b: &mut ControlLink,
    (ca, cb): (&Credentials, &Credentials),
    chunk: usize,
) -> (Result<Vec<u8>, LinkError>, Result<Vec<u8>, LinkError>) {
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let ab = match shuttle(a, b, cb, &mut pb, chunk) {
            Ok(moved) => moved,
            Err(e) => {
                // b failed: whatever it queued (a REFUSE) still reaches a.
                let ra = shuttle(b, a, ca, &mut pa, chunk).map(|_| pa);
                return (ra, Err(e));
            }
        };
        let ba = match shuttle(b, a, ca, &mut pa, chunk) {
            Ok(moved) => moved,
            Err(e) => {
                let rb = shuttle(a, b, cb, &mut pb, chunk).map(|_| pb);
                return (Err(e), rb);
            }
        };
        if !ab && !ba {
            break;
        }
    }
    (Ok(pa), Ok(pb))
}

#[test]
fn any_read_boundaries_complete_the_handshake_and_carry_plaintext() {
    for psk in [None, Some(PASSWORD)] {
        for chunk in [1, 3, 7, 64, 100_000] {
            let (ca, cb) = (credentials(psk), credentials(psk));
            let (mut a, mut b) = pair();
            // Sent before the handshake finished: held back, then sealed.
            a.send_plain(b"hello from the initiator").unwrap();
            b.send_plain(b"hello from the responder").unwrap();
            assert_eq!(a.encryption(), ConnectionEncryption::Pending);
            let (pa, pb) = run(&mut a, &mut b, (&ca, &cb), chunk);
            assert_eq!(pa.unwrap(), b"hello from the responder", "chunk {chunk}");
            assert_eq!(pb.unwrap(), b"hello from the initiator", "chunk {chunk}");
            assert_eq!(a.state(), ConnectionState::Established);
            assert_eq!(b.state(), ConnectionState::Established);
            let (sa, sb) = (a.secured.as_ref().unwrap(), b.secured.as_ref().unwrap());
            assert_eq!((sa.local_index, sa.remote_index), (11, 22));
            assert_eq!((sb.local_index, sb.remote_index), (22, 11));
            assert_eq!(sa.authenticated, psk.is_some());
            assert_eq!(sa.remote_tunnel_port, 6784);
            // Later plaintext is sealed at once.
            let big = vec![0x5a; 200_000];
            a.send_plain(&big).unwrap();
            let mut got = Vec::new();
            shuttle(&mut a, &mut b, &cb, &mut got, chunk.max(1000)).unwrap();
            assert_eq!(got, big);
        }
    }
}

#[test]
fn different_passwords_fail_on_both_ends_with_the_precise_error() {
    let (ca, cb) = (credentials(Some(PASSWORD)), credentials(Some([8; 32])));
    let (mut a, mut b) = pair();
    let (ra, rb) = run(&mut a, &mut b, (&ca, &cb), 5);
    // The responder notices on message 3; its REFUSE tells the initiator.
    assert!(matches!(
        rb,
        Err(LinkError::Handshake(HandshakeError::AuthenticationFailed))
    ));
    assert!(
        matches!(
            ra,
            Err(LinkError::Handshake(HandshakeError::AuthenticationFailed))
        ),
        "{ra:?}"
    );
    assert!(a.secured.is_none() && b.secured.is_none());
}

#[test]
fn garbage_is_an_error_in_every_stage() {
    let creds = credentials(None);
    let mut plain = Vec::new();
    // Preamble stage: wrong magic.
    let (_, mut b) = pair();
    let err = b.ingest(b"GET / HTTP/1.1\r\n", &creds, &mut plain);
    assert!(matches!(err, Err(LinkError::Preamble(_))), "{err:?}");
    // Handshake stage: a valid preamble, then an impossible frame length.
    let (_, mut b) = pair();
    let mut bytes = SUPPORTED_VERSIONS.to_preamble().to_vec();
    bytes.extend_from_slice(&[0xff, 0xff, 1, 2, 3]);
    let err = b.ingest(&bytes, &creds, &mut plain);
    assert!(matches!(err, Err(LinkError::Handshake(_))), "{err:?}");
    // The responder queued a REFUSE frame after its own preamble and MODE.
    assert!(b.out.len() > PREAMBLE_LEN);
    // Established stage: a record that does not authenticate.
    let (ca, cb) = (credentials(None), credentials(None));
    let (mut a, mut b) = pair();
    let (ra, rb) = run(&mut a, &mut b, (&ca, &cb), 1000);
    assert!(ra.is_ok() && rb.is_ok());
    let err = b.ingest(
        &[
            0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
        ],
        &cb,
        &mut plain,
    );
    assert!(matches!(err, Err(LinkError::Record(_))), "{err:?}");
    assert!(plain.is_empty());
}

#[test]
fn a_peer_that_stops_reading_is_a_backlog_error() {
    let (mut a, _b) = pair();
    let chunk = vec![0u8; 1024 * 1024];
    let mut result = Ok(());
    for _ in 0..=(MAX_OUTGOING / chunk.len()) {
        result = a.send_plain(&chunk);
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(LinkError::Backlog)), "{result:?}");
}
