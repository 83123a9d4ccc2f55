//! Delegation to an IPAM plugin (`ipam.type`, e.g. `host-local`), as the CNI spec says:
//! the plugin found in `CNI_PATH`, run with this process's `CNI_*` variables and the
//! network configuration on stdin; its result read whatever its layout version (only
//! `ips`, `routes` and `dns` are used), its error passed on with its code.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::IpNet;
use rscni_plugin::error::Error;
use serde_json::Value;

/// What an IPAM plugin handed out.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Lease {
    /// Addresses and their gateways.
    pub(crate) ips: Vec<(IpNet, Option<IpAddr>)>,
    /// Routes: destination and next hop (none: the gateway of its family).
    pub(crate) routes: Vec<(IpNet, Option<IpAddr>)>,
    pub(crate) dns: Option<Value>,
}

fn find(kind: &str, path: &[PathBuf]) -> Result<PathBuf, Error> {
    if kind.contains('/') || kind.is_empty() {
        return Err(Error::InvalidNetworkConfig(format!(
            "ipam.type {kind:?} is not a plugin name"
        )));
    }
    path.iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::InvalidNetworkConfig(format!(
                "ipam: no plugin {kind} in CNI_PATH ({})",
                path.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ))
        })
}

/// Runs IPAM plugin `kind` with `CNI_COMMAND=command` and `conf` on stdin; its output.
pub(crate) fn exec(
    kind: &str,
    command: &str,
    conf: &[u8],
    path: &[PathBuf],
) -> Result<Option<Value>, Error> {
    exec_with(kind, command, conf, path, &[])
}

/// [`exec`] with more `CNI_*` variables set (for another attachment than this call's).
pub(crate) fn exec_with(
    kind: &str,
    command: &str,
    conf: &[u8],
    path: &[PathBuf],
    env: &[(&str, &str)],
) -> Result<Option<Value>, Error> {
    let bin = find(kind, path)?;
    run(&bin, command, conf, env)
}

/// The CNI versions IPAM plugin `kind` speaks (its VERSION answer), newest last.
pub(crate) fn versions(kind: &str, path: &[PathBuf]) -> Vec<String> {
    let listed = exec(kind, "VERSION", b"{}", path).ok().flatten();
    let mut v: Vec<String> = listed
        .as_ref()
        .and_then(|v| v["supportedVersions"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect();
    let key = |s: &String| -> Vec<u32> { s.split('.').map(|n| n.parse().unwrap_or(0)).collect() };
    v.sort_by_key(key);
    v
}

fn run(
    bin: &Path,
    command: &str,
    conf: &[u8],
    env: &[(&str, &str)],
) -> Result<Option<Value>, Error> {
    let io = |e: std::io::Error| Error::IOFailure(format!("ipam plugin {}: {e}", bin.display()));
    let mut child = Command::new(bin)
        .env("CNI_COMMAND", command)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(io)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(conf).map_err(io)?;
    }
    let out = child.wait_with_output().map_err(io)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value: Option<Value> = if text.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&text).map_err(|e| {
            Error::FailedToDecode(format!("ipam plugin {}: {e}: {text}", bin.display()))
        })?)
    };
    if out.status.success() {
        return Ok(value);
    }
    let v = value.unwrap_or(Value::Null);
    let code = v["code"]
        .as_u64()
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(999);
    let msg = v["msg"].as_str().unwrap_or("failed").to_owned();
    let details = v["details"].as_str().unwrap_or_default().to_owned();
    let name = bin.file_name().unwrap_or_default().to_string_lossy();
    let said = format!("ipam plugin {name}: {msg}");
    Err(match code {
        1 => Error::IncompatibleVersion(format!("{said} {details}")),
        3 => Error::NotExist(format!("{said} {details}")),
        4 => Error::InvalidEnvValue(format!("{said} {details}")),
        6 => Error::FailedToDecode(format!("{said} {details}")),
        7 => Error::InvalidNetworkConfig(format!("{said} {details}")),
        11 => Error::TryAgainLater(format!("{said} {details}")),
        c => Error::Custom(c.max(100), said, details),
    })
}

/// The lease in an IPAM result.
pub(crate) fn lease(v: &Value) -> Result<Lease, Error> {
    let bad = |m: String| Error::FailedToDecode(format!("ipam result: {m}"));
    let ip = |v: &Value, what: &str| -> Result<Option<IpAddr>, Error> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => s
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("{what} {s:?} is not an address"))),
            other => Err(bad(format!("{what} {other} is not an address"))),
        }
    };
    let net = |v: &Value, what: &str| -> Result<IpNet, Error> {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("{what} {v} is not ADDRESS/PREFIX")))
    };
    let mut l = Lease::default();
    for i in v["ips"].as_array().into_iter().flatten() {
        l.ips.push((
            net(&i["address"], "address")?,
            ip(&i["gateway"], "gateway")?,
        ));
    }
    for r in v["routes"].as_array().into_iter().flatten() {
        l.routes
            .push((net(&r["dst"], "route dst")?, ip(&r["gw"], "route gw")?));
    }
    if v["dns"].is_object() {
        l.dns = Some(v["dns"].clone());
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 0.4.0 result (host-local's layout for Podman's configurations) and a 1.0 one.
    #[test]
    fn reads_results_of_any_layout() {
        let old: Value = serde_json::from_str(
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.88.0.5/16","gateway":"10.88.0.1"}],
            "routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#,
        )
        .unwrap();
        let l = lease(&old).unwrap();
        assert_eq!(
            l.ips,
            vec![(
                "10.88.0.5/16".parse().unwrap(),
                Some("10.88.0.1".parse().unwrap())
            )]
        );
        assert_eq!(l.routes, vec![("0.0.0.0/0".parse().unwrap(), None)]);
        let new: Value = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","ips":[{"address":"fd00::5/64"}],"routes":[{"dst":"10.0.0.0/8","gw":"10.88.0.254"}]}"#,
        )
        .unwrap();
        let l = lease(&new).unwrap();
        assert_eq!(l.ips[0].1, None);
        assert_eq!(l.routes[0].1, Some("10.88.0.254".parse().unwrap()));
        let broken: Value = serde_json::from_str(r#"{"ips":[{"address":"10.88.0.5"}]}"#).unwrap();
        assert!(matches!(lease(&broken), Err(Error::FailedToDecode(_))));
    }

    /// A plugin that fails: its code and message come back.
    #[test]
    fn errors_of_the_plugin_are_passed_on() {
        let dir = std::env::temp_dir().join(format!("vbr-ipam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("fake-ipam");
        std::fs::write(
            &bin,
            "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"busy\",\"details\":\"try later\"}'\nexit 1\n",
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&bin)
            .status()
            .unwrap();
        let e = exec("fake-ipam", "ADD", b"{}", std::slice::from_ref(&dir)).unwrap_err();
        assert!(
            matches!(&e, Error::TryAgainLater(m) if m.contains("busy")),
            "{e:?}"
        );
        let e = exec("nothere", "ADD", b"{}", std::slice::from_ref(&dir)).unwrap_err();
        assert!(matches!(&e, Error::InvalidNetworkConfig(m) if m.contains("no plugin nothere")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
