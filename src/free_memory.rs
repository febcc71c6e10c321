//! Handing memory the process freed back to the operating system.
//!
//! Why: glibc's allocator keeps one arena per thread. When a large state
//! built on one thread (the boot restore, the apply task) is dropped and a
//! new one is read on another (a snapshot restore on a blocking thread),
//! the freed pages stay in the first arena, resident but unusable by the
//! second, and a follower restoring a snapshot briefly holds the old state
//! and the new one: twice its memory. `malloc_trim` releases the free pages
//! of every arena.
//!
//! The `ringraft` binary allocates with mimalloc (which returns freed
//! pages by itself), so there this only trims what glibc's heap holds; an
//! embedder on glibc's allocator gets the full effect.
//!
//! Owns: that call, and the only `unsafe` of the crate.
//! Guarantees: nothing observable but the resident set; a no-op where the
//! C library is not glibc.
//! May not touch: anything else.

/// Returns the pages of freed memory to the operating system (glibc), so
/// that the resident set shrinks to what is in use. Takes a few
/// milliseconds; call it after dropping something large.
pub(crate) fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists and
    // madvises whole free pages away; it has no preconditions on the caller
    // and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
