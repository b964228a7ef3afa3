//! The anti-replay window of one receiving key (RFC 6479's bitmap ring).
//!
//! Remembers which of the last [`WINDOW`] counters below the highest one seen were
//! accepted. A counter above everything seen is new; one inside the window is new unless
//! its bit is set; one further back is refused as too old (it may or may not be a replay).
//! The caller checks before decrypting and records only after the tag verified, so a
//! forged datagram can never move the window. 4032 counters of slack: UDP GRO batches,
//! GSO sends and several receive threads reorder by far less.

use super::drop_reason::TunnelDrop;

/// Bitmap words (64 counters each).
const WORDS: usize = 64;

/// Bits in the bitmap ring.
const BITS: u64 = (WORDS as u64) * 64;

/// How far behind the highest accepted counter a counter may be and still be judged.
/// One word of the ring is kept as slack so advancing never forgets a judged counter.
pub const WINDOW: u64 = BITS - 64;

/// Which recent counters were accepted (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// One past the highest counter accepted; 0 before any.
    next: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window: every counter is new.
    pub const fn new() -> Self {
        Self {
            next: 0,
            bitmap: [0; WORDS],
        }
    }

    /// Whether `counter` may be accepted (without recording it).
    pub fn check(&self, counter: u64) -> Result<(), TunnelDrop> {
        if counter >= self.next {
            return Ok(());
        }
        if self.next - counter > WINDOW {
            return Err(TunnelDrop::TooOld);
        }
        let (word, bit) = Self::position(counter);
        if self.bitmap[word] & bit != 0 {
            return Err(TunnelDrop::Replayed);
        }
        Ok(())
    }

    /// Records `counter` as accepted; call only after [`ReplayWindow::check`] passed and
    /// the datagram authenticated. Returns the same verdict as `check`.
    pub fn accept(&mut self, counter: u64) -> Result<(), TunnelDrop> {
        self.check(counter)?;
        if counter >= self.next {
            // Clear the words the window slides over (at most the whole ring).
            let first_new_word = if self.next == 0 {
                0
            } else {
                (self.next - 1) / 64 + 1
            };
            let last_word = counter / 64;
            let mut w = first_new_word;
            let mut cleared = 0;
            while w <= last_word && cleared < WORDS {
                self.bitmap[(w % WORDS as u64) as usize] = 0;
                w += 1;
                cleared += 1;
            }
            self.next = counter.saturating_add(1);
        }
        let (word, bit) = Self::position(counter);
        self.bitmap[word] |= bit;
        Ok(())
    }

    /// One past the highest accepted counter (0 before any).
    pub fn next_expected(&self) -> u64 {
        self.next
    }

    fn position(counter: u64) -> (usize, u64) {
        (
            ((counter / 64) % WORDS as u64) as usize,
            1u64 << (counter % 64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn in_order_duplicates_and_reordering() {
        let mut w = ReplayWindow::new();
        for c in 0..100 {
            assert_eq!(w.accept(c), Ok(()));
            assert_eq!(w.accept(c), Err(TunnelDrop::Replayed));
        }
        assert_eq!(w.accept(200), Ok(()));
        for c in (100..200).rev() {
            assert_eq!(w.accept(c), Ok(()), "reordered {c}");
        }
        assert_eq!(w.check(150), Err(TunnelDrop::Replayed));
    }

    #[test]
    fn window_edge() {
        let mut w = ReplayWindow::new();
        let top = 10_000;
        w.accept(top).unwrap();
        let edge = top + 1 - WINDOW;
        assert_eq!(w.check(edge), Ok(()));
        assert_eq!(w.check(edge - 1), Err(TunnelDrop::TooOld));
        const { assert!(WINDOW >= 2048) };
        // A jump of more than the ring clears everything old.
        w.accept(edge).unwrap();
        w.accept(top + 10 * BITS).unwrap();
        assert_eq!(w.check(top + 10 * BITS - 1), Ok(()));
        assert_eq!(w.check(top), Err(TunnelDrop::TooOld));
    }

    #[test]
    fn counter_zero_and_max() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(0), Ok(()));
        assert_eq!(w.accept(0), Err(TunnelDrop::Replayed));
        w.accept(u64::MAX).unwrap();
        assert_eq!(w.next_expected(), u64::MAX);
        assert_eq!(w.check(u64::MAX - 1), Ok(()));
        assert_eq!(w.check(0), Err(TunnelDrop::TooOld));
    }

    proptest! {
        /// Against a model that remembers everything: the window accepts each counter at
        /// most once, and accepts every new counter within WINDOW of the highest.
        #[test]
        fn matches_a_perfect_model(ops in proptest::collection::vec(0u64..20_000, 1..600)) {
            let mut w = ReplayWindow::new();
            let mut seen = HashSet::new();
            let mut highest: Option<u64> = None;
            for c in ops {
                let verdict = w.accept(c);
                let fresh = !seen.contains(&c);
                let in_window = highest.is_none_or(|h| c > h || h - c < WINDOW);
                if verdict.is_ok() {
                    prop_assert!(fresh, "accepted a replay of {}", c);
                    seen.insert(c);
                    highest = Some(highest.map_or(c, |h| h.max(c)));
                } else {
                    prop_assert!(!(fresh && in_window), "refused fresh {} ({:?})", c, verdict);
                }
            }
        }
    }
}
