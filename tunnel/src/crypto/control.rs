//! The control channel's record layer: after the handshake, every control byte is
//! encrypted.
//!
//! The TCP stream becomes a sequence of records `u16 BE length ‖ ciphertext`, each
//! ciphertext one Noise transport message (ChaCha20-Poly1305 with Noise's implicit
//! counter nonce, at most 65535 bytes including its 16-byte tag). Records are a transport
//! for the mesh's own framing: [`ControlCipher::seal`] cuts any plaintext into as many
//! records as it needs, and [`RecordDecoder`] turns stream bytes back into plaintext bytes
//! in order, whatever the read boundaries.
//!
//! Why `snow`'s stateful `TransportState` rather than `ring` with the split keys: it is
//! exactly Noise's transport (key, nonce sequence, rekey rules) with no nonce bookkeeping
//! of our own, the stream is in order (TCP), and since snow 0.9.5 a failed decryption no
//! longer advances the nonce (GHSA-7g9j-g5jg-3vv3). Control traffic is small, so ring's
//! in-place API buys nothing here.
//!
//! Any failure (a record that does not authenticate, an impossible length) is fatal: the
//! stream cannot resynchronise, so the caller drops the connection. Buffering is bounded
//! by one partial record (at most 65537 bytes); plaintext output never exceeds the input.

use std::fmt;

/// Largest ciphertext in one record (Noise's message limit).
pub const MAX_RECORD_LEN: usize = 65535;

/// AEAD tag length inside every record.
pub const TAG_LEN: usize = 16;

/// Most plaintext bytes one record carries.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD_LEN - TAG_LEN;

/// Why the control channel failed; every variant ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A record shorter than its tag: the stream is corrupt.
    #[error("control record too short to be encrypted; the stream is corrupt")]
    RecordTooShort,
    /// A record that did not authenticate: altered in transit, or out of sync.
    #[error("control record failed authentication (altered in transit); closing the connection")]
    BadRecord,
    /// Sealing failed (the 2^64 nonce space is used up: reconnect).
    #[error("could not encrypt a control record; reconnect to run a new handshake")]
    SealFailed,
}

impl ControlError {
    /// A stable counter name for this failure.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RecordTooShort => "control_record_too_short",
            Self::BadRecord => "control_bad_record",
            Self::SealFailed => "control_seal_failed",
        }
    }
}

/// Both directions of the control channel's encryption for one connection.
pub struct ControlCipher {
    transport: snow::TransportState,
}

impl fmt::Debug for ControlCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlCipher")
            .field("sent", &self.transport.sending_nonce())
            .field("received", &self.transport.receiving_nonce())
            .finish()
    }
}

impl ControlCipher {
    pub(crate) fn new(transport: snow::TransportState) -> Self {
        Self { transport }
    }

    /// Appends `plaintext` to `out` as records (none for an empty plaintext).
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), ControlError> {
        for chunk in plaintext.chunks(MAX_RECORD_PLAINTEXT) {
            let start = out.len();
            let len = chunk.len() + TAG_LEN;
            out.resize(start + 2 + len, 0);
            let Some(record) = out.get_mut(start..) else {
                return Err(ControlError::SealFailed);
            };
            let (prefix, body) = record.split_at_mut(2);
            prefix.copy_from_slice(&(len as u16).to_be_bytes());
            match self.transport.write_message(chunk, body) {
                Ok(n) if n == len => {}
                _ => {
                    out.truncate(start);
                    return Err(ControlError::SealFailed);
                }
            }
        }
        Ok(())
    }

    /// Decrypts one record's ciphertext, appending the plaintext to `out`.
    fn open_record(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), ControlError> {
        let plain_len = ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(ControlError::RecordTooShort)?;
        let start = out.len();
        out.resize(start + plain_len, 0);
        let dst = out.get_mut(start..).unwrap_or_default();
        match self.transport.read_message(ciphertext, dst) {
            Ok(n) if n == plain_len => Ok(()),
            _ => {
                out.truncate(start);
                Err(ControlError::BadRecord)
            }
        }
    }
}

/// Reassembles records from stream bytes (any read boundaries) and decrypts them in
/// order. Holds at most one partial record.
#[derive(Debug, Default)]
pub struct RecordDecoder {
    partial: Vec<u8>,
    failed: bool,
}

impl RecordDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of an incomplete record held back.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Consumes all of `input`, appending the plaintext of every record it completes to
    /// `out`. After an error the decoder stays failed.
    pub fn decode(
        &mut self,
        cipher: &mut ControlCipher,
        mut input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ControlError> {
        if self.failed {
            return Err(ControlError::BadRecord);
        }
        let result = self.decode_inner(cipher, &mut input, out);
        if result.is_err() {
            self.failed = true;
            self.partial = Vec::new();
        }
        result
    }

    fn decode_inner(
        &mut self,
        cipher: &mut ControlCipher,
        input: &mut &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ControlError> {
        // Finish a record begun by an earlier read.
        if !self.partial.is_empty() {
            if self.partial.len() < 2 {
                let take = (2 - self.partial.len()).min(input.len());
                let (head, rest) = input.split_at(take);
                self.partial.extend_from_slice(head);
                *input = rest;
                if self.partial.len() < 2 {
                    return Ok(());
                }
            }
            let need = record_len(&self.partial)?;
            let take = (need - self.partial.len()).min(input.len());
            let (head, rest) = input.split_at(take);
            self.partial.extend_from_slice(head);
            *input = rest;
            if self.partial.len() < need {
                return Ok(());
            }
            let record = std::mem::take(&mut self.partial);
            let result = cipher.open_record(record.get(2..).unwrap_or_default(), out);
            // Keep the allocation for the next partial record.
            self.partial = record;
            self.partial.clear();
            result?;
        }
        // Whole records straight from the input, then keep any tail.
        while !input.is_empty() {
            if input.len() < 2 {
                self.partial.extend_from_slice(input);
                return Ok(());
            }
            let need = record_len(input)?;
            let Some((record, rest)) = input.split_at_checked(need) else {
                self.partial.extend_from_slice(input);
                return Ok(());
            };
            cipher.open_record(record.get(2..).unwrap_or_default(), out)?;
            *input = rest;
        }
        Ok(())
    }
}

/// The total length of the record whose 2-byte prefix starts `bytes` (at least 2 bytes).
fn record_len(bytes: &[u8]) -> Result<usize, ControlError> {
    let Some(&[hi, lo]) = bytes.first_chunk::<2>() else {
        return Err(ControlError::RecordTooShort);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len < TAG_LEN {
        return Err(ControlError::RecordTooShort);
    }
    Ok(2 + len)
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
