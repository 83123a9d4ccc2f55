//! The `vbr` binary: see the library.

fn main() -> std::process::ExitCode {
    vbr::run()
}
