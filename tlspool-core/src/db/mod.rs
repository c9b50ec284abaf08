//! The localid, disclose and trust databases: storage, typed entries and credential lookup.
//!
//! All three databases are named databases in one LMDB environment in `dbenv_dir`. Every
//! transaction reads the last commit before it began, including commits by other processes, so
//! changes made with `tlspool-admin` reach a running daemon without a restart.
//!
//! # Storage and order of values
//!
//! The original TLS Pool stored several values per key in Berkeley DB, in insertion order, and
//! that order matters: the first local identity listed for a selector is the preferred one.
//! LMDB's `DUP_SORT` would sort those values by their bytes instead. Each key therefore holds
//! one LMDB value that contains the ordered list of its values (`u32` big-endian length, then
//! the bytes, per value). Compared with composite keys carrying a sequence number, this keeps
//! the key bytes untouched (binary trust keys need no escaping and can use LMDB's whole key
//! size), makes reading a key one `get`, and makes reordering a rewrite of one value. The cost
//! is that changing one value rewrites all values of its key, which is cheap for lists of a few
//! credentials of up to a few kilobytes.
//!
//! At the boundary the pairs are those of the original databases: [`DbRead::pairs`] and
//! [`DbEnv::import`] take and return the exact key and value bytes, one pair per value, and
//! [`dump`] reads and writes them in the `db_dump` text format of Berkeley DB, so existing data
//! moves in and out byte for byte.
//!
//! # Layouts
//!
//! [`LocalIdEntry`], [`DiscloseEntry`] and [`TrustEntry`] decode and encode the values of the
//! TLS Pool version 2 databases; flag words are 32-bit big-endian and strings carry no NUL
//! except where the layout puts one as a terminator.

mod changeset;
mod disclose;
mod donai;
pub mod dump;
mod env;
mod error;
mod localid;
mod lookup;
mod trust;
mod valuelist;

use std::fmt;
use std::str::FromStr;

pub use changeset::{DiscloseChange, DiscloseChanges};
pub use disclose::DiscloseEntry;
pub use donai::{Donai, Generalisation, Generalisations, Selector, SelectorDomain, SelectorUser};
pub use env::{DbEnv, DbRead, MAX_KEY_LEN, OpenMode, Position, ReadTxn, WriteTxn};
pub use error::{DbError, Operation};
pub use localid::{CredentialType, LocalIdEntry, LocalIdFlags};
pub use lookup::{Credential, Credentials, Disclosure};
pub use trust::{PinnedValidity, RevocationList, TrustEntry, TrustFlags, TrustType};

/// One raw (key, value) pair as the original databases stored it; a key with several values
/// appears in several pairs.
pub type RawPair = (Vec<u8>, Vec<u8>);

/// One of the three databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Database {
    /// Local identities and their credentials (`db_localid`).
    LocalId = 0,
    /// Selectors of remote peers and the local identities they may be shown (`db_disclose`).
    Disclose = 1,
    /// Trust anchors, pinned credentials and revocation lists (`db_trust`).
    Trust = 2,
}

/// The names of the three databases inside the environment, from the `db_localid`,
/// `db_disclose` and `db_trust` configuration keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbNames {
    /// Name of the localid database.
    pub localid: String,
    /// Name of the disclose database.
    pub disclose: String,
    /// Name of the trust database.
    pub trust: String,
}

/// The side of the TLS handshake the pool plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The pool acts as TLS client.
    Client,
    /// The pool acts as TLS server.
    Server,
}

impl Database {
    /// All databases, in a fixed order.
    pub const ALL: [Self; 3] = [Self::LocalId, Self::Disclose, Self::Trust];

    /// Returns the short name used in messages and by `tlspool-admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LocalId => "localid",
            Self::Disclose => "disclose",
            Self::Trust => "trust",
        }
    }
}

impl DbNames {
    /// Returns the configured name of `database`.
    pub fn name(&self, database: Database) -> &str {
        match database {
            Database::LocalId => &self.localid,
            Database::Disclose => &self.disclose,
            Database::Trust => &self.trust,
        }
    }
}

impl Default for DbNames {
    /// Returns the defaults of the configuration keys: `localid.db`, `disclose.db` and
    /// `trust.db`.
    fn default() -> Self {
        Self {
            localid: "localid.db".into(),
            disclose: "disclose.db".into(),
            trust: "trust.db".into(),
        }
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Database {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|db| db.as_str() == text)
            .ok_or_else(|| {
                format!("unknown database {text:?}, expected localid, disclose or trust")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, mode: OpenMode) -> Result<DbEnv, DbError> {
        DbEnv::open(dir, &DbNames::default(), mode)
    }

    #[test]
    fn values_keep_insertion_order() {
        let dir = tempfile::tempdir().unwrap();
        let env = open(dir.path(), OpenMode::ReadWrite).unwrap();
        let mut txn = env.write().unwrap();
        for value in [&b"zeta"[..], b"alpha", b"mid"] {
            txn.append(Database::LocalId, b"key", value).unwrap();
        }
        txn.insert(Database::LocalId, b"key", b"first", Position::Head)
            .unwrap();
        txn.commit().unwrap();
        let values = env
            .read()
            .unwrap()
            .values(Database::LocalId, b"key")
            .unwrap();
        assert_eq!(values, [&b"first"[..], b"zeta", b"alpha", b"mid"]);
    }

    #[test]
    fn export_then_import_is_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let env = open(dir.path(), OpenMode::ReadWrite).unwrap();
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"\x01\x02".to_vec(), b"\x00\x00\x01\x01x\0".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
            (b"b".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), Vec::new()),
        ];
        assert_eq!(
            env.import(Database::Trust, pairs.clone(), false).unwrap(),
            4
        );
        assert_eq!(env.export(Database::Trust).unwrap(), pairs);

        let other = tempfile::tempdir().unwrap();
        let copy = open(other.path(), OpenMode::ReadWrite).unwrap();
        copy.import(Database::Trust, env.export(Database::Trust).unwrap(), false)
            .unwrap();
        assert_eq!(copy.export(Database::Trust).unwrap(), pairs);
    }

    #[test]
    fn import_replace_empties_database_first() {
        let dir = tempfile::tempdir().unwrap();
        let env = open(dir.path(), OpenMode::ReadWrite).unwrap();
        env.import(Database::Disclose, [(b"old", b"x")], false)
            .unwrap();
        env.import(Database::Disclose, [(b"new", b"y")], true)
            .unwrap();
        let exported = env.export(Database::Disclose).unwrap();
        assert_eq!(exported, [(b"new".to_vec(), b"y".to_vec())]);
    }

    #[test]
    fn import_of_empty_key_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let env = open(dir.path(), OpenMode::ReadWrite).unwrap();
        let err = env
            .import(
                Database::LocalId,
                [(&b"ok"[..], &b"1"[..]), (b"", b"2")],
                false,
            )
            .unwrap_err();
        assert!(
            matches!(err, DbError::InvalidEntry { field: "key", .. }),
            "{err}"
        );
        assert!(env.export(Database::LocalId).unwrap().is_empty());
    }

    #[test]
    fn databases_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let env = open(dir.path(), OpenMode::ReadWrite).unwrap();
        env.import(Database::LocalId, [(b"k", b"localid")], false)
            .unwrap();
        let read = env.read().unwrap();
        assert!(read.values(Database::Trust, b"k").unwrap().is_empty());
        assert!(read.values(Database::Disclose, b"k").unwrap().is_empty());
    }

    #[test]
    fn read_only_open_requires_databases() {
        let dir = tempfile::tempdir().unwrap();
        // Create the environment files with only the localid database.
        let names = DbNames {
            localid: "only".into(),
            ..DbNames::default()
        };
        drop(DbEnv::open(dir.path(), &names, OpenMode::ReadWrite).unwrap());
        let other_names = DbNames {
            localid: "other".into(),
            ..DbNames::default()
        };
        let err = DbEnv::open(dir.path(), &other_names, OpenMode::ReadOnly).unwrap_err();
        assert!(
            matches!(
                err,
                DbError::MissingDatabase {
                    database: Database::LocalId,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn read_only_environment_rejects_writes() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), OpenMode::ReadWrite).unwrap());
        let env = open(dir.path(), OpenMode::ReadOnly).unwrap();
        let err = env.write().unwrap_err();
        assert!(
            matches!(
                err,
                DbError::Environment {
                    operation: Operation::BeginWrite,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_directory_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        let err = open(&missing, OpenMode::ReadWrite).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn reader_snapshot_and_new_reader_see_commits() {
        let dir = tempfile::tempdir().unwrap();
        let env = open(dir.path(), OpenMode::ReadWrite).unwrap();
        let before = env.read().unwrap();
        env.import(Database::LocalId, [(b"k", b"v")], false)
            .unwrap();
        assert!(
            before.values(Database::LocalId, b"k").unwrap().is_empty(),
            "old snapshot"
        );
        drop(before);
        let after = env.read().unwrap();
        assert_eq!(after.values(Database::LocalId, b"k").unwrap(), [b"v"]);
    }

    #[test]
    fn database_names_parse() {
        for db in Database::ALL {
            assert_eq!(db.as_str().parse::<Database>().unwrap(), db);
        }
        assert!("local".parse::<Database>().is_err());
    }
}
