//! Removal of the files the daemon creates (its PID file and socket files) when it exits.
//!
//! Each guard opens the parent directory when the file is created and later unlinks the name
//! relative to that directory, so removal still finds the file after `chroot`. A file that was
//! replaced in the meantime (another inode under the same name) is left alone.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use tracing::{debug, error};

use tlspool_core::logging::TARGET_DAEMON;

/// Unlinks one file when dropped, unless it was replaced.
#[derive(Debug)]
pub(crate) struct RemoveOnDrop {
    directory: OwnedFd,
    name: OsString,
    path: PathBuf,
    identity: (u64, u64),
    what: &'static str,
}

impl RemoveOnDrop {
    /// Remembers the file now at `path`, described as `what` (such as `PID file`) in logs.
    pub(crate) fn new(path: &Path, what: &'static str) -> io::Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
            .to_owned();
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let directory = nix::fcntl::open(parent, flags, Mode::empty())?;
        let identity = file_identity(&directory, &name)?;
        Ok(Self {
            directory,
            name,
            path: path.to_owned(),
            identity,
            what,
        })
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        match file_identity(&self.directory, &self.name) {
            Ok(identity) if identity == self.identity => {}
            Ok(_) => {
                debug!(target: TARGET_DAEMON, path = %self.path.display(), what = self.what,
                    "not removing file that another process replaced");
                return;
            }
            Err(error) => {
                debug!(target: TARGET_DAEMON, path = %self.path.display(), what = self.what,
                    %error, "file already gone at exit");
                return;
            }
        }
        match unlinkat(
            &self.directory,
            self.name.as_os_str(),
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) => debug!(target: TARGET_DAEMON, path = %self.path.display(),
                what = self.what, "removed file"),
            Err(error) => error!(target: TARGET_DAEMON, path = %self.path.display(),
                what = self.what, %error, "removing file at exit failed"),
        }
    }
}

/// Returns the device and inode of `name` in `directory`, without following a symlink.
fn file_identity(directory: &OwnedFd, name: &OsString) -> io::Result<(u64, u64)> {
    let status = fstatat(directory, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    Ok((status.st_dev, status.st_ino))
}
