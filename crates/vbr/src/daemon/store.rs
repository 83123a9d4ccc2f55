//! Persisted configuration on disk: one JSON file written atomically (temporary file,
//! fsync, rename, fsync of the directory), so a crash at any moment leaves either the old
//! or the new configuration, never a torn one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use vbridge_datapath::Config;

use super::wiring::Made;

/// What each `vbr up` made, by topology name (a file path, or "default").
pub(crate) type Topologies = std::collections::BTreeMap<String, Made>;

/// Where the configuration lives.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(crate) fn new(dir: &Path) -> Result<Store> {
        fs::create_dir_all(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        Ok(Store {
            dir: dir.to_owned(),
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The saved configuration; empty when there is none yet.
    pub(crate) fn load(&self) -> Result<Config> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {} (fix or remove it)", path.display())),
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
        Ok(copy)
    }

    /// What each `vbr up` made, by topology name.
    pub(crate) fn load_topologies(&self) -> Result<Topologies> {
        let path = self.dir.join("topologies.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {} (fix or remove it)", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Topologies::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Replaces the record of what `vbr up` made.
    pub(crate) fn save_topologies(&self, t: &Topologies) -> Result<()> {
        self.write("topologies.json", t)
    }

    /// Writes `value` as JSON to `name` in the state directory, atomically.
    fn write(&self, name: &str, value: &impl serde::Serialize) -> Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let body = serde_json::to_vec_pretty(value)?;
        let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}
