//! Thin binary: all behaviour lives in the library.
fn main() -> std::process::ExitCode {
    chogate::cli::main()
}
