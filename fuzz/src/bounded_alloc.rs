//! The fuzz targets' allocator: the system's, counting the bytes in use,
//! and aborting (a crash libFuzzer reports, with the input) when one
//! allocation or all of them together pass `LIMIT`. CI fuzzes without
//! sanitizers, so an input that makes a parser reserve gigabytes would
//! otherwise go unseen, or take the machine down.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Far above what any input of libFuzzer's sizes (4 KiB by default)
/// honestly needs.
pub const LIMIT: usize = 256 << 20;

pub struct Bounded {
    in_use: AtomicUsize,
}

impl Bounded {
    pub const fn new() -> Bounded {
        Bounded { in_use: AtomicUsize::new(0) }
    }

    fn take(&self, size: usize) {
        let now = self.in_use.fetch_add(size, Ordering::Relaxed) + size;
        if size > LIMIT || now > LIMIT {
            // No allocation here: print with a fixed buffer.
            let msg = b"bounded_alloc: an allocation passed the limit\n";
            // SAFETY: writing a static buffer to stderr.
            unsafe { libc_write(2, msg.as_ptr(), msg.len()) };
            std::process::abort();
        }
    }
}

unsafe extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, len: usize) -> isize;
}

// SAFETY: every call is passed to the system allocator unchanged; only
// counted beside.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.take(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.take(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.take(new_size);
        self.in_use.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.in_use.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}
