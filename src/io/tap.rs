//! The host's port: a persistent TAP device with virtio-net headers and offloads.
//!
//! [`TapPort::open`] attaches to (or creates) the TAP `name` with
//! `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, sets the header size to 10 bytes and
//! enables offloads (`TUN_F_CSUM | TSO4 | TSO6`, plus `TSO_ECN` and `USO4|USO6`
//! where the kernel accepts them), so the host stack hands us 64 KiB TSO
//! super-frames and partial checksums, exactly as a veth does through
//! `PACKET_VNET_HDR`. With USO on, UDP super-frames
//! (`VIRTIO_NET_HDR_GSO_UDP_L4`) can arrive too; [`TapPort::offloads`] says which.
//!
//! Offload flags are device-wide state of the TAP. The device is made
//! persistent (`TUNSETPERSIST`), so it and the host's addresses on it survive a
//! router crash; the next router reattaches by name. [`TapPort::set_persistent`]
//! with `false` lets the device vanish when the descriptor closes.
//!
//! Reads are one frame per `read(2)` (the TUN driver has no batch read); writes
//! are one `writev(2)` per frame (header and frame as two iovecs, no copy).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::batch::SLOT_LEN;
use super::{
    FramePort, PortError, RxBatch, SendFailure, VNET_HDR_LEN, VnetFrame, classify_send_error,
};
use crate::sys;

/// Which optional offloads the kernel accepted for a TAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TapOffloads {
    /// `TUN_F_TSO_ECN`: TCP super-frames may carry the ECN/CWR bit (`GSO_ECN` in the header).
    pub tso_ecn: bool,
    /// `TUN_F_USO4 | TUN_F_USO6` (Linux 6.2+): UDP super-frames may arrive.
    pub uso: bool,
}

/// The host port: a TAP device opened with a vnet header; see the module docs.
#[derive(Debug)]
pub struct TapPort {
    file: File,
    name: String,
    ifindex: u32,
    offloads: TapOffloads,
}

impl TapPort {
    /// Creates (or reopens) a persistent TAP: IFF_TAP|IFF_NO_PI|IFF_VNET_HDR,
    /// TUNSETVNETHDRSZ 10, TUNSETOFFLOAD CSUM|TSO4|TSO6 (+ TSO_ECN, USO4/USO6 where
    /// the kernel accepts them), TUNSETPERSIST, O_NONBLOCK, in the network namespace
    /// of the calling thread.
    pub fn open(name: &str) -> Result<Self, PortError> {
        validate_tap_name(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => PortError::NoTunDevice,
                _ => PortError::io("open /dev/net/tun", e),
            })?;
        let fd = file.as_fd();
        let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        let name = sys::tun::set_iff(fd, name, flags).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => PortError::TapBusy { name: name.into() },
            Some(libc::EINVAL) => PortError::NotATap { name: name.into() },
            _ => PortError::io(format!("TUNSETIFF {name}"), e),
        })?;
        let hdr_size = libc::c_int::try_from(VNET_HDR_LEN).unwrap_or(10);
        sys::tun::set_vnet_hdr_size(fd, hdr_size)
            .map_err(|e| PortError::io(format!("TUNSETVNETHDRSZ on {name}"), e))?;
        let offloads =
            set_offloads(fd).map_err(|e| PortError::io(format!("TUNSETOFFLOAD on {name}"), e))?;
        sys::tun::set_persist(fd, true)
            .map_err(|e| PortError::io(format!("TUNSETPERSIST on {name}"), e))?;
        let ifindex = nix::net::if_::if_nametoindex(name.as_str())
            .map_err(|e| PortError::io(format!("ifindex of {name}"), io::Error::from(e)))?;
        Ok(Self {
            file,
            name,
            ifindex,
            offloads,
        })
    }

    /// The device's ifindex in the namespace it was opened in.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The optional offloads in effect, i.e. which GSO types the host may send us.
    pub fn offloads(&self) -> TapOffloads {
        self.offloads
    }

    /// Sets or clears persistence; cleared, the device disappears when the fd closes
    /// (used by `weft hide`/`reset`).
    pub fn set_persistent(&self, persist: bool) -> Result<(), PortError> {
        sys::tun::set_persist(self.file.as_fd(), persist)
            .map_err(|e| PortError::io(format!("TUNSETPERSIST on {}", self.name), e))
    }
}

/// Enables the largest offload set the kernel accepts, dropping USO, then
/// TSO_ECN, on EINVAL.
fn set_offloads(fd: BorrowedFd<'_>) -> io::Result<TapOffloads> {
    let base = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    let uso = libc::TUN_F_USO4 | libc::TUN_F_USO6;
    let attempts = [
        (
            base | libc::TUN_F_TSO_ECN | uso,
            TapOffloads {
                tso_ecn: true,
                uso: true,
            },
        ),
        (
            base | libc::TUN_F_TSO_ECN,
            TapOffloads {
                tso_ecn: true,
                uso: false,
            },
        ),
        (base, TapOffloads::default()),
    ];
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for (flags, offloads) in attempts {
        match sys::tun::set_offload(fd, flags) {
            Ok(()) => return Ok(offloads),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Rejects names the kernel would refuse, and `%d` templates (they would
/// create a new device on every start instead of reattaching).
fn validate_tap_name(name: &str) -> Result<(), PortError> {
    let invalid = |reason| PortError::InvalidName {
        name: name.into(),
        reason,
    };
    crate::netlink::validate_ifname(name).map_err(invalid)?;
    if name.contains('%') {
        return Err(invalid(
            "'%' templates are not allowed for a persistent TAP",
        ));
    }
    Ok(())
}

impl FramePort for TapPort {
    fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize> {
        let (storage, lens, truncated) = batch.receive_buffers();
        let mut total = 0;
        let mut first_error = None;
        for ((slot, len), trunc) in storage
            .chunks_exact_mut(SLOT_LEN)
            .zip(lens.iter_mut())
            .zip(truncated.iter_mut())
        {
            let n = loop {
                match (&self.file).read(slot) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other,
                }
            };
            match n {
                Ok(n) => {
                    *len = n;
                    // The slot holds the largest frame the TAP can produce
                    // (64 KiB GSO + header), so a full slot means it may be cut.
                    *trunc = n >= SLOT_LEN;
                    total += 1;
                }
                Err(e) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
        batch.set_len(total);
        match first_error {
            Some(e) if total == 0 => Err(e),
            _ => Ok(total),
        }
    }

    fn send_frames(&self, frames: &[VnetFrame<'_>]) -> io::Result<usize> {
        let mut sent = 0;
        for frame in frames {
            let iov = [IoSlice::new(frame.vnet), IoSlice::new(frame.frame)];
            let result = loop {
                match (&self.file).write_vectored(&iov) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other,
                }
            };
            match result {
                Ok(_) => sent += 1,
                Err(e) => match classify_send_error(&e) {
                    SendFailure::SkipFrame => {}
                    SendFailure::Full => break,
                    SendFailure::Port if sent == 0 => return Err(e),
                    SendFailure::Port => break,
                },
            }
        }
        Ok(sent)
    }
}

impl AsRawFd for TapPort {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for TapPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl mio::event::Source for TapPort {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.file.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.file.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.file.as_raw_fd()).deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_validated() {
        assert!(validate_tap_name("weft").is_ok());
        assert!(validate_tap_name("a23456789012345").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "a234567890123456",
            "we/ft",
            "tap%d",
            "a b",
            "x:1",
        ] {
            assert!(
                matches!(validate_tap_name(bad), Err(PortError::InvalidName { .. })),
                "{bad:?} should be rejected"
            );
        }
    }
}
