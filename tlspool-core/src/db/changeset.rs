//! Disclose database changes that belong to one handshake: recorded while it runs, written in
//! one transaction if it succeeds, discarded if it fails.
//!
//! A lidentry helper may ask to add or reorder disclose entries during a handshake. Holding an
//! LMDB write transaction for the whole handshake would block every other writer (LMDB has one
//! writer per environment) for as long as the peer takes, and the transaction could not move
//! between threads. So the changes are recorded here, and [`DiscloseChanges::commit`] replays
//! them in one [`WriteTxn`](super::WriteTxn) against the database as it is at that moment.

use tracing::debug;

use super::{DbEnv, DbError, Donai, Position, Selector};

/// One recorded change to the disclose database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscloseChange {
    /// Add `local_id` under `selector` at `position`, unless it is listed there already
    /// (`DBINSERT` at the head, `DBAPPEND` at the tail).
    Insert {
        /// The selector key.
        selector: Selector,
        /// The local identity value.
        local_id: Donai,
        /// The position in the list.
        position: Position,
    },
    /// Move `local_id`, if it is listed under `selector`, to `position` (`DBREORDER`).
    Move {
        /// The selector key.
        selector: Selector,
        /// The local identity value.
        local_id: Donai,
        /// The position in the list.
        position: Position,
    },
}

/// Disclose changes of one handshake, applied by [`commit`](Self::commit) and discarded by
/// [`abort`](Self::abort) or on drop.
#[derive(Debug, Default)]
pub struct DiscloseChanges {
    changes: Vec<DiscloseChange>,
}

impl DiscloseChanges {
    /// Starts an empty set of changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a change, to be applied after those recorded before it.
    pub fn push(&mut self, change: DiscloseChange) {
        self.changes.push(change);
    }

    /// Returns the changes recorded so far, in order.
    pub fn changes(&self) -> &[DiscloseChange] {
        &self.changes
    }

    /// Applies all changes in one write transaction and commits it.
    ///
    /// # Errors
    ///
    /// As for [`DbEnv::write`] and [`WriteTxn::commit`](super::WriteTxn::commit); on error
    /// nothing is written.
    pub fn commit(mut self, env: &DbEnv) -> Result<(), DbError> {
        let changes = std::mem::take(&mut self.changes);
        let mut txn = env.write()?;
        for change in &changes {
            match change {
                DiscloseChange::Insert {
                    selector,
                    local_id,
                    position,
                } => txn.disclose_insert(selector, local_id, *position)?,
                DiscloseChange::Move {
                    selector,
                    local_id,
                    position,
                } => txn.disclose_move(selector, local_id, *position)?,
            };
        }
        txn.commit()?;
        debug!(count = changes.len(), "disclose changes committed");
        Ok(())
    }

    /// Discards all changes.
    pub fn abort(self) {
        drop(self);
    }
}

impl Drop for DiscloseChanges {
    fn drop(&mut self) {
        if !self.changes.is_empty() {
            debug!(count = self.changes.len(), "disclose changes discarded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Database, DbNames, DbRead, OpenMode};
    use super::*;

    fn setup() -> (tempfile::TempDir, DbEnv) {
        let dir = tempfile::tempdir().unwrap();
        let env = DbEnv::open(dir.path(), &DbNames::default(), OpenMode::ReadWrite).unwrap();
        let mut txn = env.write().unwrap();
        txn.set_values(Database::Disclose, b"@.", &[b"a@x.org", b"b@x.org"])
            .unwrap();
        txn.commit().unwrap();
        (dir, env)
    }

    fn listed(env: &DbEnv, selector: &str) -> Vec<String> {
        let selector = Selector::parse(selector).unwrap();
        let ids = env.read().unwrap().disclosed_ids(&selector).unwrap();
        ids.iter().map(ToString::to_string).collect()
    }

    fn change(insert: bool, selector: &str, id: &str, position: Position) -> DiscloseChange {
        let selector = Selector::parse(selector).unwrap();
        let local_id = Donai::parse(id).unwrap();
        if insert {
            DiscloseChange::Insert {
                selector,
                local_id,
                position,
            }
        } else {
            DiscloseChange::Move {
                selector,
                local_id,
                position,
            }
        }
    }

    #[test]
    fn commit_applies_changes_in_order() {
        let (_dir, env) = setup();
        let mut changes = DiscloseChanges::new();
        changes.push(change(true, "@.", "c@x.org", Position::Head));
        changes.push(change(true, "@.", "d@x.org", Position::Tail));
        changes.push(change(true, "@.", "a@x.org", Position::Tail));
        changes.push(change(false, "@.", "b@x.org", Position::Head));
        changes.push(change(true, ".example.com", "e.x.org", Position::Tail));
        changes.commit(&env).unwrap();
        assert_eq!(
            listed(&env, "@."),
            ["b@x.org", "c@x.org", "a@x.org", "d@x.org"]
        );
        assert_eq!(listed(&env, ".example.com"), ["e.x.org"]);
    }

    #[test]
    fn dropped_changes_leave_database_unchanged() {
        let (_dir, env) = setup();
        {
            let mut changes = DiscloseChanges::new();
            changes.push(change(true, "@.", "c@x.org", Position::Head));
        }
        let mut changes = DiscloseChanges::new();
        changes.push(change(false, "@.", "b@x.org", Position::Head));
        changes.abort();
        assert_eq!(listed(&env, "@."), ["a@x.org", "b@x.org"]);
    }

    #[test]
    fn existing_databases_open_for_writing() {
        let (dir, env) = setup();
        drop(env);
        let env = DbEnv::open(dir.path(), &DbNames::default(), OpenMode::ReadWriteExisting)
            .expect("existing databases");
        let mut changes = DiscloseChanges::new();
        changes.push(change(true, "@.", "c@x.org", Position::Head));
        changes.commit(&env).expect("writable");
        assert_eq!(listed(&env, "@."), ["c@x.org", "a@x.org", "b@x.org"]);

        let other = DbNames {
            disclose: "absent".to_owned(),
            ..DbNames::default()
        };
        drop(env);
        let error = DbEnv::open(dir.path(), &other, OpenMode::ReadWriteExisting)
            .expect_err("a missing database is not created");
        assert!(matches!(error, DbError::MissingDatabase { .. }), "{error}");
    }

    #[test]
    fn dropped_write_transaction_rolls_back() {
        let (_dir, env) = setup();
        let mut txn = env.write().unwrap();
        txn.delete(Database::Disclose, b"@.").unwrap();
        assert!(
            txn.values(Database::Disclose, b"@.").unwrap().is_empty(),
            "own change visible"
        );
        drop(txn);
        assert_eq!(listed(&env, "@."), ["a@x.org", "b@x.org"]);
    }
}
