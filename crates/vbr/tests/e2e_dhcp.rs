//! vbridge's DHCP server with real clients in namespaces: busybox `udhcpc` and ISC
//! `dhclient` get distinct addresses (a static lease for a known MAC), reach the
//! gateway, keep their addresses across a `kill -9` of the daemon, release them; the pool
//! running dry, malformed packets and bad settings get their answer; `vbr down` takes the
//! server away with everything else.

mod common;

use std::time::Duration;

use common::*;

/// A udhcpc script that applies the lease (address, prefix, router) and notes it.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}"
    echo "$ip" > "$LEASE_NOTE"
    ;;
esac
exit 0
"#;

/// Files a test writes for its clients (scripts, dhclient's lease and pid files, a
/// resolv.conf of the namespace's own so no client touches the host's); removed at the
/// end.
struct Clients {
    dir: std::path::PathBuf,
    netns_etc: Vec<std::path::PathBuf>,
}

impl Clients {
    fn new(d: &Daemon) -> Clients {
        let dir = d.dir.join("clients");
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("udhcpc.sh");
        std::fs::write(&script, UDHCPC_SCRIPT).unwrap();
        ok(&format!("chmod +x {}", script.display()));
        std::fs::write(
            dir.join("dhclient.conf"),
            "timeout 20;\nretry 1;\nrequest subnet-mask, routers;\n",
        )
        .unwrap();
        Clients {
            dir,
            netns_etc: Vec::new(),
        }
    }

    /// `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf:
    /// a client that writes it writes the namespace's own.
    fn guard(&mut self, ns: &str) {
        let d = std::path::PathBuf::from(format!("/etc/netns/{ns}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("resolv.conf"), "").unwrap();
        self.netns_etc.push(d);
    }

    /// busybox udhcpc in `ns` once; the address it was given.
    fn udhcpc(&mut self, ns: &Netns, extra: &str) -> Option<String> {
        self.guard(&ns.name);
        let note = self.dir.join(format!("{}.lease", ns.name));
        let _ = std::fs::remove_file(&note);
        let out = ns.exec(&format!(
            "env LEASE_NOTE={} busybox udhcpc -i eth0 -n -q -f -t 4 -T 1 -s {} {extra}",
            note.display(),
            self.dir.join("udhcpc.sh").display()
        ));
        let got = std::fs::read_to_string(&note)
            .ok()
            .map(|s| s.trim().to_owned());
        if got.is_none() {
            eprintln!(
                "udhcpc in {}: {}{}",
                ns.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        got
    }

    /// ISC dhclient in `ns` once (`-r` releases); its output.
    fn dhclient(&mut self, ns: &Netns, release: bool) -> std::process::Output {
        self.guard(&ns.name);
        let d = &self.dir;
        ns.exec(&format!(
            "dhclient -1 -v {} -cf {} -lf {} -pf {} eth0",
            if release { "-r" } else { "" },
            d.join("dhclient.conf").display(),
            d.join(format!("{}.leases", ns.name)).display(),
            d.join(format!("{}.pid", ns.name)).display(),
        ))
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        for d in &self.netns_etc {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The IPv4 address on `ns`'s eth0, if any.
fn addr_of(ns: &Netns) -> Option<String> {
    let out = ns.ok("ip -4 -o addr show dev eth0");
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .map(|a| a.split('/').next().unwrap_or("").to_owned())
}

fn leases(d: &Daemon, bridge: &str) -> Vec<serde_json::Value> {
    d.json(&format!("dhcp leases {bridge}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, DHCP clients"
)]
fn real_clients_lease_renew_release_and_keep_addresses_across_kill_9() {
    require_root();
    let host = Netns::new("h");
    host.ok("ip link set lo up");
    let mut d = Daemon::start(&host);
    let t = uniq("t");
    let (a, b, c) = (format!("{t}a"), format!("{t}b"), format!("{t}c"));
    let topo = d.dir.join("dhcp.toml");
    std::fs::write(
        &topo,
        format!(
            r#"[[bridge]]
name = "brd"
addresses = ["10.72.0.1/24"]
[bridge.dhcp]
range = "10.72.0.100-10.72.0.110"
lease = 600
static = [{{ mac = "02:00:00:00:72:0c", ip = "10.72.0.50" }}]

[[namespace]]
name = "{a}"
bridge = "brd"
dhcp = true
mac = "02:00:00:00:72:0a"

[[namespace]]
name = "{b}"
bridge = "brd"
dhcp = true
mac = "02:00:00:00:72:0b"

[[namespace]]
name = "{c}"
bridge = "brd"
dhcp = true
mac = "02:00:00:00:72:0c"
"#
        ),
    )
    .unwrap();
    d.ok(&format!("up {}", topo.display()));
    let (na, nb, nc) = (Netns::adopt(&a), Netns::adopt(&b), Netns::adopt(&c));
    let mut cl = Clients::new(&d);
    // busybox udhcpc in a, ISC dhclient in b, udhcpc with a static lease in c.
    let ipa = cl.udhcpc(&na, "").expect("a lease for a");
    let out = cl.dhclient(&nb, false);
    let ipb = addr_of(&nb).unwrap_or_else(|| {
        panic!(
            "dhclient got no address: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            d.log()
        )
    });
    let ipc = cl.udhcpc(&nc, "").expect("a lease for c");
    assert_ne!(ipa, ipb);
    for ip in [&ipa, &ipb] {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!((100..=110).contains(&last), "{ip} in the range");
    }
    assert_eq!(ipc, "10.72.0.50", "the static lease");
    assert!(na.reaches("10.72.0.1"), "a reaches its gateway");
    assert!(na.reaches(&ipb), "a reaches b");
    let l = leases(&d, "brd");
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(
        l.iter()
            .any(|x| x["ip"] == ipa.as_str() && x["mac"] == "02:00:00:00:72:0a"),
        "{l:?}"
    );
    let text = d.ok("dhcp leases brd");
    assert!(
        text.contains(&ipb) && text.contains("02:00:00:00:72:0b"),
        "{text}"
    );
    // kill -9, restart: the leases are still there, and a's renewal keeps its address.
    d.kill9();
    d.spawn();
    assert_eq!(leases(&d, "brd").len(), 3, "leases after kill -9");
    let again = cl
        .udhcpc(&na, &format!("-r {ipa}"))
        .expect("a renews after the restart");
    assert_eq!(again, ipa);
    // A fourth client does not get any of the three addresses.
    let t2 = uniq("e");
    let ne = Netns::new(&t2);
    d.ok(&format!("connect {} brd --dhcp", ne.name));
    let ipe = cl.udhcpc(&ne, "").expect("a lease for e");
    assert!(![&ipa, &ipb, &ipc].contains(&&ipe), "{ipe}");
    // dhclient -r releases b's lease.
    cl.dhclient(&nb, true);
    assert!(
        eventually(Duration::from_secs(5), || leases(&d, "brd")
            .iter()
            .all(|x| x["ip"] != ipb.as_str())),
        "b's lease released: {:?}",
        leases(&d, "brd")
    );
    assert!(d.log().contains("DHCP lease released"), "{}", d.log());
    d.ok(&format!("disconnect {} brd", ne.name));
    // `down` takes the server away with the bridge.
    d.ok(&format!("down {}", topo.display()));
    let o = d.vbr("dhcp leases brd");
    assert_eq!(o.status.code(), Some(1));
    assert!(!d.dir.join("state/dhcp/brd.json").exists());
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, DHCP clients"
)]
fn a_dry_pool_garbage_and_bad_settings_get_their_answer() {
    require_root();
    let host = Netns::new("h");
    host.ok("ip link set lo up");
    let d = Daemon::start(&host);
    let topo = d.dir.join("one.toml");
    std::fs::write(
        &topo,
        "[[bridge]]\nname = \"brd\"\naddresses = [\"10.73.0.1/24\"]\n[bridge.dhcp]\nrange = \"10.73.0.100-10.73.0.100\"\n",
    )
    .unwrap();
    d.ok(&format!("up {}", topo.display()));
    let a = Netns::new("a");
    let b = Netns::new("b");
    d.ok(&format!("connect {} brd --dhcp", a.name));
    d.ok(&format!("connect {} brd --dhcp", b.name));
    let mut cl = Clients::new(&d);
    let ipa = cl.udhcpc(&a, "").expect("the one address");
    assert_eq!(ipa, "10.73.0.100");
    // Garbage to the server's port does not stop it.
    for junk in ["hello", "\\x01\\x01\\x06\\x00", &"A".repeat(600)] {
        a.exec(&format!(
            "bash -c 'printf \"{junk}\" > /dev/udp/10.73.0.1/67'"
        ));
    }
    // The pool is dry for b: no address, and the log says so.
    assert_eq!(cl.udhcpc(&b, ""), None);
    assert!(
        eventually(Duration::from_secs(3), || d
            .log()
            .contains("pool exhausted")),
        "{}",
        d.log()
    );
    // a still renews: the server is alive after the garbage.
    assert_eq!(
        cl.udhcpc(&a, &format!("-r {ipa}")).as_deref(),
        Some("10.73.0.100")
    );
    // Settings refused before anything changes, naming file, line and field.
    let bad = d.dir.join("bad.toml");
    for (body, says) in [
        (
            "[[bridge]]\nname = \"brx\"\naddresses = [\"10.74.0.1/24\"]\n[bridge.dhcp]\nrange = \"10.75.0.10-10.75.0.20\"\n",
            "bridge[0].dhcp.range",
        ),
        (
            "[[bridge]]\nname = \"brx\"\naddresses = [\"10.74.0.1/24\"]\n[bridge.dhcp]\nrange = \"10.74.0.1-10.74.0.20\"\n",
            "gateway",
        ),
        (
            "[[bridge]]\nname = \"brx\"\naddresses = [\"10.74.0.1/24\"]\n[bridge.dhcp]\nrange = \"10.74.0.10-10.74.0.20\"\nstatic = [{ mac = \"02:00:00:00:00:01\", ip = \"10.74.0.15\" }]\n",
            "overlaps the static lease",
        ),
        (
            "[[bridge]]\nname = \"brx\"\n[[namespace]]\nname = \"nsx\"\nbridge = \"brx\"\ndhcp = true\n",
            "has no DHCP server",
        ),
        (
            "[[bridge]]\nname = \"brx\"\naddresses = [\"10.74.0.1/24\"]\n[bridge.dhcp]\nrange = \"10.74.0.10-10.74.0.20\"\nleases = 5\n",
            "unknown field",
        ),
    ] {
        std::fs::write(&bad, body).unwrap();
        let o = d.vbr(&format!("up {}", bad.display()));
        assert_eq!(o.status.code(), Some(2), "{body}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("bad.toml:") && e.contains(says), "{body}: {e}");
    }
    assert!(d.vbr("show brx").status.code() == Some(1), "nothing made");
    // --dhcp on a bridge without a server.
    d.ok("addbr brn");
    let c = Netns::new("c");
    let o = d.vbr(&format!("connect {} brn --dhcp", c.name));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no DHCP server"));
    d.ok(&format!("down {}", topo.display()));
}
