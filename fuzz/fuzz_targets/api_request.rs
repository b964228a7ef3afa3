//! Arbitrary bytes as an API connection's input, delivered in arbitrary pieces: the
//! request parser must never panic, never accept more than its limits, and say the same
//! thing whether the bytes arrive at once or piece by piece; a whole request then goes
//! through the router's routing and JSON decoding, which must not panic either.
//!
//! Input: `[split][bytes...]`: the first byte picks the piece size (1..=256) the rest is
//! fed in, as a socket would deliver it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::api::http::{self, Limits, Parsed};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let limits = Limits::API;
    let whole = http::parse(input, &limits);
    if let Ok(Parsed::Complete(r)) = &whole {
        assert!(r.body.len() <= limits.max_body);
        assert!(r.path.starts_with('/'));
        assert!(!r.method.is_empty());
        let _ = weft::api::server::parse(&r.method, &r.path, &r.body);
    }
    // Piece by piece, as the socket thread sees it: partial until the answer is decided,
    // then the same answer as for the whole input.
    let step = usize::from(split).max(1);
    let mut seen = 0;
    let mut piecewise = None;
    while seen < input.len() {
        seen = (seen + step).min(input.len());
        match http::parse(&input[..seen], &limits) {
            Ok(Parsed::Partial { .. }) => {}
            decided => {
                piecewise = Some(decided);
                break;
            }
        }
    }
    if let Some(decided) = piecewise {
        match (&decided, &whole) {
            (Ok(Parsed::Complete(a)), Ok(Parsed::Complete(b))) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.status(), b.status()),
            (a, b) => panic!("piecewise {a:?}, whole {b:?}"),
        }
    } else {
        assert!(matches!(whole, Ok(Parsed::Partial { .. })), "{whole:?}");
    }
});
