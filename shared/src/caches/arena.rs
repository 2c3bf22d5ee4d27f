//! Memory for hot shards on 2 MiB pages. A hot hit is two dependent loads at random places in every hot
//! shard's memory (slot, record); on 4 KiB pages each is also a TLB miss and a page walk, which in a VM
//! costs more than the miss itself (measured: docs/benchmark-notes.md, "Figures behind the code").
//!
//! Hot shards are ~1 MiB, so one huge page each would double their memory. Instead the arena reserves one
//! address range the size of the data cache (`madvise(MADV_HUGEPAGE)`, nothing resident until written)
//! and places shards in it first-fit at 4 KiB granularity. A freed range is returned to the kernel
//! (`MADV_DONTNEED`) before it can be reused, so resident memory follows the live shards, not the history,
//! and a new allocation reads as zeros. When no free range fits (fragmentation, or the cache briefly over
//! its budget), `alloc` says so and the caller uses the ordinary heap: slower lookups, never more memory.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Serialize;

const HUGE_PAGE: usize = 2 << 20;
const GRAIN: usize = 4 << 10;

pub struct Arena {
    /// Start of the reserved range (2 MiB aligned); null if none could be reserved.
    base: *mut u8,
    len: usize,
    /// What to unmap on drop (the reservation before alignment).
    mapping: (*mut u8, usize),
    /// Free ranges, offset → length, coalesced.
    free: Mutex<BTreeMap<usize, usize>>,
    used: AtomicU64,
    fallbacks: AtomicU64,
}

// The raw pointers name a private mapping that lives as long as the arena; `ArenaBuf`s hand out disjoint
// ranges of it, each owned by one buffer.
unsafe impl Send for Arena {}
unsafe impl Sync for Arena {}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ArenaStats {
    pub reserved_bytes: u64,
    pub used_bytes: u64,
    /// Hot shards that found no free range and went to the ordinary heap.
    pub heap_fallbacks: u64,
}

impl Arena {
    /// Reserves `capacity` bytes of address space, rounded up to whole huge pages.
    pub fn new(capacity: usize) -> Arc<Arena> {
        let len = capacity.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let (base, mapping) = reserve(len).unwrap_or((std::ptr::null_mut(), (std::ptr::null_mut(), 0)));
        let len = if base.is_null() { 0 } else { len };
        let free = if len == 0 { BTreeMap::new() } else { BTreeMap::from([(0, len)]) };
        Arc::new(Arena {
            base,
            len,
            mapping,
            free: Mutex::new(free),
            used: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        })
    }

    /// `len` zeroed bytes in the arena, or `None` if no free range holds them.
    pub fn alloc(self: &Arc<Self>, len: usize) -> Option<ArenaBuf> {
        let need = len.max(1).div_ceil(GRAIN) * GRAIN;
        let mut free = self.free.lock().expect("arena free list");
        let Some((&at, &hole)) = free.iter().find(|&(_, &hole)| hole >= need) else {
            drop(free);
            self.fallbacks.fetch_add(1, Relaxed);
            return None;
        };
        free.remove(&at);
        if hole > need {
            free.insert(at + need, hole - need);
        }
        drop(free);
        self.used.fetch_add(need as u64, Relaxed);
        Some(ArenaBuf { arena: self.clone(), at, len, need })
    }

    fn release(&self, at: usize, need: usize) {
        // Zeroed and non-resident before anyone else can be handed the range.
        discard(unsafe { self.base.add(at) }, need);
        self.used.fetch_sub(need as u64, Relaxed);
        let mut free = self.free.lock().expect("arena free list");
        let (mut start, mut len) = (at, need);
        if let Some((&p, &plen)) = free.range(..at).next_back()
            && p + plen == at
        {
            free.remove(&p);
            (start, len) = (p, plen + len);
        }
        if let Some(next) = free.remove(&(at + need)) {
            len += next;
        }
        free.insert(start, len);
    }

    pub fn stats(&self) -> ArenaStats {
        ArenaStats {
            reserved_bytes: self.len as u64,
            used_bytes: self.used.load(Relaxed),
            heap_fallbacks: self.fallbacks.load(Relaxed),
        }
    }
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena").field("stats", &self.stats()).finish()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        unreserve(self.mapping);
    }
}

/// A range of the arena, owned: returned to it on drop.
pub struct ArenaBuf {
    arena: Arc<Arena>,
    at: usize,
    len: usize,
    need: usize,
}

unsafe impl Send for ArenaBuf {}
unsafe impl Sync for ArenaBuf {}

impl Deref for ArenaBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // In bounds: `alloc` handed out `at..at + need` of the arena's `len` bytes, to this buffer alone.
        unsafe { std::slice::from_raw_parts(self.arena.base.add(self.at), self.len) }
    }
}

impl DerefMut for ArenaBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.arena.base.add(self.at), self.len) }
    }
}

impl AsRef<[u8]> for ArenaBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for ArenaBuf {
    fn drop(&mut self) {
        self.arena.release(self.at, self.need);
    }
}

/// Zeroed bytes for a hot shard: in the arena if it has room, else on the heap.
pub enum HotBuf {
    Arena(ArenaBuf),
    Heap(Vec<u8>),
}

impl HotBuf {
    pub fn zeroed(arena: Option<&Arc<Arena>>, len: usize) -> HotBuf {
        match arena.and_then(|a| a.alloc(len)) {
            Some(b) => HotBuf::Arena(b),
            None => HotBuf::Heap(vec![0; len]),
        }
    }

    pub fn freeze(self) -> Bytes {
        match self {
            HotBuf::Arena(b) => Bytes::from_owner(b),
            HotBuf::Heap(v) => Bytes::from(v),
        }
    }
}

impl Deref for HotBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            HotBuf::Arena(b) => b,
            HotBuf::Heap(v) => v,
        }
    }
}

impl DerefMut for HotBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            HotBuf::Arena(b) => b,
            HotBuf::Heap(v) => v,
        }
    }
}

/// Maps `len` bytes (plus one huge page, to align the start), returning the aligned start and the mapping.
#[cfg(unix)]
fn reserve(len: usize) -> Option<(*mut u8, (*mut u8, usize))> {
    if len == 0 {
        return None;
    }
    let total = len + HUGE_PAGE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    let p = unsafe { libc::mmap(std::ptr::null_mut(), total, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return None;
    }
    let p = p as *mut u8;
    let base = unsafe { p.add(p.align_offset(HUGE_PAGE)) };
    // Best effort: without transparent huge pages the arena still works, on 4 KiB pages.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::madvise(base as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    Some((base, (p, total)))
}

#[cfg(not(unix))]
fn reserve(_len: usize) -> Option<(*mut u8, (*mut u8, usize))> {
    None
}

#[cfg(unix)]
fn unreserve((p, len): (*mut u8, usize)) {
    if !p.is_null() {
        unsafe { libc::munmap(p as *mut libc::c_void, len) };
    }
}

#[cfg(not(unix))]
fn unreserve(_: (*mut u8, usize)) {}

/// Frees the pages of a range; the next read of it sees zeros.
#[cfg(unix)]
fn discard(p: *mut u8, len: usize) {
    let ok = unsafe { libc::madvise(p as *mut libc::c_void, len, libc::MADV_DONTNEED) } == 0;
    if !ok {
        // Cannot happen for a range of our own private mapping; zero it by hand rather than hand out stale bytes.
        unsafe { std::ptr::write_bytes(p, 0, len) };
    }
}

#[cfg(not(unix))]
fn discard(_: *mut u8, _: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_ranges_are_zeroed_coalesced_and_reused() {
        let arena = Arena::new(1);
        assert_eq!(arena.stats().reserved_bytes, HUGE_PAGE as u64);
        let mut a = arena.alloc(GRAIN + 1).expect("room");
        let mut b = arena.alloc(100).expect("room");
        assert_eq!(arena.stats().used_bytes, 3 * GRAIN as u64);
        a.fill(7);
        b.fill(9);
        assert_eq!(b.len(), 100);
        assert!(a.iter().all(|&x| x == 7) && b.iter().all(|&x| x == 9), "no overlap");
        drop(a);
        drop(b);
        assert_eq!(arena.stats().used_bytes, 0);
        // One range again: the whole arena fits, and reads as zeros.
        let all = arena.alloc(HUGE_PAGE).expect("coalesced");
        assert!(all.iter().all(|&x| x == 0));
        assert!(arena.alloc(1).is_none(), "full");
        assert_eq!(arena.stats().heap_fallbacks, 1);
        drop(all);
        let mut h = HotBuf::zeroed(Some(&arena), 10);
        h[9] = 1;
        assert!(matches!(h, HotBuf::Arena(_)));
        let frozen = h.freeze();
        let slice = frozen.slice(9..10);
        drop(frozen);
        assert_eq!(arena.stats().used_bytes, GRAIN as u64, "a slice keeps the buffer");
        assert_eq!(&slice[..], &[1]);
        drop(slice);
        assert_eq!(arena.stats().used_bytes, 0);
    }

    #[test]
    fn a_full_arena_falls_back_to_the_heap() {
        let arena = Arena::new(HUGE_PAGE);
        let _a = arena.alloc(HUGE_PAGE - GRAIN).expect("room");
        assert!(matches!(HotBuf::zeroed(Some(&arena), 2 * GRAIN), HotBuf::Heap(_)));
        assert!(matches!(HotBuf::zeroed(Some(&arena), GRAIN), HotBuf::Arena(_)));
        assert!(matches!(HotBuf::zeroed(None, 1), HotBuf::Heap(_)));
    }
}
