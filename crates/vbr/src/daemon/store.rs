//! Persisted state on disk, in a directory only root can read (0700, files 0600): the
//! configuration as one JSON file written atomically (temporary file, fsync, rename,
//! fsync of the directory), so a crash at any moment leaves either the old or the new
//! file, never a torn one; checked completely when it is read (a value that parses but
//! is invalid stops the start, naming the file, the field and the reason, and nothing is
//! rewritten); and the lock that keeps a second daemon off the same state.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use vbridge_datapath::Config;

/// What each `vbr up` of an older version made, by topology name.
pub(crate) type OldTopologies = std::collections::BTreeMap<String, super::up::OldMade>;

/// Where the configuration lives.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    /// The lock on the directory, held for the daemon's life.
    _lock: nix::fcntl::Flock<File>,
}

impl Store {
    /// The state directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (or makes) the state directory and locks it for this daemon, whose socket is
    /// `socket`. Another daemon holding it is named in the error.
    pub(crate) fn open(dir: &Path, socket: &Path) -> Result<Store> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        // Made by an older version with 0755: the state is root's alone.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut lock = match nix::fcntl::Flock::lock(
            file,
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        ) {
            Ok(l) => l,
            Err((mut f, _)) => {
                let mut holder = String::new();
                let _ = f.read_to_string(&mut holder);
                let holder = holder.trim();
                bail!(
                    "another vbr daemon uses state directory {} ({}); stop it first, or give this one its own --state-dir",
                    dir.display(),
                    if holder.is_empty() {
                        "its pid is not recorded".to_owned()
                    } else {
                        crate::names::escape_text(holder)
                    }
                );
            }
        };
        lock.set_len(0)?;
        lock.rewind()?;
        writeln!(
            lock,
            "pid {}, socket {}",
            std::process::id(),
            socket.display()
        )?;
        Ok(Store {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The saved configuration, checked; empty when there is none yet.
    pub(crate) fn load(&self) -> Result<Config> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => parse_config(&bytes).map_err(|e| {
                anyhow!(
                    "{}: {e} (fix the file, or move it away to start with an empty configuration; it was not changed)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Replaces the saved configuration atomically.
    pub(crate) fn save(&self, config: &Config) -> Result<()> {
        self.write("config.json", config)
    }

    /// Copies the configuration file aside (`config.json.<unix time>.bak`); the copy's path.
    pub(crate) fn keep_copy(&self) -> Result<PathBuf> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let copy = self.dir.join(format!("config.json.{secs}.bak"));
        fs::copy(self.path(), &copy).with_context(|| format!("copying to {}", copy.display()))?;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o600))?;
        Ok(copy)
    }

    /// The ledger of what vbridge made on the host (`ledger.jsonl`).
    pub(crate) fn ledger(&self) -> Result<vbridge_host::ledger::Ledger> {
        vbridge_host::ledger::Ledger::open(&self.dir.join("ledger.jsonl"))
            .context("opening the ledger")
    }

    /// The record of `vbr up` an older version kept in `topologies.json`, if there is one;
    /// the file is renamed aside (`.migrated`) once read.
    pub(crate) fn take_topologies(&self) -> Result<Option<OldTopologies>> {
        let path = self.dir.join("topologies.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let old: OldTopologies = serde_path_to_error::deserialize(de).map_err(|e| {
            anyhow!(
                "{}: {}: {} (fix or remove it)",
                path.display(),
                e.path(),
                e.inner()
            )
        })?;
        fs::rename(&path, self.dir.join("topologies.json.migrated"))?;
        Ok(Some(old))
    }

    /// Writes `value` as JSON to `name` in the state directory, atomically, mode 0600.
    fn write(&self, name: &str, value: &impl serde::Serialize) -> Result<()> {
        let path = self.dir.join(name);
        write_json(&self.dir, &path, value).with_context(|| format!("writing {}", path.display()))
    }
}

/// A configuration file's content, typed and checked: the first problem names its field
/// (`bridges.br0.ports[1].vlan.vid: VLAN id 5000 is invalid ...`).
pub(crate) fn parse_config(bytes: &[u8]) -> Result<Config, String> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    config.check().map_err(|p| p.to_string())?;
    Ok(config)
}

/// Writes `value` as JSON to `file` in `dir` (made private, 0700, if missing),
/// atomically, mode 0600.
pub(crate) fn write_json(
    dir: &Path,
    file: &Path,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut body = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    body.push(b'\n');
    vbridge_host::ledger::write_atomically(file, &body)
}

/// The `NAME.json` files of `dir` read as `T`, by `NAME` (a file that cannot be read or
/// parsed gives its error, naming the file); none when `dir` does not exist.
pub(crate) fn json_files<T: serde::de::DeserializeOwned>(
    dir: &Path,
) -> Vec<(String, Result<T, String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .map(str::to_owned)
        else {
            continue;
        };
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<T>(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", path.display()));
        out.push((name, parsed));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::parse_config;

    #[test]
    fn invalid_values_are_refused_with_their_field() {
        let good = r#"{"bridges":{"br0":{"mac":"02:00:00:00:00:01","mac_fixed":false,
            "ageing_secs":300.0,"stp":{"mode":"off","priority":32768,"hello_time":2.0,
            "max_age":20.0,"forward_delay":15.0},"ports":[{"name":"p1","kind":"interface",
            "port_no":2,"flags":{},"vlan":{"mode":"access","vid":10},"max_learned":0}],
            "static_fdb":[{"mac":"02:00:00:00:00:09","port":"p1","vlan":10}]}}}"#;
        parse_config(good.as_bytes()).unwrap();
        for (from, to, field) in [
            ("\"02:00:00:00:00:01\"", "\"zz:00\"", "bridges.br0.mac"),
            ("300.0", "-1.0", "bridges.br0.ageing_secs"),
            ("\"vid\":10", "\"vid\":5000", "bridges.br0.ports[0].vlan"),
            (
                "\"vlan\":10}",
                "\"vlan\":5000}",
                "bridges.br0.static_fdb[0].vlan",
            ),
            (
                "\"name\":\"p1\"",
                "\"name\":\"p\\u001b[2J\"",
                "bridges.br0.ports[0].name",
            ),
            (
                "\"port\":\"p1\"",
                "\"port\":\"p9\"",
                "bridges.br0.static_fdb[0].port",
            ),
            (
                "\"port_no\":2",
                "\"port_no\":0",
                "bridges.br0.ports[0].port_no",
            ),
            (
                "\"forward_delay\":15.0",
                "\"forward_delay\":99.0",
                "bridges.br0.stp",
            ),
        ] {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good, "{from}");
            let e = parse_config(bad.as_bytes()).unwrap_err();
            assert!(e.starts_with(field), "{to}: {e}");
        }
    }
}
