//! Ethernet addresses.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A 48-bit Ethernet address.
///
/// The switch keys its tables on these, so it is `Copy`, hashes as six bytes and
/// orders by bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// ff:ff:ff:ff:ff:ff: every station on the segment.
    pub const BROADCAST: Self = Self([0xff; 6]);
    /// 00:00:00:00:00:00: never a valid source; weft's data-path heartbeats use it so
    /// no switch (ours or the kernel's) ever learns or forwards them.
    pub const ZERO: Self = Self([0; 6]);

    /// The group bit (I/G) is set: broadcast or multicast.
    #[inline]
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// ff:ff:ff:ff:ff:ff.
    #[inline]
    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    /// All zero.
    #[inline]
    pub fn is_zero(self) -> bool {
        self == Self::ZERO
    }

    /// A unicast address a station may use as its source: group bit clear, not zero.
    #[inline]
    pub fn is_valid_source(self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }

    /// 01:00:5e:xx:xx:xx, the range IPv4 multicast maps onto.
    #[inline]
    pub fn is_ipv4_multicast(self) -> bool {
        self.0[0] == 0x01 && self.0[1] == 0x00 && self.0[2] == 0x5e && self.0[3] & 0x80 == 0
    }

    /// 33:33:xx:xx:xx:xx, the range IPv6 multicast maps onto.
    #[inline]
    pub fn is_ipv6_multicast(self) -> bool {
        self.0[0] == 0x33 && self.0[1] == 0x33
    }

    /// The Ethernet address an IPv4 multicast group is sent to (RFC 1112: the low 23 bits).
    pub fn from_ipv4_multicast(group: Ipv4Addr) -> Self {
        let o = group.octets();
        Self([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }

    /// A locally administered unicast address from caller-supplied random bytes.
    ///
    /// Randomness is a parameter so that tests and simulations stay deterministic.
    pub fn local_from_bytes(mut bytes: [u8; 6]) -> Self {
        bytes[0] = (bytes[0] & 0xfe) | 0x02;
        Self(bytes)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not six colon- or dash-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes like 02:42:ac:11:00:02")]
pub struct MacParseError(pub String);

impl FromStr for Mac {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(out))
    }
}

impl From<[u8; 6]> for Mac {
    fn from(b: [u8; 6]) -> Self {
        Self(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let m = Mac([0x02, 0x42, 0xac, 0x11, 0x00, 0x0f]);
        assert_eq!(m.to_string(), "02:42:ac:11:00:0f");
        assert_eq!("02:42:ac:11:00:0f".parse::<Mac>(), Ok(m));
        assert_eq!("02-42-AC-11-00-0F".parse::<Mac>(), Ok(m));
        assert!("02:42:ac:11:00".parse::<Mac>().is_err());
        assert!("02:42:ac:11:00:0f:00".parse::<Mac>().is_err());
        assert!("02:42:ac:11:00:zz".parse::<Mac>().is_err());
        assert!("02:42:ac:11:00:".parse::<Mac>().is_err());
    }

    #[test]
    fn classes() {
        assert!(Mac::BROADCAST.is_multicast() && Mac::BROADCAST.is_broadcast());
        assert!(!Mac::ZERO.is_valid_source());
        let m = Mac::from_ipv4_multicast(Ipv4Addr::new(239, 129, 2, 3));
        assert_eq!(m.to_string(), "01:00:5e:01:02:03");
        assert!(m.is_ipv4_multicast() && !m.is_valid_source());
        let l = Mac::local_from_bytes([0xff; 6]);
        assert!(l.is_valid_source());
        assert_eq!(l.0[0] & 0x03, 0x02);
    }
}
