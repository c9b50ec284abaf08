//! The trust database of `tlspool-core` as a [`TrustStore`]: each value decodes into a
//! [`TrustRecord`], and a value that does not decode becomes [`TrustRecord::Invalid`].

use std::time::{Duration, SystemTime};

use tlspool_core::db::{Database, DbRead, TrustEntry, TrustType};
use tracing::warn;

use super::revocation::hex;
use super::trust::{Anchor, Pin, RevocationList, TrustRecord, TrustStore};
use super::{Certificate, ValidateError};

/// A read transaction of the trust database, seen as a [`TrustStore`].
pub struct TrustDb<'t, R: DbRead>(pub &'t R);

impl<R: DbRead> TrustStore for TrustDb<'_, R> {
    fn records(&self, key: &[u8]) -> Result<Vec<TrustRecord>, ValidateError> {
        let values =
            self.0
                .values(Database::Trust, key)
                .map_err(|err| ValidateError::TrustStore {
                    key: hex(key),
                    reason: err.to_string(),
                })?;
        Ok(values
            .iter()
            .filter_map(|value| match TrustEntry::decode(value) {
                Ok(entry) => record_of(&entry, key),
                Err(err) => {
                    warn!(key = %hex(key), error = %err, "invalid trust database value");
                    Some(TrustRecord::Invalid(err.to_string()))
                }
            })
            .collect())
    }
}

/// Converts one trust entry; OpenPGP entries have no X.509 meaning and are left out.
fn record_of(entry: &TrustEntry, key: &[u8]) -> Option<TrustRecord> {
    let for_clients = entry.applies_to(tlspool_core::db::Role::Client);
    let for_servers = entry.applies_to(tlspool_core::db::Role::Server);
    let record = match entry.trust_type {
        TrustType::X509 => match Certificate::from_der(&entry.data) {
            Ok(certificate) => TrustRecord::Anchor(Box::new(Anchor {
                certificate,
                for_clients,
                for_servers,
                not_root: entry.is_not_root(),
                valexp: entry.valexp.clone(),
            })),
            Err(err) => {
                warn!(key = %hex(key), error = %err, "trust anchor certificate does not decode");
                TrustRecord::Invalid(err.to_string())
            }
        },
        TrustType::RevokeX509 => match entry.revocation_list()? {
            Ok(list) => TrustRecord::Revocation(RevocationList {
                this_update: seconds(list.this_update),
                next_update: seconds(list.next_update),
                serials: list.serials,
            }),
            Err(err) => TrustRecord::Invalid(err.to_string()),
        },
        TrustType::PinnedX509 => {
            let validity = entry.pinned_validity()?;
            TrustRecord::Pinned(Pin {
                for_clients,
                for_servers,
                expiry: validity.expiry.map(seconds),
                rollover_window: validity
                    .rollover_window
                    .map(|s| Duration::from_secs(s.into())),
            })
        }
        TrustType::OpenPgp | TrustType::PinnedPgp => return None,
    };
    Some(record)
}

fn seconds(since_epoch: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.into())
}

#[cfg(test)]
mod tests {
    use tlspool_core::db::{DbEnv, DbNames, OpenMode, TrustFlags};

    use super::*;
    use crate::x509::testing::{ca_params, chain, day, issue, self_signed, server_params};
    use crate::x509::{
        PathValidator, PeerRole, PinStatus, RevocationPolicy, check_revocation, pin_status,
    };

    fn entry(trust_type: TrustType, flags: TrustFlags, data: Vec<u8>) -> Vec<u8> {
        let entry = TrustEntry {
            trust_type,
            flags,
            valexp: "Tt|".into(),
            data,
        };
        entry.encode().unwrap()
    }

    fn unix(at: SystemTime) -> u32 {
        let seconds = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        u32::try_from(seconds).unwrap()
    }

    #[test]
    fn database_anchor_revocation_and_pins_apply() {
        let dir = tempfile::tempdir().unwrap();
        let env = DbEnv::open(dir.path(), &DbNames::default(), OpenMode::ReadWrite).unwrap();
        let root = self_signed(ca_params("Root"));
        let leaf = issue(server_params("www", &["www.example.com"]), &root);
        let revoked = issue(server_params("old", &["old.example.com"]), &root);
        let root_key = root.parsed().key_id();
        let at = day(2025, 6, 1);

        let mut revocation = unix(day(2025, 1, 1)).to_be_bytes().to_vec();
        revocation.extend(unix(day(2026, 1, 1)).to_be_bytes());
        let serial = revoked.parsed().serial().to_vec();
        revocation.extend([0x02, u8::try_from(serial.len()).unwrap()]);
        revocation.extend(&serial);

        let mut pinned_data = unix(day(2025, 6, 10)).to_be_bytes().to_vec();
        pinned_data.extend((30 * 86_400_u32).to_be_bytes());
        let mut txn = env.write().unwrap();
        txn.append(
            Database::Trust,
            &root_key,
            &entry(TrustType::X509, TrustFlags::ROLE_CLIENT, root.der()),
        )
        .unwrap();
        txn.append(
            Database::Trust,
            &root_key,
            &entry(TrustType::RevokeX509, TrustFlags::empty(), revocation),
        )
        .unwrap();
        txn.append(
            Database::Trust,
            &leaf.parsed().sha256(),
            &entry(TrustType::PinnedX509, TrustFlags::ROLE_CLIENT, pinned_data),
        )
        .unwrap();
        // A pinned value with 3 data bytes, which no pin may have.
        let mut broken = 0x0000_0901_u32.to_be_bytes().to_vec();
        broken.extend(b"1\0abc");
        txn.append(Database::Trust, &revoked.parsed().sha256(), &broken)
            .unwrap();
        txn.commit().unwrap();

        let read = env.read().unwrap();
        let store = TrustDb(&read);
        let validator = PathValidator::new(&store, PeerRole::Server, at);
        let path = validator.validate(&chain(&[&leaf])).unwrap();
        assert_eq!(path.anchor.valexp, "Tt|");
        assert!(check_revocation(&store, &path, RevocationPolicy::RequireList, at).is_ok());

        let old_path = validator.validate(&chain(&[&revoked])).unwrap();
        let err = check_revocation(&store, &old_path, RevocationPolicy::AllowMissing, at);
        assert!(matches!(err, Err(ValidateError::Revoked { .. })), "{err:?}");

        let client_peer = PathValidator::new(&store, PeerRole::Client, at);
        assert!(
            client_peer.validate(&chain(&[&leaf])).is_err(),
            "anchor only for clients"
        );

        let leaf = leaf.parsed();
        assert_eq!(
            pin_status(&store, &leaf, PeerRole::Server, at),
            PinStatus::Replaceable
        );
        assert_eq!(
            pin_status(&store, &leaf, PeerRole::Server, day(2025, 1, 1)),
            PinStatus::Success
        );
        assert_eq!(
            pin_status(&store, &leaf, PeerRole::Server, day(2025, 7, 1)),
            PinStatus::Expired
        );
        assert_eq!(
            pin_status(&store, &leaf, PeerRole::Client, at),
            PinStatus::NotFound
        );
        assert_eq!(
            pin_status(&store, &revoked.parsed(), PeerRole::Server, at),
            PinStatus::Invalid
        );
    }
}
