//! Memory-mapped blob files that a plain TCP connection can send with `sendfile(2)`.
//!
//! The filesystem store serves a large blob as [`bytes::Bytes`] over a read-only map of its
//! file, so every layer above it (ranges, HTTP/1 and HTTP/2 framing, TLS) sees ordinary bytes.
//! Each such map is registered here by its address range. A connection writing to a plain TCP
//! socket asks [`file_range`] whether a buffer it is about to write lies inside one; if so it
//! has the kernel send those bytes from the page cache (`sendfile`) instead of copying them in
//! from the map. The map's pages are then never touched by this process: no page faults, no
//! copy through user space, and they do not count as its resident memory (which is what a
//! container's memory limit sees).
//!
//! A map is unregistered before it is unmapped, and a buffer being written borrows from a live
//! map, so a lookup never finds a stale range. A miss only means an ordinary write.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Live maps by start address: (length, the mapped file).
static MAPS: RwLock<BTreeMap<usize, (usize, Arc<File>)>> = RwLock::new(BTreeMap::new());
/// How many maps are registered (lets writes skip the lock when there are none).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A read-only map of a whole immutable file, registered for [`file_range`] while it lives.
pub(crate) struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Map `file`, which must be non-empty and never written or truncated again (a stored
    /// blob: content-addressed and immutable; deleting it only unlinks it).
    pub(crate) fn new(file: File) -> io::Result<Self> {
        // SAFETY: blob files are immutable once renamed into place: nothing ever writes to or
        // truncates them (deletion only unlinks, which leaves the mapping valid).
        #[expect(unsafe_code, reason = "read-only map of an immutable, content-addressed file")]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let _ = map.advise(memmap2::Advice::Sequential);
        let mut maps = MAPS.write().unwrap_or_else(PoisonError::into_inner);
        maps.insert(map.as_ptr() as usize, (map.len(), Arc::new(file)));
        LIVE.fetch_add(1, Ordering::Relaxed);
        Ok(MappedFile { map })
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // Before the map field is dropped (unmapped), so the range is never stale.
        let mut maps = MAPS.write().unwrap_or_else(PoisonError::into_inner);
        maps.remove(&(self.map.as_ptr() as usize));
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where `buf` starts inside a live blob map: the mapped file, the offset of `buf[0]` in it,
/// and how many bytes from there lie inside the map (at most `buf.len()`). `None` for any
/// other memory.
pub fn file_range(buf: &[u8]) -> Option<(Arc<File>, u64, usize)> {
    if buf.is_empty() || LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let addr = buf.as_ptr() as usize;
    let maps = MAPS.read().unwrap_or_else(PoisonError::into_inner);
    let (&base, (len, file)) = maps.range(..=addr).next_back()?;
    let end = base + len;
    (addr < end).then(|| (file.clone(), (addr - base) as u64, buf.len().min(end - addr)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_map_is_found_by_any_address_inside_it_and_forgotten_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::File::create(&path).unwrap().write_all(&data).unwrap();
        let mapped = MappedFile::new(File::open(&path).unwrap()).unwrap();
        let bytes = bytes::Bytes::from_owner(mapped);
        let (_, off, n) = file_range(&bytes).unwrap();
        assert_eq!((off, n), (0, data.len()));
        let tail = bytes.slice(1000..);
        let (_, off, n) = file_range(&tail).unwrap();
        assert_eq!((off, n), (1000, data.len() - 1000));
        let heap = data.clone();
        assert!(file_range(&heap).is_none(), "heap memory is not a map");
        let ptr = bytes.as_ptr() as usize;
        drop((bytes, tail));
        assert!(!MAPS.read().unwrap().contains_key(&ptr), "dropping the last view unregisters the map");
    }
}
