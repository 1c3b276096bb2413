//! Uploads: host data reaches the GPU through pinned staging buffers, and a batch-sized upload through a copy stream that runs beside the compute stream.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DeviceRepr, PinnedHostSlice, ValidAsZeroBits};

use super::err;
use crate::Result;

/// Uploads of at least this many bytes (a batch of images, not an index list) go through the copy stream.
const OVERLAP_BYTES: usize = 64 << 10;

/// Buffers kept per size, and the most staging memory (pinned and landing buffers) kept in all.
const RING: usize = 3;
const MAX_BYTES: usize = 512 << 20;

/// The two streams an upload uses: the one all kernels run on, and the one that only copies.
pub(crate) struct Streams<'a> {
    pub(crate) compute: &'a Arc<CudaStream>,
    pub(crate) copy: &'a Arc<CudaStream>,
}

/// Pinned host buffers for uploads, a few per size, each with an event recorded after the copy that reads
/// it, so that the host rewrites a buffer only once its previous copy has finished. (cudarc's own
/// bookkeeping for pinned buffers records nothing with event tracking off.)
///
/// A small upload is copied on the compute stream, in order with the kernels. A large one is copied on the
/// copy stream into a device landing buffer, while the compute stream goes on with earlier work, and the
/// compute stream, once that copy is done, moves it into the new tensor: a device-to-device copy that takes
/// microseconds. The new tensor is allocated and later freed on the compute stream, so the pool orders its
/// reuse after every kernel that reads it; only the landing buffers cross streams, each guarded by events.
pub(crate) struct Staging<T> {
    by_len: HashMap<usize, (Vec<Slot<T>>, usize)>,
    bytes: usize,
}

struct Slot<T> {
    buf: PinnedHostSlice<T>,
    /// Recorded after the copy that reads `buf`.
    copied: CudaEvent,
    /// For large uploads: the device buffer the copy stream fills, and an event recorded on the compute
    /// stream once it has read it.
    landing: Option<(CudaSlice<T>, CudaEvent)>,
}

impl<T> Default for Staging<T> {
    fn default() -> Self {
        Staging { by_len: HashMap::new(), bytes: 0 }
    }
}

impl<T: DeviceRepr + Copy + ValidAsZeroBits> Staging<T> {
    /// Copies `data` into a pinned buffer of exactly its length and queues the copy from there into `dst`,
    /// which the compute stream may read as soon as this returns.
    pub(crate) fn upload(&mut self, streams: Streams<'_>, data: &[T], dst: &mut CudaSlice<T>) -> Result<()> {
        let bytes = std::mem::size_of_val(data);
        let large = bytes >= OVERLAP_BYTES;
        // A slot holds the pinned buffer and, for a large upload, a landing buffer as big.
        let slot_bytes = if large { 2 * bytes } else { bytes };
        if !self.by_len.contains_key(&data.len()) && self.bytes + slot_bytes * RING > MAX_BYTES {
            self.clear()?;
        }
        let ctx = streams.compute.context();
        let (ring, next) = self.by_len.entry(data.len()).or_insert_with(|| (Vec::new(), 0));
        if ring.len() < RING {
            let buf = unsafe { ctx.alloc_pinned::<T>(data.len()) }.map_err(err("alloc_pinned"))?;
            // Fresh events count as complete, so the first waits below return at once.
            let copied = ctx.new_event(None).map_err(err("staging"))?;
            let landing = if large {
                let dev = unsafe { streams.copy.alloc::<T>(data.len()) }.map_err(err("staging"))?;
                Some((dev, ctx.new_event(None).map_err(err("staging"))?))
            } else {
                None
            };
            ring.push(Slot { buf, copied, landing });
            self.bytes += slot_bytes;
        }
        let at = *next % ring.len();
        let slot = &mut ring[at];
        *next = next.wrapping_add(1);
        slot.copied.synchronize().map_err(err("staging"))?;
        slot.buf.as_mut_slice().map_err(err("staging"))?.copy_from_slice(data);
        match &mut slot.landing {
            None => {
                streams.compute.memcpy_htod(&slot.buf, dst).map_err(err("upload"))?;
                slot.copied.record(streams.compute).map_err(err("staging"))?;
            }
            Some((landing, read)) => {
                // The landing buffer's previous batch must have been moved out before it is overwritten.
                streams.copy.wait(read).map_err(err("staging"))?;
                streams.copy.memcpy_htod(&slot.buf, landing).map_err(err("upload"))?;
                slot.copied.record(streams.copy).map_err(err("staging"))?;
                streams.compute.wait(&slot.copied).map_err(err("staging"))?;
                streams.compute.memcpy_dtod(landing, dst).map_err(err("upload"))?;
                read.record(streams.compute).map_err(err("staging"))?;
            }
        }
        Ok(())
    }

    /// Frees every buffer once the copies and reads queued on them have finished.
    fn clear(&mut self) -> Result<()> {
        for (ring, _) in self.by_len.values() {
            for slot in ring {
                slot.copied.synchronize().map_err(err("staging"))?;
                if let Some((_, read)) = &slot.landing {
                    read.synchronize().map_err(err("staging"))?;
                }
            }
        }
        self.by_len.clear();
        self.bytes = 0;
        Ok(())
    }
}
