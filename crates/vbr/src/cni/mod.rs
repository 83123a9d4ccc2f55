//! `vbr-cni`: vbridge's CNI plugin (specification 1.0 and 1.1: ADD, DEL, CHECK, STATUS,
//! GC, VERSION; also the result layouts of 0.3.x and 0.4.0 that runtimes such as Podman
//! 4 still ask for). The CNI framing (environment, stdin, result and error JSON, version
//! negotiation) is `rscni-plugin`'s; what each command does is in [`ops`], the network
//! configuration in [`conf`], IPAM delegation in [`ipam`].

mod conf;
mod ipam;
mod ops;

use std::process::ExitCode;

use rscni_plugin::cni::{Cni, Plugin};
use rscni_plugin::error::Error;
use rscni_plugin::types::{Args, CNIResult};
use rscni_plugin::version::SpecVersion;

struct Vbridge;

impl Cni for Vbridge {
    fn add(&self, args: Args) -> Result<CNIResult, Error> {
        ops::add(&args)
    }

    fn del(&self, args: Args) -> Result<(), Error> {
        ops::del(&args)
    }

    fn check(&self, args: Args) -> Result<(), Error> {
        ops::check(&args)
    }

    fn status(&self, args: Args) -> Result<(), Error> {
        ops::status(&args)
    }

    fn gc(&self, args: Args) -> Result<(), Error> {
        ops::gc(&args)
    }
}

/// The plugin's entry point: reads `CNI_*` and stdin, writes the result or the error
/// JSON on stdout; exit code 1 on error.
pub fn main() -> ExitCode {
    let v = |a, b, c| SpecVersion::new(a, b, c);
    let plugin = Plugin::new(
        v(1, 1, 0),
        vec![v(0, 3, 0), v(0, 3, 1), v(0, 4, 0), v(1, 0, 0), v(1, 1, 0)],
    )
    .msg("vbr-cni: vbridge's CNI plugin (type \"vbridge\"); run by a container runtime");
    match plugin.run(&Vbridge) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
