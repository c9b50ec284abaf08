//! Validation of the peer after the handshake, failing closed: the facts about its certificate
//! chain (trust anchors of the peer's role, revocation entries, pins, its name against the
//! requested remote identity), the handshake and the local credential, and the validation
//! expression over them. The result is the authenticated remote identity.
//!
//! A requested remote identity is checked whatever the expression says, even `1`: a peer
//! whose certificate does not carry it is rejected with `EACCES`, never reported under the
//! name its certificate carries. A certificate of the domain of a requested `user@domain`
//! passes only when the expression names `i`, which lets a domain speak for its users.
//!
//! [`prepare`] gathers everything from the session and the databases without waiting, and
//! [`decide`] evaluates the expression, with the online checks, without holding either.

use std::collections::HashMap;
use std::time::SystemTime;

use tracing::{info, warn};

use tlspool_core::db::{
    self, CredentialType, Database, DbEnv, DbRead as _, LocalIdEntry, LocalIdFlags,
};
use tlspool_core::logging::TARGET_CERT;
use tlspool_core::tls::{ProtocolVersion, Role, Session};
use tlspool_proto::StartTlsFlags;
use tlspool_validate::predicates::{AnchorPkix, Finding, evaluate};
use tlspool_validate::valexp::Predicate;
use tlspool_validate::x509::{
    AnchorSet, Certificate, PathValidator, PeerRole, RevocationPolicy, TrustDb, ValidPath,
    ValidateError, check_name, check_revocation_stapled, identity_names, pin_status,
};

use super::credentials::parse_donai;
use super::error::{PeerCause, StartTlsError};
use super::privacy::PrivacyOutcome;
use super::validation::{self, CHECK_TIMEOUT, DaneService, HandshakeChecks, Source, Validation};

mod openpgp;

/// The validation expression that the trust database uses for "no constraint".
const NO_CONSTRAINT: &str = "1";

/// What the request and the handshake tell about the peer.
pub(crate) struct PeerRequest<'a> {
    pub flags: StartTlsFlags,
    /// The requested remote identity, possibly empty.
    pub remote_id: &'a str,
    /// The local identity of the handshake, empty for an anonymous client.
    pub local_id: &'a str,
    /// The TCP port of the peer.
    pub peer_port: Option<u16>,
    /// What privacy mode did in the handshake, for `A` and `a`.
    pub privacy: PrivacyOutcome,
}

/// The peer, ready for the expression: the sources and every input of the checks.
pub(crate) struct Prepared {
    sources: Vec<Source>,
    local: HashMap<Predicate, Finding>,
    /// The certificate check failures behind false local findings.
    causes: HashMap<Predicate, PeerCause>,
    chain_der: Vec<Vec<u8>>,
    pkix: AnchorPkix,
    dane: Result<DaneService, String>,
    /// The authenticated identity: the requested remote identity when the certificate carries
    /// it, the one the certificate names when none was requested, and otherwise the rejection.
    identity: Result<String, StartTlsError>,
    /// The certificate carries only the domain of a requested `user@domain` identity, which
    /// authenticates the user only when the expression names `i`.
    domain_match: bool,
    /// The identity of the directory check: the requested one or the certificate's.
    directory_id: String,
    ignore_caches: bool,
    /// The DER SubjectPublicKeyInfo when the peer sent an RFC 7250 raw public key.
    raw_public_key: Option<Vec<u8>>,
}

/// Either an identity decided without an expression or a peer to evaluate.
pub(crate) enum Peer {
    /// `IGNORE_REMOTEID`, or an anonymous peer that `REQUEST_REMOTEID` lets pass.
    Decided(String),
    /// A peer certificate to validate.
    Evaluate(Box<Prepared>),
}

/// Gathers the facts about the peer of the completed handshake of `session`.
///
/// With `IGNORE_REMOTEID` nothing is checked and no identity is authenticated. Otherwise the
/// peer must send a certificate, unless `REQUEST_REMOTEID` lets an anonymous peer pass with
/// an empty identity.
///
/// # Errors
///
/// [`StartTlsError::PeerCertificateMissing`], [`StartTlsError::PeerRejected`] for a
/// certificate that does not decode, or a database error.
pub(crate) fn prepare(
    databases: &DbEnv,
    validation: &Validation,
    session: &Session,
    request: &PeerRequest<'_>,
) -> Result<Peer, StartTlsError> {
    let flags = request.flags;
    if flags.contains(StartTlsFlags::IGNORE_REMOTEID) {
        return Ok(Peer::Decided(String::new()));
    }
    if let Some(raw_key) = session.peer_raw_public_key() {
        return openpgp::prepare(databases, validation, session, request, &raw_key);
    }
    let chain_der = session.peer_certificates();
    if chain_der.is_empty() {
        if flags.contains(StartTlsFlags::REQUEST_REMOTEID) {
            return Ok(Peer::Decided(String::new()));
        }
        return Err(StartTlsError::PeerCertificateMissing);
    }
    let chain = chain_der
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| StartTlsError::PeerRejected { source })?;
    let leaf = &chain[0];

    let role = session.role();
    let peer_role = match role {
        Role::Client => PeerRole::Server,
        Role::Server => PeerRole::Client,
    };
    let now = SystemTime::now();
    let mut local = HashMap::new();
    let mut set = |letter: char, finding: Finding| {
        if let Some(predicate) = Predicate::from_letter(letter) {
            local.insert(predicate, finding);
        }
    };

    let txn = databases.read()?;
    let store = TrustDb(&txn);
    let validator = PathValidator::new(&store, peer_role, now);
    let path = validator.validate(&chain);
    let mut sources = Vec::new();
    let mut anchors = AnchorSet::new();
    if let Ok(valid) = &path {
        let valexp = valid.anchor.valexp.trim();
        if valexp != NO_CONSTRAINT {
            sources.push(Source {
                origin: "the trust anchor",
                text: valexp.to_owned(),
            });
        }
        anchors.add_anchor(valid.anchor.clone());
    }
    let stapled = session.stapled_ocsp_response();
    let stapled = stapled.as_deref();
    let (trusted, revocation_lists) = revocation_findings(&store, &path, now, stapled);
    let mut causes = HashMap::new();
    let (trust_cause, list_cause) = match &path {
        Ok(valid) => (
            check_revocation_stapled(&store, valid, RevocationPolicy::AllowMissing, now, stapled)
                .err(),
            check_revocation_stapled(&store, valid, RevocationPolicy::RequireList, now, stapled)
                .err(),
        ),
        Err(error) => (Some(error.clone()), Some(error.clone())),
    };
    for (letter, cause) in [
        ('T', &trust_cause),
        ('t', &trust_cause),
        ('r', &trust_cause),
        ('R', &list_cause),
    ] {
        if let (Some(predicate), Some(cause)) = (Predicate::from_letter(letter), cause) {
            causes.insert(predicate, PeerCause::Certificate(cause.clone()));
        }
    }
    if !request.remote_id.is_empty() {
        if let Err(cause) = check_name(leaf, request.remote_id) {
            for letter in ['I', 'i'] {
                if let Some(predicate) = Predicate::from_letter(letter) {
                    causes.insert(predicate, PeerCause::Certificate(cause.clone()));
                }
            }
        }
    }
    set('T', trusted.clone());
    set('r', trusted.clone());
    set('R', revocation_lists);
    set(
        't',
        match validator.validate_self_signed(&chain) {
            _ if trusted.value => trusted.clone(),
            Ok(()) => Finding::new(true, "a valid self-signed certificate"),
            Err(error) => Finding::new(
                false,
                format!("{}; not self-signed: {error}", trusted.reason),
            ),
        },
    );
    let pin = pin_status(&store, leaf, peer_role, now);
    set(
        'P',
        Finding::new(pin.is_pinned(), format!("pin status {pin:?}")),
    );
    set(
        'p',
        Finding::new(pin.is_pinned_or_first_use(), format!("pin status {pin:?}")),
    );
    drop(txn);

    let local_entries = local_entries(databases, request.local_id)?;
    push_local_sources(&local_entries, validation, &mut sources);
    role_findings(role, &local_entries, &mut set);
    set_identity_findings(leaf, request.remote_id, &mut set);
    let forward = forward_secrecy(session);
    set('F', forward.clone());
    set('f', forward);
    unchecked_findings(request.privacy, &mut set);

    let certificate_id = identity_of(leaf);
    let requested = (!request.remote_id.is_empty()).then(|| request.remote_id.to_owned());
    let directory_id = requested
        .clone()
        .or_else(|| certificate_id.as_ref().ok().cloned())
        .unwrap_or_default();
    let dane = match (role, request.peer_port) {
        (Role::Client, Some(port)) => Ok(DaneService {
            host: domain_of(&directory_id).to_owned(),
            port,
        }),
        (Role::Client, None) => Err("the peer's port is unknown".to_owned()),
        (Role::Server, _) => Err("DANE applies to a remote server only".to_owned()),
    };
    let exact_match = holds(&local, 'I');
    let domain_match = !exact_match && holds(&local, 'i');
    let identity = match requested {
        Some(remote_id) if exact_match => Ok(remote_id),
        Some(remote_id) => Err(remote_id_mismatch(leaf, &remote_id)),
        None => certificate_id,
    };
    Ok(Peer::Evaluate(Box::new(Prepared {
        sources,
        local,
        causes,
        chain_der,
        pkix: AnchorPkix::new(anchors, peer_role, now),
        dane,
        identity,
        domain_match,
        directory_id,
        ignore_caches: request.flags.contains(StartTlsFlags::IGNORE_CACHES),
        raw_public_key: None,
    })))
}

/// Tells whether the local finding of the predicate `letter` is true.
fn holds(local: &HashMap<Predicate, Finding>, letter: char) -> bool {
    Predicate::from_letter(letter)
        .and_then(|predicate| local.get(&predicate))
        .is_some_and(|finding| finding.value)
}

/// Builds the rejection of a certificate that does not carry the requested `remote_id`.
fn remote_id_mismatch(leaf: &Certificate, remote_id: &str) -> StartTlsError {
    let source = check_name(leaf, remote_id)
        .err()
        .unwrap_or_else(|| ValidateError::NameMismatch {
            expected: remote_id.to_owned(),
            presented: Vec::new(),
        });
    StartTlsError::PeerRejected { source }
}

/// Evaluates the expression of `peer` and returns the authenticated identity.
///
/// # Errors
///
/// [`StartTlsError::ValidationFailed`] naming the predicate that failed,
/// [`StartTlsError::InvalidValidationExpression`], or [`StartTlsError::NoPeerIdentity`].
pub(crate) async fn decide(peer: Peer, validation: &Validation) -> Result<String, StartTlsError> {
    let prepared = match peer {
        Peer::Decided(identity) => return Ok(identity),
        Peer::Evaluate(prepared) => *prepared,
    };
    let (form, expression) = match validation::combine(&prepared.sources) {
        Ok(combined) => combined,
        Err(error) => {
            warn!(target: TARGET_CERT, %error, "invalid validation expression, so the peer is rejected");
            return Err(error);
        }
    };
    let domain_speaks_for_users = Predicate::from_letter('i')
        .is_some_and(|weak_identity| form.predicates().contains(weak_identity));
    let checks = HandshakeChecks::new(
        prepared.local,
        validation.online().await,
        prepared.dane,
        prepared.directory_id,
        prepared.chain_der,
        prepared.pkix,
        prepared.ignore_caches,
    )
    .with_raw_public_key(prepared.raw_public_key);
    let verdict = evaluate(form, &checks, CHECK_TIMEOUT).await;
    let decided = verdict.decided_text();
    if verdict.accepted {
        info!(target: TARGET_CERT, expression, decided, "validation expression accepted the peer");
        // A raw public key names no one. When no trusted OpenPGP key binds it to the remote
        // identity, DNSSEC-secured DNS or the directory may have published it for that
        // identity during the evaluation.
        if prepared.identity.is_err() && checks.raw_public_key_published() {
            return Ok(checks.directory_id.clone());
        }
        if prepared.identity.is_err() && prepared.domain_match && domain_speaks_for_users {
            return Ok(checks.directory_id.clone());
        }
        if let Err(error) = &prepared.identity {
            warn!(target: TARGET_CERT, expression, %error,
                "the peer does not authenticate as the requested remote identity");
        }
        return prepared.identity;
    }
    let (failed_at, reason) = match &verdict.failed_at {
        Some(decision) => (
            decision.predicate.letter().to_string(),
            decision.finding.reason.clone(),
        ),
        None => ("its end".to_owned(), "no case can be true".to_owned()),
    };
    let cause = verdict
        .failed_at
        .as_ref()
        .and_then(|decision| prepared.causes.get(&decision.predicate).cloned())
        .map(Box::new);
    warn!(target: TARGET_CERT, expression, decided, failed_at, reason, "validation expression rejected the peer");
    Err(StartTlsError::ValidationFailed {
        expression,
        failed_at,
        reason,
        cause,
    })
}

/// Decides `A` and `a` from `privacy`, and the predicates this daemon does not check (`L`,
/// `l`, `E`, `e`, `U`, `u`, `Q` and `q`), each false with the reason.
fn unchecked_findings(privacy: PrivacyOutcome, set: &mut impl FnMut(char, Finding)) {
    let (ran, attempted) = privacy_findings(privacy);
    set('A', ran);
    set('a', attempted);
    for letter in ['L', 'l'] {
        set(
            letter,
            Finding::new(false, "local security levels are not implemented"),
        );
    }
    for letter in ['E', 'e'] {
        set(
            letter,
            Finding::new(false, "per-service extensions are not checked"),
        );
    }
    for letter in ['U', 'u'] {
        set(letter, Finding::new(false, "user names are not checked"));
    }
    for letter in ['Q', 'q'] {
        set(
            letter,
            Finding::new(false, "no quantum-proof mechanism is negotiated"),
        );
    }
}

/// Decides `T` (and `r`, which is the same: a chain to a trusted anchor that no revocation
/// list or `stapled` OCSP response revokes) and `R` (every certificate on the path has a
/// current revocation status).
fn revocation_findings(
    store: &TrustDb<'_, impl db::DbRead>,
    path: &Result<ValidPath, ValidateError>,
    now: SystemTime,
    stapled: Option<&[u8]>,
) -> (Finding, Finding) {
    let valid = match path {
        Ok(valid) => valid,
        Err(error) => {
            let reason = error.to_string();
            return (
                Finding::new(false, reason.clone()),
                Finding::new(false, reason),
            );
        }
    };
    let trusted = match check_revocation_stapled(
        store,
        valid,
        RevocationPolicy::AllowMissing,
        now,
        stapled,
    ) {
        Ok(()) => Finding::new(true, "the chain validates to a trusted anchor"),
        Err(error) => Finding::new(false, error.to_string()),
    };
    let lists =
        match check_revocation_stapled(store, valid, RevocationPolicy::RequireList, now, stapled) {
            Ok(()) => Finding::new(true, "a current revocation status covers the chain"),
            Err(error) => Finding::new(false, error.to_string()),
        };
    (trusted, lists)
}

/// Adds the expressions of the local identity's `LID_TYPE_VALEXP` entries and
/// `validate_default` to `sources`.
fn push_local_sources(
    local_entries: &[LocalIdEntry],
    validation: &Validation,
    sources: &mut Vec<Source>,
) {
    for entry in local_entries
        .iter()
        .filter(|entry| entry.credential_type == CredentialType::Valexp)
    {
        // An entry stored without the expression (`LID_NO_PKCS11`) counts as an empty
        // expression, which does not parse and so rejects the peer.
        let text = entry.pkcs11_uri.as_deref().unwrap_or_default();
        sources.push(Source {
            origin: "the local identity",
            text: text.trim().to_owned(),
        });
    }
    if let Some(text) = validation.validate_default() {
        sources.push(Source {
            origin: "validate_default",
            text: text.to_owned(),
        });
    }
}

/// Reads the localid entries of `local_id`; an anonymous client has none.
fn local_entries(databases: &DbEnv, local_id: &str) -> Result<Vec<LocalIdEntry>, StartTlsError> {
    if local_id.is_empty() {
        return Ok(Vec::new());
    }
    let key = parse_donai("localid", local_id)?.to_string();
    let values = databases
        .read()?
        .values(Database::LocalId, key.as_bytes())?;
    Ok(values
        .iter()
        .filter_map(|value| LocalIdEntry::decode(value).ok())
        .collect())
}

/// Decides `S`, `s`, `C` and `c` from the local role and the roles of the X.509 or OpenPGP
/// credential in use (the first one usable for the role, as the credential lookup picks it).
fn role_findings(role: Role, entries: &[LocalIdEntry], set: &mut impl FnMut(char, Finding)) {
    let db_role = match role {
        Role::Client => db::Role::Client,
        Role::Server => db::Role::Server,
    };
    let credential = entries.iter().find(|entry| {
        matches!(
            entry.credential_type,
            CredentialType::X509 | CredentialType::OpenPgp
        ) && entry.is_usable_for(db_role)
    });
    let both = credential.is_some_and(|entry| {
        entry
            .flags
            .contains(LocalIdFlags::ROLE_CLIENT | LocalIdFlags::ROLE_SERVER)
    });
    let (is_server, single) = (role == Role::Server, credential.is_some() && !both);
    let only = |side: &str| {
        if single {
            Finding::new(true, format!("local {side} with a {side}-only credential"))
        } else {
            Finding::new(false, format!("the local credential is not {side}-only"))
        }
    };
    let side = |value: bool, name: &str| {
        Finding::new(
            value,
            format!(
                "the local side is {}",
                if value { name } else { "the other role" }
            ),
        )
    };
    set('s', side(is_server, "server"));
    set('c', side(!is_server, "client"));
    set(
        'S',
        if is_server {
            only("server")
        } else {
            Finding::new(false, "the local side is client")
        },
    );
    set(
        'C',
        if is_server {
            Finding::new(false, "the local side is server")
        } else {
            only("client")
        },
    );
}

/// Decides `I` (the certificate carries the requested remote identity, or any usable identity
/// when none is requested) and `i` (also its domain, which may speak for its users).
fn set_identity_findings(leaf: &Certificate, remote_id: &str, set: &mut impl FnMut(char, Finding)) {
    if remote_id.is_empty() {
        let finding = match identity_of(leaf) {
            Ok(identity) => Finding::new(true, format!("the certificate names {identity}")),
            Err(error) => Finding::new(false, error.to_string()),
        };
        set('I', finding.clone());
        set('i', finding);
        return;
    }
    let exact = match check_name(leaf, remote_id) {
        Ok(()) => Finding::new(true, format!("the certificate carries {remote_id}")),
        Err(error) => Finding::new(false, error.to_string()),
    };
    let domain = domain_of(remote_id);
    let weak = if exact.value || domain == remote_id {
        exact.clone()
    } else {
        match check_name(leaf, domain) {
            Ok(()) => Finding::new(true, format!("the certificate carries the domain {domain}")),
            Err(error) => Finding::new(false, format!("{}; {error}", exact.reason)),
        }
    };
    set('I', exact);
    set('i', weak);
}

/// Decides `F` and `f`: TLS 1.3 always agrees on an ephemeral (EC)DHE key, and TLS 1.2 does
/// with a DHE or ECDHE cipher suite. GnuTLS offers no fixed-DH suites, so `f` equals `F`.
fn forward_secrecy(session: &Session) -> Finding {
    let suite = session.cipher_suite().unwrap_or_default();
    // NOTE: a resumed TLS 1.3 session with psk_ke (no key share) would count as forward
    // secret here; the daemon does not resume sessions.
    if session.protocol_version() == Some(ProtocolVersion::Tls13) {
        return Finding::new(true, format!("TLS 1.3 with {suite}"));
    }
    let ephemeral = suite.contains("_DHE_") || suite.contains("_ECDHE_");
    Finding::new(ephemeral, format!("cipher suite {suite}"))
}

/// Decides `A` (the anonymous precursor ran, so the certificates crossed encrypted) and `a`
/// (privacy mode was attempted).
fn privacy_findings(privacy: PrivacyOutcome) -> (Finding, Finding) {
    match privacy {
        PrivacyOutcome::Ran => {
            let finding = Finding::new(true, "the anonymous precursor ran before authentication");
            (finding.clone(), finding)
        }
        PrivacyOutcome::Declined => (
            Finding::new(false, "the peer chose an authenticated first handshake"),
            Finding::new(true, "the anonymous precursor was offered"),
        ),
        PrivacyOutcome::NotAttempted => {
            let finding = Finding::new(false, "privacy mode was not attempted");
            (finding.clone(), finding)
        }
    }
}

/// Returns the domain of a DoNAI: the part after the last `@`, or all of it.
fn domain_of(donai: &str) -> &str {
    donai.rsplit_once('@').map_or(donai, |(_, domain)| domain)
}

/// Takes the peer's identity from its certificate: the first name of [`identity_names`]
/// that is a DoNAI short enough for the identity field. The path check applies the
/// nameConstraints to exactly those names, so a commonName that names neither a host nor a
/// mail address is never taken.
fn identity_of(leaf: &Certificate) -> Result<String, StartTlsError> {
    for name in identity_names(leaf) {
        let candidate = name.text();
        if parse_donai("peer certificate name", candidate).is_ok()
            && candidate.len() < tlspool_proto::ID_FIELD_LEN
        {
            return Ok(candidate.to_owned());
        }
    }
    Err(StartTlsError::NoPeerIdentity {
        subject: leaf.subject().to_owned(),
    })
}
