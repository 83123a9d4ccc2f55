//! [`Ledger`]: the record of everything vbridge made or changed on the host, written
//! *before* the change (write-ahead), so that whatever happens next, a crash at any point
//! included, the next start or `vbr down` removes or restores exactly that and nothing
//! else. Every netdev, namespace, nftables table, address and sysctl vbridge touches is
//! an [`Object`] with an [`Owner`] (a bridge, a port, or a topology run); netdevs carry
//! their index and namespace, so a device of the same name made by someone else later is
//! never taken for ours.
//!
//! On disk it is a journal of JSON lines (`put`, `forget`, `commit`) appended without
//! fsync: a killed process loses nothing (the page cache keeps what was written), and a
//! rebooted host has no netdevs or namespaces left to clean up. It is compacted when
//! opened. [`undo`] takes one host object away again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{ErrorKind, HostError, Netlink, nat, netns, sysctl};

/// What vbridge made or changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Object {
    /// A netdev, in the daemon's namespace (`netns` `None`) or in the namespace named or
    /// at the path `netns`.
    Netdev { name: String, netns: Option<String> },
    /// A named network namespace under /run/netns.
    Netns { name: String },
    /// A sysctl of the daemon's namespace, by path under /proc/sys.
    Sysctl { path: String },
    /// The NAT table of a bridge (`ip vbridge_<bridge>`).
    NftTable { bridge: String },
    /// An address on a netdev of the daemon's namespace.
    Address { dev: String, net: IpNet },
    /// A bridge of vbridge's own (made by a topology).
    Bridge { name: String },
    /// A port of vbridge's own (attached or connected by a topology).
    Port { bridge: String, port: String },
    /// The DHCP server of a bridge (vbridge's own, set up by a topology).
    Dhcp { bridge: String },
}

/// Who an object belongs to: it goes when its owner goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "owner", rename_all = "snake_case", deny_unknown_fields)]
pub enum Owner {
    /// A bridge (its host interface).
    Bridge { name: String },
    /// A port (a connection's TAP or veth pair, an attached interface's sysctls).
    Port { bridge: String, port: String },
    /// A topology brought up with `vbr up`. `run` is `Some` while the `up` that made the
    /// object has not finished: such objects are removed again if it fails or the daemon
    /// dies before it ends.
    Topology { name: String, run: Option<u64> },
    /// An interface vbridge put into a namespace outside any bridge (`vbr connect
    /// --macvlan`): it goes with `vbr disconnect --macvlan`.
    Attachment { netns: String, ifname: String },
}

/// One object as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Order of recording; undo goes newest first.
    pub seq: u64,
    pub owner: Owner,
    pub object: Object,
    /// A netdev's index, once made (`None`: the change may not have happened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// A sysctl's value before vbridge changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

/// One journal line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Put(Record),
    Forget {
        object: Object,
    },
    /// A topology run finished: its objects belong to the topology from now on.
    Commit {
        name: String,
        run: u64,
    },
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    live: BTreeMap<Object, Record>,
    next_seq: u64,
    /// Lines in the file, to compact when they outnumber the live records by far.
    lines: usize,
}

/// The journal of what vbridge made, shared by every thread of the daemon.
#[derive(Debug)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

fn io_err(what: &'static str, path: &Path, e: std::io::Error) -> HostError {
    HostError::io(what, format!("ledger {}", path.display()), e)
}

impl Inner {
    fn append(&mut self, line: &Line) -> Result<(), HostError> {
        let mut text = serde_json::to_vec(line).map_err(|e| {
            HostError::io(
                "encode",
                "ledger entry",
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        text.push(b'\n');
        let path = self.path.clone();
        self.file
            .write_all(&text)
            .map_err(|e| io_err("append to", &path, e))?;
        self.lines += 1;
        if self.lines > 1024 && self.lines > 4 * self.live.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the journal with the live records only (atomically).
    fn compact(&mut self) -> Result<(), HostError> {
        let mut recs: Vec<&Record> = self.live.values().collect();
        recs.sort_by_key(|r| r.seq);
        let mut text = Vec::new();
        for r in &recs {
            text.extend(serde_json::to_vec(&Line::Put((*r).clone())).unwrap_or_default());
            text.push(b'\n');
        }
        write_atomically(&self.path, &text).map_err(|e| io_err("compact", &self.path, e))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io_err("open", &self.path, e))?;
        self.lines = recs.len();
        Ok(())
    }
}

/// Replaces the file at `path` with `bytes` so that a crash at any moment leaves the old
/// or the new content, never a torn one: a temporary file beside it (mode 0600), fsync,
/// rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // An older file of that name may have been made with wider permissions.
    f.set_permissions(
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Ledger {
    /// Opens the journal at `path` (made if missing), reads it and compacts it. A line
    /// that cannot be read (a write cut short by a crash, say) is skipped and said.
    pub fn open(path: &Path) -> Result<Ledger, HostError> {
        let mut live = BTreeMap::new();
        let mut next_seq = 0;
        match File::open(path) {
            Ok(f) => {
                for (n, line) in BufReader::new(f).lines().enumerate() {
                    let line = line.map_err(|e| io_err("read", path, e))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Line>(&line) {
                        Ok(Line::Put(r)) => {
                            next_seq = next_seq.max(r.seq + 1);
                            live.insert(r.object.clone(), r);
                        }
                        Ok(Line::Forget { object }) => {
                            live.remove(&object);
                        }
                        Ok(Line::Commit { name, run }) => commit_in(&mut live, &name, run),
                        Err(e) => {
                            eprintln!(
                                "vbr: {}:{}: skipping an unreadable ledger line ({e})",
                                path.display(),
                                n + 1
                            );
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", path, e)),
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_err("open", path, e))?;
        let mut inner = Inner {
            path: path.to_owned(),
            file,
            live,
            next_seq,
            lines: 0,
        };
        inner.compact()?;
        Ok(Ledger {
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `object` for `owner` before it is made or changed.
    ///
    /// A test hook: with `VBR_CRASH_AT=N` in the environment, the process aborts right
    /// after writing its N-th record (the change it announces not made), as a crash at
    /// that point would leave it. An object recorded
    /// already keeps its owner, order and original value (a port attached again after its
    /// device came back still restores the value from before the first time); the call
    /// then says `false`.
    pub fn put(
        &self,
        owner: Owner,
        object: Object,
        original: Option<String>,
    ) -> Result<bool, HostError> {
        let mut g = self.lock();
        if g.live.contains_key(&object) {
            return Ok(false);
        }
        let r = Record {
            seq: g.next_seq,
            owner,
            object: object.clone(),
            ifindex: None,
            original,
        };
        g.next_seq += 1;
        g.append(&Line::Put(r.clone()))?;
        g.live.insert(object, r);
        crash_point();
        Ok(true)
    }

    /// Notes the index of a netdev recorded with [`Ledger::put`], once it exists.
    pub fn set_ifindex(&self, object: &Object, ifindex: u32) -> Result<(), HostError> {
        let mut g = self.lock();
        let Some(mut r) = g.live.get(object).cloned() else {
            return Ok(());
        };
        r.ifindex = Some(ifindex);
        g.append(&Line::Put(r.clone()))?;
        g.live.insert(object.clone(), r);
        Ok(())
    }

    /// Drops the record of an object that is gone (or was never made).
    pub fn forget(&self, object: &Object) -> Result<(), HostError> {
        let mut g = self.lock();
        if g.live.remove(object).is_some() {
            g.append(&Line::Forget {
                object: object.clone(),
            })?;
        }
        Ok(())
    }

    /// A topology run finished: its objects now belong to the topology.
    pub fn commit(&self, name: &str, run: u64) -> Result<(), HostError> {
        let mut g = self.lock();
        g.append(&Line::Commit {
            name: name.to_owned(),
            run,
        })?;
        commit_in(&mut g.live, name, run);
        Ok(())
    }

    /// The record of `object`, if any.
    pub fn get(&self, object: &Object) -> Option<Record> {
        self.lock().live.get(object).cloned()
    }

    /// Every record, oldest first.
    pub fn records(&self) -> Vec<Record> {
        let mut v: Vec<Record> = self.lock().live.values().cloned().collect();
        v.sort_by_key(|r| r.seq);
        v
    }

    /// The records of `owner`, newest first (the order to undo them in).
    pub fn owned_by(&self, owner: &Owner) -> Vec<Record> {
        let mut v: Vec<Record> = self
            .lock()
            .live
            .values()
            .filter(|r| &r.owner == owner)
            .cloned()
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.seq));
        v
    }

    /// A number for a new topology run, not used before.
    pub fn new_run(&self) -> u64 {
        let mut g = self.lock();
        g.next_seq += 1;
        g.next_seq
    }
}

/// Aborts the process at the `VBR_CRASH_AT`-th record (see [`Ledger::put`]).
fn crash_point() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let at = *AT.get_or_init(|| {
        std::env::var("VBR_CRASH_AT")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(at) = at {
        if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == at {
            eprintln!("vbr: VBR_CRASH_AT={at}: aborting after ledger record {at}");
            std::process::abort();
        }
    }
}

fn commit_in(live: &mut BTreeMap<Object, Record>, name: &str, run: u64) {
    for r in live.values_mut() {
        if let Owner::Topology {
            name: n,
            run: Some(r2),
        } = &r.owner
        {
            if n == name && *r2 == run {
                r.owner = Owner::Topology {
                    name: name.to_owned(),
                    run: None,
                };
            }
        }
    }
}

/// Whether an error only says the object is not there (any more).
fn gone(e: &HostError) -> bool {
    e.kind() == ErrorKind::NotFound
}

/// Takes one host object of `r` away again: deletes a netdev (only the one recorded:
/// same index), a namespace, a NAT table or an address, or puts a sysctl's original value
/// back. Objects already gone are fine. [`Object::Bridge`], [`Object::Port`] and
/// [`Object::Dhcp`] are vbridge's own and left to the caller (this returns `Ok(false)`
/// for them).
pub fn undo(r: &Record) -> Result<bool, HostError> {
    let done = match &r.object {
        Object::Netdev { name, netns } => {
            let mut nl = match netns {
                None => Netlink::new()?,
                Some(ns) => match netns::open(ns) {
                    Ok(fd) => Netlink::new_in(&fd)?,
                    Err(e) if gone(&e) => return Ok(true),
                    Err(e) => return Err(e),
                },
            };
            match (nl.link(name)?, r.ifindex) {
                (Some(l), Some(i)) if l.index == i => match nl.delete_link(name) {
                    Ok(()) => {}
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(e),
                },
                // Not made, gone, or someone else's now: nothing of ours to delete.
                _ => {}
            }
            true
        }
        Object::Netns { name } => {
            if netns::exists(name) {
                match netns::del(name) {
                    Ok(()) => {}
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            true
        }
        Object::Sysctl { path } => {
            if let Some(old) = &r.original {
                match sysctl::set(path, old) {
                    Ok(()) => {}
                    // The device behind a per-device sysctl is gone: nothing to restore.
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            true
        }
        Object::NftTable { bridge } => {
            nat::remove(bridge)?;
            true
        }
        Object::Address { dev, net } => {
            let mut nl = Netlink::new()?;
            match nl.del_address(dev, net.addr(), net.prefix_len()) {
                Ok(()) => {}
                Err(e) if gone(&e) || e.kind() == ErrorKind::Other => {}
                Err(e) => return Err(e),
            }
            true
        }
        Object::Bridge { .. } | Object::Port { .. } | Object::Dhcp { .. } => false,
    };
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger path in a directory of its own, removed with the returned guard.
    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::Builder::new()
            .prefix("vbr-ledger-")
            .tempdir()
            .unwrap();
        let path = d.path().join("ledger.jsonl");
        (d, path)
    }

    #[test]
    fn records_survive_reopening_and_keep_their_first_original() {
        let (_dir, path) = tmp();
        let owner = Owner::Port {
            bridge: "br0".into(),
            port: "p1".into(),
        };
        let s = Object::Sysctl {
            path: "net/ipv4/conf/p1/arp_ignore".into(),
        };
        let d = Object::Netdev {
            name: "p1".into(),
            netns: None,
        };
        {
            let l = Ledger::open(&path).unwrap();
            assert!(l.put(owner.clone(), s.clone(), Some("0".into())).unwrap());
            // Attached again: our own value must not become the original.
            assert!(!l.put(owner.clone(), s.clone(), Some("8".into())).unwrap());
            l.put(owner.clone(), d.clone(), None).unwrap();
            l.set_ifindex(&d, 7).unwrap();
        }
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.get(&s).unwrap().original.as_deref(), Some("0"));
        assert_eq!(l.get(&d).unwrap().ifindex, Some(7));
        let mine = l.owned_by(&owner);
        assert_eq!(mine.len(), 2);
        assert_eq!(mine[0].object, d, "newest first");
        l.forget(&d).unwrap();
        drop(l);
        let l = Ledger::open(&path).unwrap();
        assert!(l.get(&d).is_none());
        assert!(l.get(&s).is_some());
    }

    #[test]
    fn runs_commit_and_a_torn_last_line_is_skipped() {
        let (_dir, path) = tmp();
        let l = Ledger::open(&path).unwrap();
        let run = l.new_run();
        let a = Object::Netns { name: "a".into() };
        let b = Object::Netns { name: "b".into() };
        let t = |run| Owner::Topology {
            name: "t".into(),
            run,
        };
        l.put(t(Some(run)), a.clone(), None).unwrap();
        l.commit("t", run).unwrap();
        let run2 = l.new_run();
        assert_ne!(run, run2);
        l.put(t(Some(run2)), b.clone(), None).unwrap();
        drop(l);
        // A crash in the middle of a write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"op\":\"put\",\"seq\":9").unwrap();
        drop(f);
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.get(&a).unwrap().owner, t(None));
        assert_eq!(l.get(&b).unwrap().owner, t(Some(run2)), "not committed");
    }
}
