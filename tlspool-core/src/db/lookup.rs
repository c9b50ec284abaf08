//! Credential lookup for a handshake: which local identity's credentials the pool presents.
//!
//! As a server, the pool looks up its local identity in the localid database. As a client, it
//! walks the remote identity's generalisations (most concrete first) until a selector is found
//! in the disclose database, then collects the credentials of the local identities listed there.
//! In both roles the first listed identity, and within it the first listed value, wins for each
//! credential type. (The original TLS Pool let later entries overwrite earlier ones, so there the
//! last listed one won, against its documentation.)

use tracing::warn;

use super::{
    CredentialType, Database, DbError, DbRead, Donai, LocalIdEntry, Role, Selector, disclose,
};

/// One usable credential and the local identity it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The local identity (key of the localid database).
    pub local_id: Donai,
    /// The stored credential.
    pub entry: LocalIdEntry,
}

/// The credentials found for a handshake: at most one per [`CredentialType`], in the order
/// they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    found: Vec<Credential>,
}

/// The disclose database entry that decides which local identities a client may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    /// The selector found, the most concrete one that matches the remote identity.
    pub selector: Selector,
    /// Generalisation steps from the remote identity to `selector` (`maxlevels` for lidentry).
    pub step: u32,
    /// Bit 0: the user was removed; `levels_up >> 1`: domain labels removed.
    pub levels_up: u32,
    /// The local identities listed under the selector, in order of preference. Values that are
    /// not DoNAIs are left out (and logged).
    pub local_ids: Vec<Donai>,
}

impl Credentials {
    /// Returns the credential of the given type, if one was found.
    pub fn get(&self, credential_type: CredentialType) -> Option<&Credential> {
        self.found
            .iter()
            .find(|c| c.entry.credential_type == credential_type)
    }

    /// Iterates over the credentials found.
    pub fn iter(&self) -> std::slice::Iter<'_, Credential> {
        self.found.iter()
    }

    /// Tells whether nothing usable was found.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Returns the number of credentials found.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Adds `entry` unless a credential of its type is already present.
    fn offer(&mut self, local_id: &Donai, entry: LocalIdEntry) {
        if self.get(entry.credential_type).is_none() {
            self.found.push(Credential {
                local_id: local_id.clone(),
                entry,
            });
        }
    }
}

impl<'a> IntoIterator for &'a Credentials {
    type Item = &'a Credential;
    type IntoIter = std::slice::Iter<'a, Credential>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Finds the most concrete selector of `remote` that has entries in the disclose database.
pub(crate) fn find_disclosure<R: DbRead + ?Sized>(
    txn: &R,
    remote: &Donai,
) -> Result<Option<Disclosure>, DbError> {
    for step in remote.generalisations() {
        let key = step.selector.to_string();
        let values = txn.values(Database::Disclose, key.as_bytes())?;
        if values.is_empty() {
            continue;
        }
        let local_ids = values
            .iter()
            .filter_map(|value| match disclose::decode_local_id(value) {
                Ok(id) => Some(id),
                Err(err) => {
                    warn!(selector = %key, error = %err, "skipping invalid disclose value");
                    None
                }
            })
            .collect();
        return Ok(Some(Disclosure {
            selector: step.selector,
            step: step.step,
            levels_up: step.levels_up,
            local_ids,
        }));
    }
    Ok(None)
}

/// Collects the usable credentials of `local_ids` for `role`, first found wins per type.
pub(crate) fn credentials_of<R: DbRead + ?Sized>(
    txn: &R,
    local_ids: &[Donai],
    role: Role,
) -> Result<Credentials, DbError> {
    let mut credentials = Credentials::default();
    for local_id in local_ids {
        let key = local_id.to_string();
        for value in txn.values(Database::LocalId, key.as_bytes())? {
            match LocalIdEntry::decode(&value) {
                Ok(entry) if entry.is_usable_for(role) => credentials.offer(local_id, entry),
                Ok(_) => {}
                Err(err) => warn!(local_id = %key, error = %err, "skipping invalid localid value"),
            }
        }
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::super::{DbEnv, DbNames, OpenMode};
    use super::*;

    fn entry(word: u32, uri: &str, data: &[u8]) -> Vec<u8> {
        let mut value = word.to_be_bytes().to_vec();
        value.extend_from_slice(uri.as_bytes());
        value.push(0);
        value.extend_from_slice(data);
        value
    }

    fn id(text: &str) -> Donai {
        Donai::parse(text).unwrap()
    }

    fn open() -> (tempfile::TempDir, DbEnv) {
        let dir = tempfile::tempdir().unwrap();
        let env = DbEnv::open(dir.path(), &DbNames::default(), OpenMode::ReadWrite).unwrap();
        (dir, env)
    }

    #[test]
    fn server_lookup_takes_first_value_per_type() {
        let (_dir, env) = open();
        let mut txn = env.write().unwrap();
        let values = [
            entry(0x0101, "pkcs11:client-only", b"C"),
            entry(0x0201, "pkcs11:first", b"A"),
            entry(0x0201, "pkcs11:second", b"B"),
            entry(0x0202, "pkcs11:pgp", b"P"),
        ];
        txn.set_values(Database::LocalId, b"srv.example.com", &values)
            .unwrap();
        txn.commit().unwrap();

        let read = env.read().unwrap();
        let found = read.server_credentials(&id("srv.example.com")).unwrap();
        assert_eq!(found.len(), 2);
        let x509 = found.get(CredentialType::X509).unwrap();
        assert_eq!(x509.entry.pkcs11_uri.as_deref(), Some("pkcs11:first"));
        let pgp = found.get(CredentialType::OpenPgp).unwrap();
        assert_eq!(pgp.entry.credential, b"P");
    }

    #[test]
    fn server_lookup_skips_invalid_and_unusable_values() {
        let (_dir, env) = open();
        let mut txn = env.write().unwrap();
        let values = [
            b"\x00\x00\x02".to_vec(),
            b"\x00\x00\x12\x01DER".to_vec(),
            entry(0x0201, "pkcs11:good", b"G"),
        ];
        txn.set_values(Database::LocalId, b"srv.example.com", &values)
            .unwrap();
        txn.commit().unwrap();

        let found = env
            .read()
            .unwrap()
            .server_credentials(&id("srv.example.com"))
            .unwrap();
        assert_eq!(found.len(), 1);
        let x509 = found.get(CredentialType::X509).unwrap();
        assert_eq!(x509.entry.pkcs11_uri.as_deref(), Some("pkcs11:good"));
    }

    #[test]
    fn server_lookup_of_unknown_id_is_empty() {
        let (_dir, env) = open();
        let found = env
            .read()
            .unwrap()
            .server_credentials(&id("nobody.example"))
            .unwrap();
        assert!(found.is_empty());
    }

    #[test]
    fn client_lookup_uses_most_concrete_selector() {
        let (_dir, env) = open();
        let mut txn = env.write().unwrap();
        txn.set_values(Database::Disclose, b"@.", &[b"fallback@example.org"])
            .unwrap();
        txn.set_values(
            Database::Disclose,
            b"@.example.com",
            &[&b"second@example.org"[..], b"me@example.org"],
        )
        .unwrap();
        txn.set_values(
            Database::LocalId,
            b"me@example.org",
            &[entry(0x0101, "pkcs11:me", b"M")],
        )
        .unwrap();
        txn.set_values(
            Database::LocalId,
            b"second@example.org",
            &[entry(0x0101, "pkcs11:second", b"S")],
        )
        .unwrap();
        txn.set_values(
            Database::LocalId,
            b"fallback@example.org",
            &[entry(0x0101, "pkcs11:fb", b"F")],
        )
        .unwrap();
        txn.commit().unwrap();

        let read = env.read().unwrap();
        let (disclosure, found) = read
            .client_credentials(&id("alice@www.example.com"))
            .unwrap()
            .unwrap();
        assert_eq!(disclosure.selector.to_string(), "@.example.com");
        assert_eq!(disclosure.step, 3);
        assert_eq!(disclosure.levels_up, 3);
        assert_eq!(
            disclosure.local_ids,
            [id("second@example.org"), id("me@example.org")]
        );
        let x509 = found.get(CredentialType::X509).unwrap();
        assert_eq!(
            x509.local_id,
            id("second@example.org"),
            "first listed identity wins"
        );
    }

    #[test]
    fn client_lookup_ignores_server_role_entries() {
        let (_dir, env) = open();
        let mut txn = env.write().unwrap();
        txn.set_values(Database::Disclose, b".", &[b"me.example.org"])
            .unwrap();
        txn.set_values(
            Database::LocalId,
            b"me.example.org",
            &[entry(0x0201, "pkcs11:s", b"S")],
        )
        .unwrap();
        txn.commit().unwrap();

        let (_, found) = env
            .read()
            .unwrap()
            .client_credentials(&id("peer.example.com"))
            .unwrap()
            .unwrap();
        assert!(found.is_empty());
    }

    #[test]
    fn client_lookup_without_selector_is_none() {
        let (_dir, env) = open();
        let mut txn = env.write().unwrap();
        txn.set_values(Database::Disclose, b"@.", &[b"me@example.org"])
            .unwrap();
        txn.commit().unwrap();
        let read = env.read().unwrap();
        assert!(
            read.find_disclosure(&id("peer.example.com"))
                .unwrap()
                .is_none()
        );
        assert!(
            read.find_disclosure(&id("user@peer.example.com"))
                .unwrap()
                .is_some()
        );
    }
}
