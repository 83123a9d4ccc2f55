//! Kernel parameters under `/proc/sys`: reading and writing. (What vbridge changes is
//! recorded in the [`crate::ledger`] first, which puts the old value back.)
//!
//! Names are given as `sysctl(8)` does: `net.ipv4.ip_forward`, or with
//! slashes (`net/ipv4/conf/eth0.10/forwarding`) when a component holds a dot.
//! The `net.*` entries belong to the network namespace of the thread that
//! opens them.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::PathBuf,
};

use crate::HostError;

/// The file behind a sysctl name.
pub fn path(name: &str) -> Result<PathBuf, HostError> {
    let relative = if name.contains('/') {
        name.trim_start_matches('/').to_owned()
    } else {
        name.replace('.', "/")
    };
    let bad = relative.is_empty()
        || relative
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(HostError::invalid("sysctl name", name, "not a sysctl path"));
    }
    Ok(PathBuf::from("/proc/sys").join(relative))
}

fn object(name: &str) -> String {
    format!("sysctl {name}")
}

/// Reads the value of `name`, without the trailing newline.
pub fn get(name: &str) -> Result<String, HostError> {
    let file = File::open(path(name)?).map_err(|e| HostError::io("read", object(name), e))?;
    read_value(&file).map_err(|e| HostError::io("read", object(name), e))
}

/// Writes `value` to `name`.
pub fn set(name: &str, value: &str) -> Result<(), HostError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path(name)?)
        .map_err(|e| HostError::io("write", object(name), e))?;
    write_value(&file, value).map_err(|e| HostError::io("write", object(name), e))
}

fn read_value(file: &File) -> io::Result<String> {
    let mut buf = vec![0; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let n = file.read_at(&mut buf[len..], len as u64)?;
        if n == 0 {
            break;
        }
        len += n;
    }
    buf.truncate(len);
    let text = String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(text.trim_end_matches('\n').to_owned())
}

/// Writes at offset 0: the kernel parses a sysctl write from the start of
/// the file only.
fn write_value(file: &File, value: &str) -> io::Result<()> {
    let line = format!("{value}\n");
    let n = file.write_at(line.as_bytes(), 0)?;
    if n != line.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short sysctl write",
        ));
    }
    Ok(())
}
