//! Network namespaces: named ones under `/run/netns` made and removed exactly
//! as `ip netns add` / `ip netns del` do (so `ip netns exec` works on them),
//! opening a namespace by name or path, and running a closure inside one on a
//! thread of its own.
//!
//! A network namespace belongs to a thread, not to the process: [`run_in`]
//! never changes the caller's thread, it spawns a scoped thread that enters
//! the namespace, runs the closure and ends.

use std::{
    fs::{self, OpenOptions},
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::fs::{DirBuilderExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    thread,
};

use nix::{
    errno::Errno,
    mount::{MntFlags, MsFlags},
    sched::CloneFlags,
};

use crate::{HostError, name};

/// Where named network namespaces are bind-mounted (iproute2's `NETNS_RUN_DIR`).
pub const RUN_DIR: &str = "/run/netns";

/// The calling thread's own network namespace.
const THREAD_SELF: &str = "/proc/thread-self/ns/net";

/// The path of the named namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

fn object(name: &str) -> String {
    format!("namespace {name:?}")
}

/// Creates the named network namespace `name`: a new namespace bind-mounted
/// at `/run/netns/NAME`, with `/run/netns` made a shared mount point first,
/// as `ip netns add NAME` does.
///
/// Fails with [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists)
/// when the name is taken.
pub fn add(name: &str) -> Result<(), HostError> {
    name::check_netns(name)?;
    prepare_run_dir()?;
    let target = path(name);
    // The file to mount on; O_EXCL makes an existing name an error.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&target)
        .map_err(|e| HostError::io("create", object(name), e))?;
    let mounted = on_new_thread("create", object(name), || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
            HostError::from_errno("unshare a network namespace for", object(name), e)
        })?;
        nix::mount::mount(
            Some(THREAD_SELF),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| HostError::from_errno("bind-mount", object(name), e))
    });
    if mounted.is_err() {
        let _ = fs::remove_file(&target);
    }
    mounted
}

/// Makes `/run/netns` exist and be a shared mount point, so that namespace
/// mounts made under it propagate to every mount namespace that sees it
/// (iproute2 does the same, bind-mounting the directory on itself when it is
/// not yet a mount point).
fn prepare_run_dir() -> Result<(), HostError> {
    let dir = "directory /run/netns";
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(RUN_DIR)
        .map_err(|e| HostError::io("create", dir, e))?;
    let share = || {
        nix::mount::mount(
            None::<&str>,
            RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match share() {
        Ok(()) => Ok(()),
        // Not a mount point yet: make it one, then share it.
        Err(Errno::EINVAL) => {
            nix::mount::mount(
                Some(RUN_DIR),
                RUN_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| HostError::from_errno("bind-mount on itself", dir, e))?;
            share().map_err(|e| HostError::from_errno("make shared", dir, e))
        }
        Err(e) => Err(HostError::from_errno("make shared", dir, e)),
    }
}

/// Deletes the named namespace `name` (unmount and remove its file), as
/// `ip netns del` does. The namespace itself lives on while a process, an
/// open descriptor or another mount still holds it.
pub fn del(name: &str) -> Result<(), HostError> {
    name::check_netns(name)?;
    let target = path(name);
    fs::symlink_metadata(&target).map_err(|e| HostError::io("delete", object(name), e))?;
    match nix::mount::umount2(&target, MntFlags::MNT_DETACH) {
        // EINVAL: not mounted (a half-made namespace); just remove the file.
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(e) => return Err(HostError::from_errno("unmount", object(name), e)),
    }
    fs::remove_file(&target).map_err(|e| HostError::io("delete", object(name), e))
}

/// The names under `/run/netns`, sorted; empty when the directory is missing.
pub fn list() -> Result<Vec<String>, HostError> {
    let entries = match fs::read_dir(RUN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HostError::io("list", "directory /run/netns", e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| HostError::io("list", "directory /run/netns", e))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Whether `/run/netns/NAME` exists.
pub fn exists(name: &str) -> bool {
    name::check_netns(name).is_ok() && fs::symlink_metadata(path(name)).is_ok()
}

/// Checks a name for a namespace under `/run/netns` with `ip netns`'s rule: not empty,
/// at most 255 bytes, not `.` or `..`, no `/` or NUL.
pub fn check_name(name: &str) -> Result<(), HostError> {
    name::check_netns(name)
}

/// Opens a network namespace: `spec` is a name under `/run/netns`, or, when
/// it contains a `/`, a path such as `/proc/PID/ns/net`.
pub fn open(spec: &str) -> Result<OwnedFd, HostError> {
    let target = if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        name::check_netns(spec)?;
        path(spec)
    };
    open_path(&target, &format!("namespace {spec:?}"))
}

/// The calling thread's own network namespace.
pub fn current() -> Result<OwnedFd, HostError> {
    open_path(Path::new(THREAD_SELF), "the current network namespace")
}

fn open_path(target: &Path, what: &str) -> Result<OwnedFd, HostError> {
    let not_netns = || {
        HostError::invalid(
            "network namespace",
            target.display().to_string(),
            "not a network namespace (give a name under /run/netns or a path like /proc/PID/ns/net)",
        )
    };
    // Namespace files are regular files: never open anything else (opening a device can
    // do something by itself). Non-blocking all the same, should it change meanwhile.
    if !fs::metadata(target)
        .map_err(|e| HostError::io("open", what, e))?
        .is_file()
    {
        return Err(not_netns());
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY).bits())
        .open(target)
        .map_err(|e| HostError::io("open", what, e))?;
    let fd = OwnedFd::from(file);
    let fs =
        nix::sys::statfs::fstatfs(&fd).map_err(|e| HostError::from_errno("inspect", what, e))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(not_netns());
    }
    // A namespace file opened directly (not through a bind mount like /run/netns/NAME)
    // reads back as "TYPE:[INODE]": refuse the other types by name. (A bind mount of
    // another type reads back as its path; entering it then fails with EINVAL.)
    let link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| HostError::io("inspect", what, e))?;
    let link = link.to_string_lossy();
    if link.ends_with(']') && link.contains(":[") && !link.starts_with("net:[") {
        return Err(not_netns());
    }
    Ok(fd)
}

/// Runs `f` inside the network namespace `ns`, on a fresh thread that enters
/// it first; the caller's thread stays where it is. Sockets that `f` opens
/// (a [`Netlink`](crate::Netlink), say) belong to `ns` for good, whichever
/// thread uses them later. A panic in `f` is resumed in the caller.
pub fn run_in<T, F>(ns: impl AsFd, f: F) -> Result<T, HostError>
where
    T: Send,
    F: FnOnce() -> Result<T, HostError> + Send,
{
    let fd: BorrowedFd<'_> = ns.as_fd();
    on_new_thread("enter", "network namespace".into(), || {
        nix::sched::setns(fd, CloneFlags::CLONE_NEWNET)
            .map_err(|e| HostError::from_errno("enter", "network namespace", e))?;
        f()
    })
}

/// Runs `f` on a scoped thread and returns its result; `action` and `object`
/// only label a failure to spawn it.
fn on_new_thread<T, F>(action: &'static str, object: String, f: F) -> Result<T, HostError>
where
    T: Send,
    F: FnOnce() -> Result<T, HostError> + Send,
{
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("vbridge-netns".into())
            .spawn_scoped(scope, f)
            .map_err(|e| HostError::io(action, object, e))?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
