//! The privilege change after start-up: `daemon_chroot`, then `daemon_group` and
//! `daemon_user`, applied once every socket and the PID file exist, whatever the order of the
//! lines in the file.
//!
//! Names are resolved before `chroot`, because the account database usually lies outside the
//! new root. The order is chroot, setgroups, setgid, setuid, since a process that gave up its
//! user id can no longer change groups. Every failed call stops the start-up, and the ids are
//! read back afterwards.

use std::path::{Path, PathBuf};

use nix::unistd::{
    Gid, Uid, chdir, chroot, getegid, geteuid, getgid, getuid, setgid, setgroups, setuid,
};
use tracing::info;

use tlspool_core::config::Config;
use tlspool_core::logging::TARGET_DAEMON;

use crate::error::DaemonError;
use crate::listener::{lookup_group, lookup_user};

/// The resolved privilege change of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Privileges {
    /// The new root directory (`daemon_chroot`).
    pub chroot: Option<PathBuf>,
    /// The new group id: `daemon_group`, else the primary group of `daemon_user`.
    pub gid: Option<Gid>,
    /// The new user id (`daemon_user`).
    pub uid: Option<Uid>,
}

impl Privileges {
    /// Resolves the `daemon_*` keys of `config` against the account database.
    ///
    /// # Errors
    ///
    /// [`DaemonError::UnknownAccount`] or [`DaemonError::AccountLookup`] for a name that does
    /// not resolve.
    pub fn resolve(config: &Config) -> Result<Self, DaemonError> {
        let user = config
            .daemon_user()
            .map(|name| lookup_user(name, "daemon_user"))
            .transpose()?;
        let group = config
            .daemon_group()
            .map(|name| lookup_group(name, "daemon_group"))
            .transpose()?;
        Ok(Self {
            chroot: config.daemon_chroot().map(Path::to_owned),
            gid: group.or_else(|| user.as_ref().map(|user| user.gid)),
            uid: user.map(|user| user.uid),
        })
    }

    /// Applies the change to this process.
    ///
    /// # Errors
    ///
    /// [`DaemonError::Privileges`] naming the call that failed, or
    /// [`DaemonError::PrivilegesUnchanged`] when an id reads back wrong.
    pub fn apply(&self) -> Result<(), DaemonError> {
        if let Some(root) = &self.chroot {
            let target = root.display().to_string();
            chroot(root).map_err(privileges_error("chroot", &target))?;
            // Without this the working directory would stay outside the new root.
            chdir("/").map_err(privileges_error("chdir", "/"))?;
            info!(target: TARGET_DAEMON, root = %target, "changed root directory");
        }
        if let Some(gid) = self.gid {
            let target = gid.to_string();
            setgroups(&[gid]).map_err(privileges_error("setgroups", &target))?;
            setgid(gid).map_err(privileges_error("setgid", &target))?;
            check_id("group id", gid.as_raw(), getgid().as_raw())?;
            check_id("effective group id", gid.as_raw(), getegid().as_raw())?;
            info!(target: TARGET_DAEMON, gid = gid.as_raw(), "changed group");
        }
        if let Some(uid) = self.uid {
            setuid(uid).map_err(privileges_error("setuid", &uid.to_string()))?;
            check_id("user id", uid.as_raw(), getuid().as_raw())?;
            check_id("effective user id", uid.as_raw(), geteuid().as_raw())?;
            info!(target: TARGET_DAEMON, uid = uid.as_raw(), "changed user");
        }
        Ok(())
    }
}

fn privileges_error<'a>(
    call: &'static str,
    target: &'a str,
) -> impl Fn(nix::errno::Errno) -> DaemonError + 'a {
    move |errno| DaemonError::Privileges {
        call,
        target: target.to_owned(),
        source: errno.into(),
    }
}

fn check_id(what: &'static str, expected: u32, actual: u32) -> Result<(), DaemonError> {
    if expected == actual {
        return Ok(());
    }
    Err(DaemonError::PrivilegesUnchanged {
        what,
        expected,
        actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("test.conf")).expect("valid configuration")
    }

    #[test]
    fn user_primary_group_is_used_without_daemon_group() {
        let privileges = Privileges::resolve(&config("daemon_user root\n")).expect("resolve");
        assert_eq!(privileges.uid, Some(Uid::from_raw(0)));
        assert_eq!(privileges.gid, Some(Gid::from_raw(0)));
        assert_eq!(privileges.chroot, None);
    }

    #[test]
    fn numeric_group_resolves() {
        let privileges = Privileges::resolve(&config("daemon_group 4242\n")).expect("resolve");
        assert_eq!(privileges.gid, Some(Gid::from_raw(4242)));
        assert_eq!(privileges.uid, None);
    }

    #[test]
    fn unknown_daemon_user_is_an_error() {
        let error = Privileges::resolve(&config("daemon_user no-such-user-tlspool\n"))
            .expect_err("unknown user");
        assert!(error.to_string().contains("daemon_user"), "{error}");
    }

    #[test]
    fn empty_change_applies() {
        Privileges::default().apply().expect("nothing to change");
    }
}
