//! The overlay MTUs of a router, computed in one place for the control plane (which gives
//! containers and the host port their MTU) and the data plane (which cuts frames to it and
//! answers bigger ones with ICMP).

use crate::crypto::datagram;
use crate::vxlan::Underlay;

/// IP MTUs of the two direct paths between weft routers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathMtus {
    /// The MTU containers and the host port get, and the VXLAN path's: frames are cut to
    /// it before they leave the host.
    pub overlay: usize,
    /// The encrypted tunnel's, at most `overlay` (its datagrams carry more headers).
    pub tunnel: usize,
}

impl PathMtus {
    /// The smallest default overlay MTU however small the underlay: IPv4's minimum
    /// reassembly size, below which many stacks misbehave.
    pub const FLOOR: usize = 576;

    /// The MTUs over an underlay path of `underlay_mtu` bytes. With `encrypted_only` (a
    /// mesh password: untrusted peers get the tunnel only) containers get the tunnel's MTU
    /// so their frames fit it whole; otherwise VXLAN's. `configured` (`--mtu`) overrides
    /// the overlay MTU; the tunnel's never exceeds it.
    pub fn new(
        underlay: Underlay,
        underlay_mtu: usize,
        encrypted_only: bool,
        configured: Option<usize>,
    ) -> Self {
        let overhead = if encrypted_only {
            datagram::overhead(underlay)
        } else {
            underlay.overhead()
        };
        let overlay =
            configured.unwrap_or_else(|| underlay_mtu.saturating_sub(overhead).max(Self::FLOOR));
        let tunnel = datagram::overlay_mtu(underlay, underlay_mtu)
            .unwrap_or(overlay)
            .min(overlay);
        Self { overlay, tunnel }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_or_tunnel_overhead_by_password() {
        let plain = PathMtus::new(Underlay::V4, 1500, false, None);
        assert_eq!(
            plain,
            PathMtus {
                overlay: 1450,
                tunnel: 1407
            }
        );
        let encrypted = PathMtus::new(Underlay::V4, 1500, true, None);
        assert_eq!(
            encrypted,
            PathMtus {
                overlay: 1407,
                tunnel: 1407
            }
        );
    }

    #[test]
    fn configured_mtu_wins_and_caps_the_tunnel() {
        let small = PathMtus::new(Underlay::V4, 9000, false, Some(1400));
        assert_eq!(
            small,
            PathMtus {
                overlay: 1400,
                tunnel: 1400
            }
        );
        let big = PathMtus::new(Underlay::V4, 1500, false, Some(8000));
        assert_eq!(
            big,
            PathMtus {
                overlay: 8000,
                tunnel: 1407
            }
        );
    }

    #[test]
    fn tiny_underlays_get_the_floor() {
        let tiny = PathMtus::new(Underlay::V4, 300, false, None);
        assert_eq!(tiny.overlay, PathMtus::FLOOR);
        assert!(tiny.tunnel <= tiny.overlay);
    }
}
