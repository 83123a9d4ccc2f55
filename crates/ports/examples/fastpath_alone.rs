//! The kernel fast path with no switch behind it, for `bench/rate.sh`: the tcx
//! program on netdev IN and one flow from SRC to DST through it to the peer of OUT (a
//! veth whose peer is in another namespace), and no packet socket on IN, so no frame
//! pays for a packet tap. What the fast path would cost if the switch did not read its
//! ports' frames before the program runs.
//!
//! `fastpath_alone IN OUT DST SRC`: holds the program and the flow until killed (the
//! kernel drops both when the process exits). Prints `ready` once they are in place.

use std::io::Write;

use vbridge_ports::{Egress, FastPath, FlowKey, MacAddr, Via};

fn ifindex(name: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .trim()
        .parse()
        .expect("an ifindex")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [inp, out, dst, src] = &args[..] else {
        eprintln!("usage: fastpath_alone IN OUT DST SRC");
        std::process::exit(2);
    };
    let mac = |s: &str| -> MacAddr { s.parse().expect("a MAC address") };
    let fp = FastPath::new(16, 1518).expect("the fast path (root, Linux 6.6+)");
    let _port = fp.link(ifindex(inp)).expect("tcx on IN");
    let key = FlowKey {
        ingress: ifindex(inp),
        dst: mac(dst),
        src: mac(src),
        vid: 0,
    };
    let to = Egress {
        ifindex: ifindex(out),
        max_len: 1518,
        tag: 0,
        via: Via::Peer,
    };
    fp.insert(key, to).expect("the flow");
    println!("ready");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
