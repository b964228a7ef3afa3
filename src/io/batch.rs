//! Receive buffers and transmit descriptors shared by every frame port.

use wire::VnetFrame;

/// Bytes of the legacy `virtio_net_hdr` in front of every frame on a port.
pub const VNET_HDR_LEN: usize = wire::vnet::LEN;

/// Largest frame a port may hand us: a 64 KiB GSO super-frame plus its Ethernet
/// header (and a VLAN tag).
pub const MAX_FRAME_LEN: usize = 65535 + 14 + 4;

/// One receive slot: the vnet header immediately followed by the frame, so a
/// single iovec (or a plain `read`) fills both.
pub(crate) const SLOT_LEN: usize = VNET_HDR_LEN + MAX_FRAME_LEN;

/// Preallocated receive buffers for one batch; reused forever (no allocation per frame).
///
/// Slot `i` holds the vnet header and frame of the `i`-th frame of the last
/// receive. Accessors never panic: an index at or past [`len`](Self::len) reads
/// as an empty frame with an all-zero header.
#[derive(Debug)]
pub struct RxBatch {
    storage: Box<[u8]>,
    lens: Box<[usize]>,
    truncated: Box<[bool]>,
    len: usize,
}

impl RxBatch {
    /// Allocates `capacity` slots (at least one) of `VNET_HDR_LEN + MAX_FRAME_LEN`
    /// bytes each, about 64 KiB per slot.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            storage: vec![0; capacity * SLOT_LEN].into_boxed_slice(),
            lens: vec![0; capacity].into_boxed_slice(),
            truncated: vec![false; capacity].into_boxed_slice(),
            len: 0,
        }
    }

    /// How many frames one receive may fill.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Frames received by the last `recv_batch`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the last receive produced no frames.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the frames of the last receive.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The vnet header of frame `i`, as the kernel wrote it.
    pub fn vnet(&self, i: usize) -> &[u8; VNET_HDR_LEN] {
        self.slot(i)
            .and_then(|slot| slot.first_chunk::<VNET_HDR_LEN>())
            .unwrap_or(&wire::vnet::NO_OFFLOAD)
    }

    /// The vnet header of frame `i`, writable (e.g. to clear `NEEDS_CSUM` after
    /// completing a checksum in place); `None` out of range.
    pub fn vnet_mut(&mut self, i: usize) -> Option<&mut [u8; VNET_HDR_LEN]> {
        self.slot_mut(i)
            .and_then(|slot| slot.first_chunk_mut::<VNET_HDR_LEN>())
    }

    /// The Ethernet frame `i` (without its vnet header).
    pub fn frame(&self, i: usize) -> &[u8] {
        self.slot(i)
            .and_then(|slot| slot.get(VNET_HDR_LEN..))
            .unwrap_or(&[])
    }

    /// The Ethernet frame `i`, writable for in-place rewrites (e.g. checksum completion).
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        self.slot_mut(i)
            .and_then(|slot| slot.get_mut(VNET_HDR_LEN..))
            .unwrap_or(&mut [])
    }

    /// True when frame `i` was larger than its slot and arrived cut short; the
    /// data plane must drop (and count) it rather than forward a partial frame.
    /// A runt shorter than the vnet header also counts as truncated.
    pub fn is_truncated(&self, i: usize) -> bool {
        i < self.len
            && (self.truncated.get(i).copied().unwrap_or(true)
                || self.lens.get(i).is_none_or(|len| *len < VNET_HDR_LEN))
    }

    /// Frame `i` with its header, ready to hand to another port's `send_frames`.
    pub fn vnet_frame(&self, i: usize) -> VnetFrame<'_> {
        VnetFrame {
            vnet: self.vnet(i),
            frame: self.frame(i),
        }
    }

    /// The received frames in order, each with its vnet header.
    pub fn iter(&self) -> RxFrames<'_> {
        RxFrames {
            batch: self,
            next: 0,
        }
    }

    /// Slot `i` (header and frame) of the last receive.
    fn slot(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len {
            return None;
        }
        let len = *self.lens.get(i)?;
        self.storage.get(i * SLOT_LEN..)?.get(..len)
    }

    fn slot_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        if i >= self.len {
            return None;
        }
        let len = *self.lens.get(i)?;
        self.storage.get_mut(i * SLOT_LEN..)?.get_mut(..len)
    }

    /// Everything a receive syscall fills: the slot storage, per-slot byte
    /// counts and truncation flags. Resets the batch to empty.
    pub(crate) fn receive_buffers(&mut self) -> (&mut [u8], &mut [usize], &mut [bool]) {
        self.len = 0;
        (&mut self.storage, &mut self.lens, &mut self.truncated)
    }

    /// Records that the first `n` slots hold frames (clamped to the capacity).
    pub(crate) fn set_len(&mut self, n: usize) {
        self.len = n.min(self.capacity());
    }
}

/// Iterator over the frames of an [`RxBatch`], each as a [`VnetFrame`] view.
#[derive(Debug)]
pub struct RxFrames<'a> {
    batch: &'a RxBatch,
    next: usize,
}

impl<'a> Iterator for RxFrames<'a> {
    type Item = VnetFrame<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.batch.len {
            return None;
        }
        let frame = self.batch.vnet_frame(self.next);
        self.next += 1;
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.len.saturating_sub(self.next);
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills slot `i` like a receive syscall would: `bytes` at the slot start.
    fn fill(batch: &mut RxBatch, slots: &[&[u8]]) {
        let (storage, lens, truncated) = batch.receive_buffers();
        for (i, bytes) in slots.iter().enumerate() {
            storage[i * SLOT_LEN..][..bytes.len()].copy_from_slice(bytes);
            lens[i] = bytes.len();
            truncated[i] = false;
        }
        batch.set_len(slots.len());
    }

    #[test]
    fn slots_split_into_header_and_frame() {
        let mut batch = RxBatch::new(4);
        let a: Vec<u8> = (0..30).collect();
        let b: Vec<u8> = (100..112).collect();
        fill(&mut batch, &[&a, &b]);
        assert_eq!(batch.len(), 2);
        assert_eq!(&batch.vnet(0)[..], &a[..VNET_HDR_LEN]);
        assert_eq!(batch.frame(0), &a[VNET_HDR_LEN..]);
        assert_eq!(&batch.vnet(1)[..], &b[..VNET_HDR_LEN]);
        assert_eq!(batch.frame(1), &b[VNET_HDR_LEN..]);
        let collected: Vec<&[u8]> = batch.iter().map(|f| f.frame).collect();
        assert_eq!(collected, vec![&a[VNET_HDR_LEN..], &b[VNET_HDR_LEN..]]);
    }

    #[test]
    fn out_of_range_and_runts_never_panic() {
        let mut batch = RxBatch::new(2);
        fill(&mut batch, &[&[1, 2, 3]]);
        assert_eq!(batch.frame(0), &[] as &[u8]);
        assert_eq!(batch.vnet(0), &[0; VNET_HDR_LEN]);
        assert!(
            batch.is_truncated(0),
            "a runt shorter than the header is flagged"
        );
        assert_eq!(batch.frame(5), &[] as &[u8]);
        assert!(batch.frame_mut(5).is_empty());
        assert!(batch.vnet_mut(5).is_none());
        assert!(!batch.is_truncated(5));
    }

    #[test]
    fn in_place_rewrites_are_visible() {
        let mut batch = RxBatch::new(1);
        fill(&mut batch, &[&[0; 20]]);
        batch.frame_mut(0)[0] = 0xaa;
        if let Some(h) = batch.vnet_mut(0) {
            h[0] = 1;
        }
        assert_eq!(batch.frame(0)[0], 0xaa);
        assert_eq!(batch.vnet(0)[0], 1);
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.frame(0), &[] as &[u8]);
    }

    #[test]
    fn capacity_is_at_least_one() {
        assert_eq!(RxBatch::new(0).capacity(), 1);
        assert_eq!(RxBatch::new(64).capacity(), 64);
    }
}
