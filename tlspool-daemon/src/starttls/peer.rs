//! Validation of the peer after the handshake, failing closed: its certificate chain against
//! the trust database for the peer's role, its revocation entries, and its name against the
//! requested remote identity. The result is the authenticated remote identity.

use std::time::SystemTime;

use tlspool_core::db::DbEnv;
use tlspool_core::tls::{Role, Session};
use tlspool_proto::StartTlsFlags;
use tlspool_validate::x509::{
    Certificate, PathValidator, PeerRole, RevocationPolicy, TrustDb, check_name, check_revocation,
};

use super::credentials::parse_donai;
use super::error::StartTlsError;

/// The validation expression that the trust database uses for "no constraint".
const NO_CONSTRAINT: &str = "1";

/// Validates the peer of the completed handshake of `session` and returns its authenticated
/// identity, or an empty string when there is none.
///
/// With `IGNORE_REMOTEID` nothing is checked and no identity is authenticated. Otherwise the
/// peer must send a certificate (unless `REQUEST_REMOTEID`, which lets an anonymous peer pass
/// with an empty identity), its chain must validate to a trust anchor for the peer's role,
/// and none of it may be listed as revoked. When `remote_id` is set, the end certificate must
/// carry it; when it is empty, the identity is taken from the certificate.
///
/// # Errors
///
/// [`StartTlsError::PeerCertificateMissing`], [`StartTlsError::PeerRejected`] with the
/// precise reason, [`StartTlsError::ValidationExpressionNotEvaluated`],
/// [`StartTlsError::NoPeerIdentity`], or a database error.
pub(crate) fn authenticate(
    databases: &DbEnv,
    session: &Session,
    flags: StartTlsFlags,
    remote_id: &str,
) -> Result<String, StartTlsError> {
    if flags.contains(StartTlsFlags::IGNORE_REMOTEID) {
        return Ok(String::new());
    }
    let chain = session.peer_certificates();
    if chain.is_empty() {
        if flags.contains(StartTlsFlags::REQUEST_REMOTEID) {
            return Ok(String::new());
        }
        return Err(StartTlsError::PeerCertificateMissing);
    }
    let rejected = |source| StartTlsError::PeerRejected { source };
    let chain = chain
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(rejected)?;

    let peer_role = match session.role() {
        Role::Client => PeerRole::Server,
        Role::Server => PeerRole::Client,
    };
    let now = SystemTime::now();
    let txn = databases.read()?;
    let store = TrustDb(&txn);
    let path = PathValidator::new(&store, peer_role, now)
        .validate(&chain)
        .map_err(rejected)?;
    check_revocation(&store, &path, RevocationPolicy::AllowMissing, now).map_err(rejected)?;
    // NOTE: validation expressions (the predicates beyond the chain and revocation checks)
    // are not evaluated yet, so an anchor that carries one rejects every peer under it.
    let valexp = path.anchor.valexp.trim();
    if valexp != NO_CONSTRAINT {
        return Err(StartTlsError::ValidationExpressionNotEvaluated {
            valexp: valexp.to_owned(),
        });
    }

    let leaf = &chain[0];
    if !remote_id.is_empty() {
        check_name(leaf, remote_id).map_err(rejected)?;
        return Ok(remote_id.to_owned());
    }
    identity_of(leaf)
}

/// Takes the peer's identity from its certificate: the first dNSName, else the first
/// rfc822Name, else the subject's emailAddress, else its commonName.
fn identity_of(leaf: &Certificate) -> Result<String, StartTlsError> {
    let candidates = leaf
        .dns_names()
        .into_iter()
        .chain(leaf.email_names())
        .map(str::to_owned)
        .chain(leaf.email_addresses().iter().cloned())
        .chain(leaf.common_names().iter().cloned());
    for candidate in candidates {
        if parse_donai("peer certificate name", &candidate).is_ok()
            && candidate.len() < tlspool_proto::ID_FIELD_LEN
        {
            return Ok(candidate);
        }
    }
    Err(StartTlsError::NoPeerIdentity {
        subject: leaf.subject().to_owned(),
    })
}
