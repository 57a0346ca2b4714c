//! Allocator tuning for the long-running commands (`serve`, `operator`).
//!
//! glibc gives each thread that contends for the heap an arena of its own,
//! up to 8 per core, and freed memory stays in the arena it came from. A
//! server whose tokio workers, SQLite worker threads and blocking pool all
//! allocate therefore holds several partly-empty heaps: for the operator
//! with 10,000 objects cached, ~5 MiB of resident memory that does no work
//! (docs/benchmarks.md). Two arenas keep contention low on the few cores
//! these processes get while bounding that waste.

/// Arenas for the servers: tokio's two workers each find one free.
pub const MALLOC_ARENAS: i32 = 2;

/// Cap glibc's arenas at [`MALLOC_ARENAS`], unless the user chose a value
/// with `MALLOC_ARENA_MAX` (glibc has already applied theirs). Call before
/// the runtime's threads start: arenas that exist are not merged.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only sets an allocator tunable; it takes no pointers
    // and is safe to call at any time (glibc serialises it internally).
    let done = unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
    if done != 1 {
        tracing::debug!("mallopt(M_ARENA_MAX) was refused; keeping glibc's default arenas");
    }
}

/// Other allocators and platforms manage their own arenas.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_malloc_arenas() {}
