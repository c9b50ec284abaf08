//! The LMDB environment and its read and write transactions.

use std::path::{Path, PathBuf};

use lmdb::{Cursor, DatabaseFlags, Environment, EnvironmentFlags, Transaction, WriteFlags};
use tracing::debug;

use super::{
    Credentials, Database, DbError, DbNames, Disclosure, Donai, LocalIdEntry, Operation, RawPair,
    Role, Selector, TrustEntry, disclose, lookup, valuelist,
};

/// Maximum size of the memory map, and so of all three databases together: 1 GiB. The map is
/// sparse, so this reserves address space, not disk or memory.
const MAP_SIZE: usize = 1 << 30;

/// Maximum key length of LMDB 0.9 as built by `lmdb-rkv-sys` (`MDB_MAXKEYSIZE`).
pub const MAX_KEY_LEN: usize = 511;

/// Whether [`DbEnv::open`] may create and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open existing databases for reading only; a missing database is an error.
    ReadOnly,
    /// Open for reading and writing, creating the environment files and any missing database.
    ReadWrite,
    /// Open existing databases for reading and writing; a missing database is an error. The
    /// daemon uses this to store the disclose choices of a local identity selection service.
    ReadWriteExisting,
}

/// Position of a new or moved value in a key's ordered list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Before all other values: the most preferred.
    Head,
    /// After all other values: the least preferred.
    Tail,
}

/// The LMDB environment in `dbenv_dir` with the localid, disclose and trust databases.
///
/// Each transaction reads the state of the last commit before it began, including commits by
/// other processes, so updates by `tlspool-admin` reach a running daemon without a restart.
pub struct DbEnv {
    env: Environment,
    databases: [lmdb::Database; 3],
    names: DbNames,
    dir: PathBuf,
}

/// A read transaction: a consistent snapshot of all three databases.
///
/// Hold it only for one synchronous lookup, because it keeps the pages of its snapshot alive.
pub struct ReadTxn<'env> {
    txn: lmdb::RoTransaction<'env>,
    env: &'env DbEnv,
}

/// A write transaction over all three databases.
///
/// Changes become visible to others only on [`commit`](Self::commit); [`abort`](Self::abort) or
/// dropping the transaction discards them. LMDB allows one write transaction per environment at a
/// time (other writers, in this or another process, wait), and the transaction must stay on the
/// thread that began it.
pub struct WriteTxn<'env> {
    txn: lmdb::RwTransaction<'env>,
    env: &'env DbEnv,
}

/// Reading the databases, shared by [`ReadTxn`] and [`WriteTxn`] (which reads its own changes).
pub trait DbRead {
    /// Returns the values stored under `key`, in order; an absent key has none.
    ///
    /// # Errors
    ///
    /// [`DbError::Lmdb`] when the read fails, [`DbError::CorruptValueList`] when the stored
    /// list is damaged.
    fn values(&self, database: Database, key: &[u8]) -> Result<Vec<Vec<u8>>, DbError>;

    /// Returns every (key, value) pair of a database: keys in byte order, the values of each
    /// key in their stored order.
    ///
    /// # Errors
    ///
    /// As for [`values`](Self::values), with [`Operation::Iterate`].
    fn pairs(&self, database: Database) -> Result<Vec<RawPair>, DbError>;

    /// Returns the environment the transaction belongs to.
    fn env(&self) -> &DbEnv;

    /// Returns the decoded localid values of `local_id`, in order.
    ///
    /// # Errors
    ///
    /// As for [`values`](Self::values), and [`DbError::InvalidEntry`] for a value that does not
    /// decode.
    fn localid_entries(&self, local_id: &Donai) -> Result<Vec<LocalIdEntry>, DbError> {
        let key = local_id.to_string();
        let values = self.values(Database::LocalId, key.as_bytes())?;
        values.iter().map(|v| LocalIdEntry::decode(v)).collect()
    }

    /// Returns the local identities listed under exactly `selector`, in order.
    ///
    /// # Errors
    ///
    /// As for [`localid_entries`](Self::localid_entries).
    fn disclosed_ids(&self, selector: &Selector) -> Result<Vec<Donai>, DbError> {
        let key = selector.to_string();
        let values = self.values(Database::Disclose, key.as_bytes())?;
        values
            .iter()
            .map(|v| disclose::decode_local_id(v))
            .collect()
    }

    /// Returns the decoded trust values stored under `key`, in order.
    ///
    /// # Errors
    ///
    /// As for [`localid_entries`](Self::localid_entries).
    fn trust_entries(&self, key: &[u8]) -> Result<Vec<TrustEntry>, DbError> {
        let values = self.values(Database::Trust, key)?;
        values.iter().map(|v| TrustEntry::decode(v)).collect()
    }

    /// Finds the most concrete generalisation of `remote` that has entries in the disclose
    /// database.
    ///
    /// # Errors
    ///
    /// As for [`values`](Self::values).
    fn find_disclosure(&self, remote: &Donai) -> Result<Option<Disclosure>, DbError> {
        lookup::find_disclosure(self, remote)
    }

    /// Collects the credentials a server presents as `local_id`: the first usable value of
    /// each type. Values that do not decode are skipped and logged.
    ///
    /// # Errors
    ///
    /// As for [`values`](Self::values).
    fn server_credentials(&self, local_id: &Donai) -> Result<Credentials, DbError> {
        lookup::credentials_of(self, std::slice::from_ref(local_id), Role::Server)
    }

    /// Collects the credentials a client may present to `remote`: the disclose entry of the
    /// most concrete matching selector, and the first usable client value of each type among
    /// its local identities in order. Returns `None` when no selector matches.
    ///
    /// # Errors
    ///
    /// As for [`values`](Self::values).
    fn client_credentials(
        &self,
        remote: &Donai,
    ) -> Result<Option<(Disclosure, Credentials)>, DbError> {
        let Some(disclosure) = self.find_disclosure(remote)? else {
            return Ok(None);
        };
        let credentials = lookup::credentials_of(self, &disclosure.local_ids, Role::Client)?;
        Ok(Some((disclosure, credentials)))
    }
}

impl DbEnv {
    /// Opens the environment in `dir` with the databases named in `names`.
    ///
    /// # Errors
    ///
    /// [`DbError::Environment`] when LMDB cannot open the directory (it must exist),
    /// [`DbError::MissingDatabase`] in [`OpenMode::ReadOnly`] and
    /// [`OpenMode::ReadWriteExisting`] when a database does not exist.
    pub fn open(dir: &Path, names: &DbNames, mode: OpenMode) -> Result<Self, DbError> {
        let mut flags = EnvironmentFlags::NO_TLS;
        if mode == OpenMode::ReadOnly {
            flags |= EnvironmentFlags::READ_ONLY;
        }
        let env = Environment::new()
            .set_max_dbs(3)
            .set_map_size(MAP_SIZE)
            .set_flags(flags)
            .open_with_permissions(dir, 0o600)
            .map_err(|source| DbError::Environment {
                dir: dir.to_owned(),
                operation: Operation::OpenEnvironment,
                source,
            })?;

        let open = |database: Database| {
            let name = names.name(database);
            let result = match mode {
                OpenMode::ReadOnly | OpenMode::ReadWriteExisting => env.open_db(Some(name)),
                OpenMode::ReadWrite => env.create_db(Some(name), DatabaseFlags::empty()),
            };
            result.map_err(|source| match source {
                lmdb::Error::NotFound => DbError::MissingDatabase {
                    database,
                    name: name.to_owned(),
                    dir: dir.to_owned(),
                },
                source => DbError::lmdb(database, Operation::OpenDatabase, source),
            })
        };
        let databases = [
            open(Database::LocalId)?,
            open(Database::Disclose)?,
            open(Database::Trust)?,
        ];
        debug!(dir = %dir.display(), ?mode, "database environment opened");
        Ok(Self {
            env,
            databases,
            names: names.clone(),
            dir: dir.to_owned(),
        })
    }

    /// Returns the directory of the environment.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the names of the databases.
    pub fn names(&self) -> &DbNames {
        &self.names
    }

    /// Begins a read transaction.
    ///
    /// # Errors
    ///
    /// [`DbError::Environment`] when LMDB cannot begin one (for example, all reader slots in use).
    pub fn read(&self) -> Result<ReadTxn<'_>, DbError> {
        let txn = self
            .env
            .begin_ro_txn()
            .map_err(|source| self.env_error(Operation::BeginRead, source))?;
        Ok(ReadTxn { txn, env: self })
    }

    /// Begins a write transaction, waiting while another writer has one open.
    ///
    /// # Errors
    ///
    /// [`DbError::Environment`] when LMDB cannot begin one, such as in a read-only environment.
    pub fn write(&self) -> Result<WriteTxn<'_>, DbError> {
        let txn = self
            .env
            .begin_rw_txn()
            .map_err(|source| self.env_error(Operation::BeginWrite, source))?;
        Ok(WriteTxn { txn, env: self })
    }

    /// Returns every (key, value) pair of a database in order, from one read transaction.
    ///
    /// # Errors
    ///
    /// As for [`DbRead::pairs`].
    pub fn export(&self, database: Database) -> Result<Vec<RawPair>, DbError> {
        self.read()?.pairs(database)
    }

    /// Appends (key, value) pairs, in order, to a database in one transaction; with `replace`
    /// the database is emptied first. Returns the number of pairs stored.
    ///
    /// # Errors
    ///
    /// As for [`WriteTxn::append`] and [`WriteTxn::commit`]; nothing is stored on error.
    pub fn import<K, V>(
        &self,
        database: Database,
        pairs: impl IntoIterator<Item = (K, V)>,
        replace: bool,
    ) -> Result<usize, DbError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut txn = self.write()?;
        if replace {
            txn.clear(database)?;
        }
        let mut count = 0;
        for (key, value) in pairs {
            txn.append(database, key.as_ref(), value.as_ref())?;
            count += 1;
        }
        txn.commit()?;
        Ok(count)
    }

    fn handle(&self, database: Database) -> lmdb::Database {
        self.databases[database as usize]
    }

    fn env_error(&self, operation: Operation, source: lmdb::Error) -> DbError {
        DbError::Environment {
            dir: self.dir.clone(),
            operation,
            source,
        }
    }
}

impl DbRead for ReadTxn<'_> {
    fn values(&self, database: Database, key: &[u8]) -> Result<Vec<Vec<u8>>, DbError> {
        read_values(&self.txn, self.env.handle(database), database, key)
    }

    fn pairs(&self, database: Database) -> Result<Vec<RawPair>, DbError> {
        read_pairs(&self.txn, self.env.handle(database), database)
    }

    fn env(&self) -> &DbEnv {
        self.env
    }
}

impl DbRead for WriteTxn<'_> {
    fn values(&self, database: Database, key: &[u8]) -> Result<Vec<Vec<u8>>, DbError> {
        read_values(&self.txn, self.env.handle(database), database, key)
    }

    fn pairs(&self, database: Database) -> Result<Vec<RawPair>, DbError> {
        read_pairs(&self.txn, self.env.handle(database), database)
    }

    fn env(&self) -> &DbEnv {
        self.env
    }
}

impl WriteTxn<'_> {
    /// Replaces all values under `key` with `values`, in order; an empty list deletes the key.
    ///
    /// # Errors
    ///
    /// [`DbError::InvalidEntry`] for an empty key or one over [`MAX_KEY_LEN`] bytes,
    /// [`DbError::Lmdb`] when LMDB fails.
    pub fn set_values<V: AsRef<[u8]>>(
        &mut self,
        database: Database,
        key: &[u8],
        values: &[V],
    ) -> Result<(), DbError> {
        check_key(database, key)?;
        if values.is_empty() {
            self.delete(database, key)?;
            return Ok(());
        }
        let stored = valuelist::encode(values);
        self.txn
            .put(
                self.env.handle(database),
                &key,
                &stored,
                WriteFlags::empty(),
            )
            .map_err(|source| DbError::lmdb(database, Operation::Put, source))
    }

    /// Adds `value` after the existing values of `key`.
    ///
    /// # Errors
    ///
    /// As for [`set_values`](Self::set_values).
    pub fn append(&mut self, database: Database, key: &[u8], value: &[u8]) -> Result<(), DbError> {
        self.insert(database, key, value, Position::Tail)
    }

    /// Adds `value` at `position` among the existing values of `key`.
    ///
    /// # Errors
    ///
    /// As for [`set_values`](Self::set_values).
    pub fn insert(
        &mut self,
        database: Database,
        key: &[u8],
        value: &[u8],
        position: Position,
    ) -> Result<(), DbError> {
        let mut values = self.values(database, key)?;
        match position {
            Position::Head => values.insert(0, value.to_vec()),
            Position::Tail => values.push(value.to_vec()),
        }
        self.set_values(database, key, &values)
    }

    /// Deletes `key` with all its values; returns whether it existed.
    ///
    /// # Errors
    ///
    /// [`DbError::Lmdb`] when LMDB fails.
    pub fn delete(&mut self, database: Database, key: &[u8]) -> Result<bool, DbError> {
        match self.txn.del(self.env.handle(database), &key, None) {
            Ok(()) => Ok(true),
            Err(lmdb::Error::NotFound) => Ok(false),
            Err(source) => Err(DbError::lmdb(database, Operation::Delete, source)),
        }
    }

    /// Removes every key of a database.
    ///
    /// # Errors
    ///
    /// [`DbError::Lmdb`] when LMDB fails.
    pub fn clear(&mut self, database: Database) -> Result<(), DbError> {
        self.txn
            .clear_db(self.env.handle(database))
            .map_err(|source| DbError::lmdb(database, Operation::Clear, source))
    }

    /// Adds `local_id` under `selector` in the disclose database at `position`, unless it is
    /// already listed there; returns whether it was added.
    ///
    /// # Errors
    ///
    /// As for [`set_values`](Self::set_values).
    pub fn disclose_insert(
        &mut self,
        selector: &Selector,
        local_id: &Donai,
        position: Position,
    ) -> Result<bool, DbError> {
        let key = selector.to_string();
        let value = local_id.to_string();
        let values = self.values(Database::Disclose, key.as_bytes())?;
        if values.iter().any(|v| *v == value.as_bytes()) {
            return Ok(false);
        }
        self.insert(
            Database::Disclose,
            key.as_bytes(),
            value.as_bytes(),
            position,
        )?;
        Ok(true)
    }

    /// Moves `local_id` to `position` among the values of `selector` in the disclose database;
    /// returns whether it was listed there.
    ///
    /// # Errors
    ///
    /// As for [`set_values`](Self::set_values).
    pub fn disclose_move(
        &mut self,
        selector: &Selector,
        local_id: &Donai,
        position: Position,
    ) -> Result<bool, DbError> {
        let key = selector.to_string();
        let value = local_id.to_string();
        let mut values = self.values(Database::Disclose, key.as_bytes())?;
        let Some(index) = values.iter().position(|v| *v == value.as_bytes()) else {
            return Ok(false);
        };
        let moved = values.remove(index);
        match position {
            Position::Head => values.insert(0, moved),
            Position::Tail => values.push(moved),
        }
        self.set_values(Database::Disclose, key.as_bytes(), &values)?;
        Ok(true)
    }

    /// Commits the changes, making them visible to new transactions in every process.
    ///
    /// # Errors
    ///
    /// [`DbError::Environment`] when the commit fails; the changes are then lost.
    pub fn commit(self) -> Result<(), DbError> {
        let env = self.env;
        self.txn
            .commit()
            .map_err(|source| env.env_error(Operation::Commit, source))
    }

    /// Discards the changes. Dropping the transaction does the same.
    pub fn abort(self) {
        self.txn.abort();
    }
}

impl std::fmt::Debug for DbEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbEnv")
            .field("dir", &self.dir)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ReadTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadTxn")
            .field("dir", &self.env.dir)
            .finish()
    }
}

impl std::fmt::Debug for WriteTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTxn")
            .field("dir", &self.env.dir)
            .finish()
    }
}

fn check_key(database: Database, key: &[u8]) -> Result<(), DbError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(DbError::invalid(
            database,
            "key",
            format!("{} bytes, expected 1 to {MAX_KEY_LEN}", key.len()),
        ));
    }
    Ok(())
}

fn read_values<T: Transaction>(
    txn: &T,
    handle: lmdb::Database,
    database: Database,
    key: &[u8],
) -> Result<Vec<Vec<u8>>, DbError> {
    // LMDB rejects empty and overlong keys with an error, but no such key can be stored either.
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Ok(Vec::new());
    }
    match txn.get(handle, &key) {
        Ok(stored) => valuelist::decode(database, key, stored),
        Err(lmdb::Error::NotFound) => Ok(Vec::new()),
        Err(source) => Err(DbError::lmdb(database, Operation::Get, source)),
    }
}

fn read_pairs<T: Transaction>(
    txn: &T,
    handle: lmdb::Database,
    database: Database,
) -> Result<Vec<RawPair>, DbError> {
    let iterate_error = |source| DbError::lmdb(database, Operation::Iterate, source);
    let mut cursor = txn.open_ro_cursor(handle).map_err(iterate_error)?;
    let mut pairs = Vec::new();
    for item in cursor.iter_start() {
        let (key, stored) = item.map_err(iterate_error)?;
        for value in valuelist::decode(database, key, stored)? {
            pairs.push((key.to_vec(), value));
        }
    }
    Ok(pairs)
}
