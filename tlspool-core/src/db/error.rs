//! The error type of the database layer.

use std::path::PathBuf;

use super::Database;

/// An error from the databases: an LMDB call that failed, or a key or value that does not have
/// the layout of the TLS Pool version 2 databases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// An LMDB call on the environment itself failed.
    #[error("{operation} failed for the database environment in {}", dir.display())]
    Environment {
        /// Directory of the environment (`dbenv_dir`).
        dir: PathBuf,
        /// The operation that failed.
        operation: Operation,
        /// The LMDB error.
        #[source]
        source: lmdb::Error,
    },

    /// An LMDB call on one database failed.
    #[error("{operation} on the {database} database failed")]
    Lmdb {
        /// The database operated on.
        database: Database,
        /// The operation that failed.
        operation: Operation,
        /// The LMDB error.
        #[source]
        source: lmdb::Error,
    },

    /// A database opened read-only does not exist yet.
    #[error(
        "the {database} database (named {name:?}) does not exist in {}; create it with \
         `tlspool-admin db create`", dir.display()
    )]
    MissingDatabase {
        /// The missing database.
        database: Database,
        /// Its configured name.
        name: String,
        /// Directory of the environment.
        dir: PathBuf,
    },

    /// A stored record of this implementation's value lists is damaged.
    #[error(
        "the value list stored under key {key_hex} in the {database} database is damaged: {reason}"
    )]
    CorruptValueList {
        /// The database read.
        database: Database,
        /// The key, hex-encoded.
        key_hex: String,
        /// The defect found.
        reason: &'static str,
    },

    /// A value or key does not have the layout of its database.
    #[error("invalid {field} in a {database} entry: {reason}")]
    InvalidEntry {
        /// The database the entry belongs to.
        database: Database,
        /// The field that is invalid, such as `flags` or `pkcs11_uri`.
        field: &'static str,
        /// The defect found.
        reason: String,
    },

    /// A string is not a valid DoNAI (`user@domain` or `domain`).
    #[error("invalid DoNAI {input:?}: {reason}")]
    InvalidDonai {
        /// The rejected text.
        input: String,
        /// The defect found.
        reason: &'static str,
    },

    /// A string is not a valid DoNAI selector.
    #[error("invalid DoNAI selector {input:?}: {reason}")]
    InvalidSelector {
        /// The rejected text.
        input: String,
        /// The defect found.
        reason: &'static str,
    },

    /// A dump in the `db_dump` text format could not be parsed.
    #[error("invalid dump at line {line}: {reason}")]
    InvalidDump {
        /// Line number, counting from 1.
        line: usize,
        /// The defect found.
        reason: String,
    },

    /// Reading or writing a dump failed.
    #[error("{operation} of a dump failed")]
    DumpIo {
        /// `read` or `write`.
        operation: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl DbError {
    pub(crate) fn lmdb(database: Database, operation: Operation, source: lmdb::Error) -> Self {
        Self::Lmdb {
            database,
            operation,
            source,
        }
    }

    pub(crate) fn invalid(
        database: Database,
        field: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidEntry {
            database,
            field,
            reason: reason.into(),
        }
    }
}

/// An operation on the environment or on a database, named in [`DbError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Opening the environment.
    OpenEnvironment,
    /// Opening or creating a named database.
    OpenDatabase,
    /// Beginning a read transaction.
    BeginRead,
    /// Beginning a write transaction.
    BeginWrite,
    /// Reading the values of a key.
    Get,
    /// Storing the values of a key.
    Put,
    /// Deleting a key.
    Delete,
    /// Iterating over all keys.
    Iterate,
    /// Removing every key of a database.
    Clear,
    /// Committing a write transaction.
    Commit,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Self::OpenEnvironment => "opening",
            Self::OpenDatabase => "opening the database",
            Self::BeginRead => "beginning a read transaction",
            Self::BeginWrite => "beginning a write transaction",
            Self::Get => "get",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::Iterate => "iteration",
            Self::Clear => "clear",
            Self::Commit => "commit",
        };
        f.write_str(text)
    }
}
