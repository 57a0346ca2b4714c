//! Allocator tuning for the operator.
//!
//! glibc gives each thread that contends for the heap an arena of its own,
//! up to 8 per core, and freed memory stays in the arena it came from. A
//! process whose tokio workers, SQLite worker threads and blocking pool all
//! allocate therefore holds several partly-empty heaps: for the operator
//! with 10,000 objects cached, ~5 MiB of resident memory that does no work
//! (docs/operator.md, "Memory"). The operator has a memory budget and
//! modest request rates, so it takes two arenas.
//!
//! `serve` keeps glibc's default: at thousands of requests per second the
//! cap cost the REST server ~12% of its `get` throughput (5,352 against
//! 6,083 req/s on 2 cores, `scripts/bench_rest.sh`), and its memory is far
//! inside its budget anyway.

/// Arenas for the operator, whatever its worker count. The operator runs
/// tokio's default of one worker per CPU (or `--worker-threads`); with the
/// cap, workers beyond the second share an arena and may briefly wait on
/// its lock when they allocate at the same moment. At the operator's
/// request rates that wait is rare, while an arena per worker (glibc
/// would allow 8 per core) would hold memory that does no work. Set
/// `MALLOC_ARENA_MAX` to choose another trade-off.
pub const MALLOC_ARENAS: i32 = 2;

/// Cap glibc's arenas at [`MALLOC_ARENAS`], unless the user chose a value
/// with `MALLOC_ARENA_MAX` (glibc has already applied theirs). Call before
/// the runtime's threads start: arenas that exist are not merged.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the crate's one `unsafe`: a libc call (SAFETY below)
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
