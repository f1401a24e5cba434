//! Giving the heap's free pages back to the operating system after a large turn.
//!
//! glibc's malloc returns freed memory to the kernel only from the top of each arena (above
//! `M_TRIM_THRESHOLD`); free chunks below live objects stay resident. A daemon whose first turn
//! after start-up decides for the whole fleet at once (statuses, status documents, Events,
//! analysis results) peaks far above its steady live heap, and glibc keeps that peak as RSS for
//! good. `malloc_trim(0)` walks every arena and hands back every whole free page (with
//! `MADV_DONTNEED`), not only the top: docs/benchmarks.md, "Daemon", has the numbers.
//!
//! Only glibc has `malloc_trim`; elsewhere (musl, macOS) [`release_free_heap`] does nothing.

/// Return the heap's free pages to the operating system. True when the allocator gave any back
/// (always false where the allocator has no such call).
pub fn release_free_heap() -> bool {
    trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes a plain integer, touches only the allocator's own state under
    // the arenas' locks and is safe to call from any thread at any time (glibc's manual).
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_pages_go_back_after_a_large_free() {
        // Many small blocks (below the mmap threshold, so they live in the arena), then free
        // seven of every eight: the holes below the kept blocks cannot be trimmed from the top
        // of the arena, only by malloc_trim.
        let blocks: Vec<Vec<u8>> = (0..8_000).map(|i| vec![(i % 251) as u8; 4096]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 8 == 0)
            .map(|(_, b)| b)
            .collect();
        let released = release_free_heap();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(released, "28 MB of holes give pages back");
        } else {
            assert!(!released);
        }
        assert_eq!(kept.len(), 1_000);
        assert_eq!(kept[1][0], 8, "the kept blocks are untouched");
    }
}
