//! Validation of a peer that authenticated with an RFC 7250 raw public key. The key is matched
//! against OpenPGP keys of the remote identity from three sources: the trust database (`pgp`
//! or `pinned-pgp`, for the local role), OPENPGPKEY records under DNSSEC (RFC 7929) and
//! `pgpKey` values in the global directory. A matching OpenPGP key has the raw key as its
//! authentication key and a valid, unrevoked user ID whose email address is the remote
//! identity. A raw key that is no OpenPGP key at all can still match a DANE-EE TLSA record
//! with the SubjectPublicKeyInfo selector.
//!
//! The facts feed the same validation expression as an X.509 peer. `I` and `i` are true when
//! an OpenPGP key of the trust database carries the identity. `T`, `t`, `r` and `R` are true
//! when the trust database contains the key, and `P` and `p` when it pins it. `D` and `d` check
//! the OPENPGPKEY records of a `user@domain` identity and, for a remote server, the TLSA
//! records of its service. `O`, `o`, `G` and `g` check the global directory for a `pgpKey`
//! value that matches the raw key. When the identity was requested and `D`, `d` or a
//! directory predicate found the key published for it, the peer is authenticated as that
//! identity even without a trust database entry.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use sequoia_openpgp::policy::StandardPolicy;
use tracing::debug;

use tlspool_core::db::{self, Database, DbEnv, DbRead as _, TrustEntry, TrustType};
use tlspool_core::tls::{Role, Session};
use tlspool_validate::openpgp::{
    AuthenticationKey, Mismatch, OpenPgpError, PeerMatch, match_raw_public_key,
    parse_transferable_public_key, subject_public_key_info,
};
use tlspool_validate::predicates::{AnchorPkix, Finding};
use tlspool_validate::valexp::Predicate;
use tlspool_validate::x509::{AnchorSet, PeerRole};

use super::{
    NO_CONSTRAINT, Peer, PeerRequest, Prepared, StartTlsError, domain_of, forward_secrecy,
    local_entries, push_local_sources, role_findings, unchecked_findings,
};
use crate::starttls::error::{OpenPgpRejection, PeerCause};
use crate::starttls::validation::{DaneService, Source, Validation};

/// An OpenPGP key of the trust database that a raw public key may belong to.
struct Candidate {
    entry: TrustEntry,
}

/// Gathers the facts about a peer that sent the raw public key `raw_key`.
///
/// # Errors
///
/// A database error, or [`StartTlsError::NoPeerIdentity`] when no remote identity was
/// requested and no OpenPGP key of the trust database names the peer.
pub(super) fn prepare(
    databases: &DbEnv,
    validation: &Validation,
    session: &Session,
    request: &PeerRequest<'_>,
    raw_key: &[u8],
) -> Result<Peer, StartTlsError> {
    let role = session.role();
    let (db_role, peer_role) = match role {
        Role::Client => (db::Role::Client, PeerRole::Server),
        Role::Server => (db::Role::Server, PeerRole::Client),
    };
    let now = SystemTime::now();
    let policy = StandardPolicy::new();
    let candidates = trusted_keys(databases, db_role)?;

    let requested = (!request.remote_id.is_empty()).then(|| request.remote_id.to_owned());
    let remote_id = match &requested {
        Some(remote_id) => remote_id.clone(),
        None => named_identity(&candidates, raw_key, &policy, now).ok_or_else(|| {
            StartTlsError::NoPeerIdentity {
                subject: "the raw public key of no OpenPGP key in the trust database".to_owned(),
            }
        })?,
    };
    let matched = match_raw_public_key(
        raw_key,
        &remote_id,
        candidates.iter().map(|c| c.entry.data.as_slice()),
        &policy,
        now,
    );

    let mut local = HashMap::new();
    let mut set = |letter: char, finding: Finding| {
        if let Some(predicate) = Predicate::from_letter(letter) {
            local.insert(predicate, finding);
        }
    };
    let mut sources = Vec::new();
    let mut causes = HashMap::new();
    match &matched {
        Ok(found) => {
            let entry = &candidates[found.candidate].entry;
            let valexp = entry.valexp.trim();
            if valexp != NO_CONSTRAINT {
                sources.push(Source {
                    origin: "the trust anchor",
                    text: valexp.to_owned(),
                });
            }
            set_matched_findings(found, entry, now, &mut set);
        }
        Err(error) => {
            debug!(remote_id, %error, "raw public key matches no trusted OpenPGP key");
            let finding = Finding::new(false, rejection_reason(error, &candidates, raw_key));
            let rejection = rejection_class(error, &candidates, raw_key);
            // NOTE: `I` and `i` stay false even when an OPENPGPKEY record or a `pgpKey` value
            // carries the identity, because only `D`, `d` and the directory predicates look
            // those up. Use `D` or `O` rather than `I` for such peers.
            for letter in ['I', 'i', 'T', 't', 'r', 'R', 'P', 'p'] {
                set(letter, finding.clone());
                if let Some(predicate) = Predicate::from_letter(letter) {
                    causes.insert(predicate, PeerCause::OpenPgp(rejection));
                }
            }
        }
    }

    let local_entries = local_entries(databases, request.local_id)?;
    push_local_sources(&local_entries, validation, &mut sources);
    role_findings(role, &local_entries, &mut set);
    let forward = forward_secrecy(session);
    set('F', forward.clone());
    set('f', forward);
    unchecked_findings(request.privacy, &mut set);

    let identity = match &matched {
        Ok(_) => Ok(remote_id.clone()),
        Err(error) => Err(StartTlsError::OpenPgpKeyRejected {
            rejection: rejection_class(error, &candidates, raw_key),
            reason: rejection_reason(error, &candidates, raw_key),
        }),
    };
    let dane = match (role, request.peer_port) {
        (Role::Client, Some(port)) => Ok(DaneService {
            host: domain_of(&remote_id).to_owned(),
            port,
        }),
        (Role::Client, None) => Err("the peer's port is unknown".to_owned()),
        (Role::Server, _) => Err("DANE applies to a remote server only".to_owned()),
    };
    Ok(Peer::Evaluate(Box::new(Prepared {
        sources,
        local,
        causes,
        chain_der: Vec::new(),
        pkix: AnchorPkix::new(AnchorSet::new(), peer_role, now),
        dane,
        identity,
        domain_match: false,
        directory_id: remote_id,
        ignore_caches: request
            .flags
            .contains(tlspool_proto::StartTlsFlags::IGNORE_CACHES),
        raw_public_key: Some(raw_key.to_vec()),
    })))
}

/// Reads the `pgp` and `pinned-pgp` entries of the trust database that apply to `role`.
fn trusted_keys(databases: &DbEnv, role: db::Role) -> Result<Vec<Candidate>, StartTlsError> {
    let pairs = databases.read()?.pairs(Database::Trust)?;
    let candidates = pairs
        .iter()
        .filter_map(|(_, value)| TrustEntry::decode(value).ok())
        .filter(|entry| matches!(entry.trust_type, TrustType::OpenPgp | TrustType::PinnedPgp))
        .filter(|entry| entry.applies_to(role))
        .map(|entry| Candidate { entry })
        .collect();
    Ok(candidates)
}

/// Returns the email address of the first valid user ID of the candidate whose
/// authentication key is `raw_key`, for a peer whose identity was not requested.
fn named_identity(
    candidates: &[Candidate],
    raw_key: &[u8],
    policy: &StandardPolicy<'_>,
    now: SystemTime,
) -> Option<String> {
    candidates.iter().find_map(|candidate| {
        let key = AuthenticationKey::from_bytes(&candidate.entry.data, policy, now).ok()?;
        if key.subject_public_key_info != raw_key {
            return None;
        }
        let cert = parse_transferable_public_key(&candidate.entry.data).ok()?;
        let valid = cert.with_policy(policy, now).ok()?;
        valid
            .userids()
            .find_map(|user_id| user_id.userid().email().ok().flatten())
            .map(|address| address.to_string())
    })
}

/// Describes why no candidate matched, naming only the candidates that hold the raw key (a
/// revoked key, a missing user ID), because the reason must fit the ERROR message.
fn rejection_reason(error: &OpenPgpError, candidates: &[Candidate], raw_key: &[u8]) -> String {
    let OpenPgpError::NoMatchingKey {
        remote_id,
        rejections,
    } = error
    else {
        return error.to_string();
    };
    let relevant: Vec<String> = rejections
        .iter()
        .filter(|rejection| {
            candidates
                .get(rejection.candidate)
                .is_some_and(|candidate| holds_key(&candidate.entry.data, raw_key))
        })
        .map(|rejection| short_reason(&rejection.mismatch))
        .collect();
    if relevant.is_empty() {
        return format!("no trusted OpenPGP key of {remote_id} holds the raw public key");
    }
    relevant.join("; ")
}

/// Classifies why no candidate matched, from the candidates that hold the raw key: a revoked
/// key or user ID first, then an expired key, then a missing user ID.
fn rejection_class(
    error: &OpenPgpError,
    candidates: &[Candidate],
    raw_key: &[u8],
) -> OpenPgpRejection {
    let OpenPgpError::NoMatchingKey { rejections, .. } = error else {
        return OpenPgpRejection::Other;
    };
    let classes: Vec<OpenPgpRejection> = rejections
        .iter()
        .filter(|rejection| {
            candidates
                .get(rejection.candidate)
                .is_some_and(|candidate| holds_key(&candidate.entry.data, raw_key))
        })
        .map(|rejection| match &rejection.mismatch {
            Mismatch::Key(OpenPgpError::Revoked { .. }) | Mismatch::UserIdRevoked { .. } => {
                OpenPgpRejection::Revoked
            }
            Mismatch::Key(OpenPgpError::Expired { .. }) => OpenPgpRejection::Expired,
            Mismatch::NoUserId { .. } => OpenPgpRejection::UserIdMismatch,
            _ => OpenPgpRejection::Other,
        })
        .collect();
    [
        OpenPgpRejection::Revoked,
        OpenPgpRejection::Expired,
        OpenPgpRejection::UserIdMismatch,
    ]
    .into_iter()
    .find(|class| classes.contains(class))
    .unwrap_or(OpenPgpRejection::Other)
}

/// Words a mismatch without fingerprints, which the debug log carries, so that the reason fits
/// the 128-byte message of an ERROR reply.
fn short_reason(mismatch: &Mismatch) -> String {
    match mismatch {
        Mismatch::Key(OpenPgpError::Revoked { .. }) => "the OpenPGP key is revoked".to_owned(),
        Mismatch::Key(OpenPgpError::Expired { .. }) => "the OpenPGP key expired".to_owned(),
        Mismatch::NoUserId { address, .. } => {
            format!("the OpenPGP key has no user ID <{address}>")
        }
        Mismatch::UserIdRevoked { user_id, .. } => format!("user ID {user_id:?} is revoked"),
        Mismatch::KeyNotSelected { .. } => {
            "the raw key is no OpenPGP authentication key".to_owned()
        }
        other => other.to_string(),
    }
}

/// Tells whether any key of the transferable public key derives `raw_key`, whatever its
/// state.
fn holds_key(transferable_public_key: &[u8], raw_key: &[u8]) -> bool {
    parse_transferable_public_key(transferable_public_key).is_ok_and(|cert| {
        cert.keys()
            .any(|key| subject_public_key_info(key.key()).is_ok_and(|spki| spki == raw_key))
    })
}

/// Decides the predicates for a raw public key that belongs to the trust entry `entry`.
fn set_matched_findings(
    found: &PeerMatch,
    entry: &TrustEntry,
    now: SystemTime,
    set: &mut impl FnMut(char, Finding),
) {
    let named = Finding::new(
        true,
        format!(
            "OpenPGP key {} carries the user ID {}",
            found.key.certificate, found.user_id
        ),
    );
    set('I', named.clone());
    set('i', named);
    let trusted = Finding::new(
        true,
        format!(
            "OpenPGP key {} is a {} entry of the trust database",
            found.key.certificate,
            entry.trust_type.name()
        ),
    );
    for letter in ['T', 't', 'r', 'R'] {
        set(letter, trusted.clone());
    }
    let pinned = pin_finding(entry, now);
    set('P', pinned.clone());
    set('p', pinned);
}

/// Decides `P` for a matched trust entry: a `pinned-pgp` entry whose hard expiry, if it has
/// one, has not passed.
fn pin_finding(entry: &TrustEntry, now: SystemTime) -> Finding {
    if entry.trust_type != TrustType::PinnedPgp {
        return Finding::new(false, "the OpenPGP key is trusted, not pinned");
    }
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    match entry.pinned_validity().and_then(|validity| validity.expiry) {
        Some(expiry) if u64::from(expiry) <= seconds => {
            Finding::new(false, format!("the OpenPGP pin expired at {expiry}"))
        }
        _ => Finding::new(true, "the OpenPGP key is pinned"),
    }
}
