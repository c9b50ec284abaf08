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
