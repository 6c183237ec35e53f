//! Thin binary: all behaviour lives in the library.

/// mimalloc rather than glibc malloc: a step allocates a few dozen small buffers on several
/// threads (see BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    chogate::cli::main()
}
