//! The `vbr-cni` binary, vbridge's CNI plugin (install it as `vbridge` in the runtime's
//! CNI plugin directory): see the library's `cni` module.

fn main() -> std::process::ExitCode {
    vbr::cni::main()
}
