//! `vbr-cni` driven exactly as the CNI spec describes (`CNI_*` variables and the network
//! configuration on stdin) against a daemon in a throw-away host namespace, with the
//! reference `host-local` IPAM plugin: VERSION, ADD (two containers that reach each
//! other and the gateway), CHECK (and CHECK after a manual breakage), DEL twice, DEL of
//! a container whose namespace is gone, STATUS, GC; bad input answered with the spec's
//! error JSON and nothing left half-made.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

const CNI_PATH: &str = "/usr/lib/cni";

fn cni_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vbr-cni")
}

/// One plugin run in `host`'s namespace: its exit status and stdout as JSON.
fn cni(host: &Netns, cmd: &str, env: &[(&str, &str)], stdin: &str) -> (bool, Value) {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{}", host.name))
        .arg(cni_bin())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", cmd)
        .env("CNI_PATH", CNI_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("vbr-cni runs");
    // VERSION need not read it: a closed pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    if !out.status.success() {
        eprintln!(
            "vbr-cni {cmd}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.success(), v)
}

/// A network configuration on the daemon's socket with host-local IPAM.
fn config(d: &Daemon, bridge: &str, subnet: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": format!("net-{bridge}"),
        "type": "vbridge",
        "bridge": bridge,
        "isGateway": true,
        "isDefaultGateway": true,
        "ipMasq": true,
        "mtu": 1400,
        "socket": d.socket,
        "vbr": vbr_bin(),
        "ipam": {
            "type": "host-local",
            "subnet": subnet,
            "dataDir": d.dir.join("ipam"),
        },
    })
}

fn attach(c: &Netns, id: &str, ifname: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_CONTAINERID", id.to_owned()),
        ("CNI_NETNS", format!("/run/netns/{}", c.name)),
        ("CNI_IFNAME", ifname.to_owned()),
    ]
}

fn env<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn ports(d: &Daemon, bridge: &str) -> Vec<String> {
    d.json(&format!("show {bridge}"))[0]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, nftables"
)]
fn the_plugin_follows_the_spec() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let br = uniq("cb");
    let conf = config(&d, &br, "10.89.0.0/24");
    let text = conf.to_string();

    let (ok_, v) = cni(&host, "VERSION", &[], &text);
    assert!(ok_);
    let versions = v["supportedVersions"].to_string();
    for want in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(versions.contains(want), "{v}");
    }

    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let a1 = attach(&c1, "cid-one", "eth0");
    let (ok_, r1) = cni(&host, "ADD", &env(&a1), &text);
    assert!(ok_, "{r1}");
    assert_eq!(r1["cniVersion"], "1.0.0");
    assert_eq!(r1["interfaces"][1]["name"], "eth0");
    assert_eq!(
        r1["interfaces"][1]["sandbox"],
        format!("/run/netns/{}", c1.name)
    );
    // The interfaces as the kernel has them (the plugin answers without asking it).
    let link_of = |ns: &Netns, dev: &str| {
        let l = ns.ok(&format!("ip -o link show {dev}"));
        let word_after = |key: &str| {
            let rest = l.split(key).nth(1).unwrap();
            rest.split(' ').next().unwrap().to_owned()
        };
        (word_after("link/ether "), word_after(" mtu "))
    };
    let host_end = r1["interfaces"][0]["name"].as_str().unwrap();
    for (i, (ns, dev)) in [(&host, host_end), (&c1, "eth0")].into_iter().enumerate() {
        let (mac, mtu) = link_of(ns, dev);
        assert_eq!(mtu, "1400", "the configuration's mtu on both ends");
        assert_eq!(r1["interfaces"][i]["mac"], mac.as_str(), "{r1}");
        assert_eq!(r1["interfaces"][i]["mtu"].to_string(), mtu, "{r1}");
    }
    assert_eq!(r1["ips"][0]["gateway"], "10.89.0.1");
    assert_eq!(r1["ips"][0]["interface"], 1);
    let ip1 = r1["ips"][0]["address"].as_str().unwrap().to_owned();
    assert!(ip1.starts_with("10.89.0."), "{ip1}");
    assert!(
        host.ok(&format!("ip -4 -o addr show {br}"))
            .contains("10.89.0.1/24"),
        "the bridge is the gateway"
    );
    let a2 = attach(&c2, "cid-two", "eth0");
    let (ok_, r2) = cni(&host, "ADD", &env(&a2), &text);
    assert!(ok_, "{r2}");
    let ip2 = r2["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(c1.reaches("10.89.0.1"), "the gateway");
    assert!(c1.reaches(&ip2), "the other container");
    assert!(c1.ok("ip route").contains("default via 10.89.0.1"));
    assert!(
        host.ok("nft list tables")
            .contains(&format!("vbridge_{br}")),
        "ipMasq"
    );

    // CHECK with the ADD result, then after a manual breakage.
    let mut checked = conf.clone();
    checked["prevResult"] = r1.clone();
    let (ok_, v) = cni(&host, "CHECK", &env(&a1), &checked.to_string());
    assert!(ok_, "{v}");
    c1.ok("ip addr flush dev eth0");
    let (ok_, v) = cni(&host, "CHECK", &env(&a1), &checked.to_string());
    assert!(!ok_ && v["code"].as_u64().is_some_and(|c| c >= 100), "{v}");
    assert!(
        v["details"].as_str().unwrap_or_default().contains("lacks"),
        "{v}"
    );
    let (ok_, v) = cni(&host, "CHECK", &env(&a1), &text);
    assert!(!ok_ && v["code"] == 7, "CHECK without prevResult: {v}");

    // DEL, and DEL again.
    let port1 = r1["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert!(ports(&d, &br).contains(&port1));
    for _ in 0..2 {
        let (ok_, v) = cni(&host, "DEL", &env(&a1), &text);
        assert!(ok_, "{v}");
        assert_eq!(v, Value::Null, "DEL prints nothing");
    }
    assert!(!ports(&d, &br).contains(&port1), "its port went");
    assert!(!host.exec(&format!("ip link show {port1}")).status.success());
    // DEL of a container whose namespace is gone already.
    let gone = c2.name.clone();
    drop(c2);
    assert!(!std::path::Path::new(&format!("/run/netns/{gone}")).exists());
    let (ok_, v) = cni(&host, "DEL", &env(&a2), &text);
    assert!(ok_, "{v}");
    assert_eq!(ports(&d, &br).len(), 1, "only the host port is left");

    // STATUS, and GC of an attachment the runtime no longer knows.
    let mut v11 = conf.clone();
    v11["cniVersion"] = json!("1.1.0");
    let (ok_, v) = cni(&host, "STATUS", &[], &v11.to_string());
    assert!(ok_, "{v}");
    let c3 = Netns::new("c");
    let a3 = attach(&c3, "cid-three", "eth0");
    assert!(cni(&host, "ADD", &env(&a3), &text).0);
    let mut gc = v11.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    let (ok_, v) = cni(&host, "GC", &[], &gc.to_string());
    assert!(ok_, "{v}");
    assert_eq!(ports(&d, &br).len(), 1, "GC took the stale attachment away");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, nftables"
)]
fn bad_input_gets_the_spec_error_and_leaves_nothing() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let br = uniq("cb");
    let conf = config(&d, &br, "10.90.0.0/30");
    let text = conf.to_string();
    let c = Netns::new("c");
    let a = attach(&c, "cid-bad", "eth0");
    let code = |v: &Value| v["code"].as_u64().unwrap_or(0);

    let (ok_, v) = cni(&host, "ADD", &env(&a), "{not json");
    assert!(!ok_ && code(&v) == 6, "malformed configuration: {v}");
    let mut wrong = conf.clone();
    wrong["bridge"] = json!("no/such/bridge");
    let (ok_, v) = cni(&host, "ADD", &env(&a), &wrong.to_string());
    assert!(!ok_ && code(&v) == 7, "a bad bridge name: {v}");
    let (ok_, v) = cni(
        &host,
        "ADD",
        &env(&[
            ("CNI_CONTAINERID", "cid-x".into()),
            ("CNI_NETNS", "/run/netns/no-such-namespace".into()),
            ("CNI_IFNAME", "eth0".into()),
        ]),
        &text,
    );
    assert!(!ok_ && code(&v) > 0, "a namespace that vanished: {v}");
    assert!(v.to_string().contains("no-such-namespace"), "{v}");
    let taken = attach(&c, "cid-lo", "lo");
    let (ok_, v) = cni(&host, "ADD", &env(&taken), &text);
    assert!(!ok_ && code(&v) >= 100, "CNI_IFNAME taken: {v}");
    assert!(
        v["details"]
            .as_str()
            .unwrap_or_default()
            .contains("lo exists"),
        "{v}"
    );
    let mut no_ipam = conf.clone();
    no_ipam["ipam"]["type"] = json!("no-such-ipam");
    let (ok_, v) = cni(&host, "ADD", &env(&a), &no_ipam.to_string());
    assert!(
        !ok_ && code(&v) == 7 && v.to_string().contains("no plugin no-such-ipam"),
        "an IPAM plugin that is not there: {v}"
    );

    // A /30 has one address for containers: the second ADD fails in IPAM, and the
    // first is untouched.
    let (ok_, v) = cni(&host, "ADD", &env(&a), &text);
    assert!(ok_, "{v}");
    let before = ports(&d, &br);
    let c2 = Netns::new("c");
    let a2 = attach(&c2, "cid-full", "eth0");
    let (ok_, v) = cni(&host, "ADD", &env(&a2), &text);
    assert!(!ok_ && code(&v) > 0, "IPAM failure: {v}");
    assert_eq!(ports(&d, &br), before, "nothing left of the failed ADD");
    assert!(!c2.ok("ip -o link").contains("eth0"));
    assert!(cni(&host, "DEL", &env(&a), &text).0);
}
