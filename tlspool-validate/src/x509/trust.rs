//! Trust anchors, revocation lists and pins: the records of the trust database that path
//! validation consults, and the [`TrustStore`] it reads them through.
//!
//! Keys follow the trust database of the TLS Pool version 2 protocol:
//!
//! - An X.509 anchor is stored under its SubjectKeyIdentifier, which equals the
//!   AuthorityKeyIdentifier of the certificates it issued.
//! - A revocation list is stored under the key of the issuer whose certificates it revokes,
//!   which is the same key as that issuer's anchor entry. Revocation lists apply to both roles,
//!   whatever their role bits.
//! - A pinned end certificate is stored under the SHA-256 of its DER encoding.

use std::time::{Duration, SystemTime};

use super::{Certificate, ValidateError};

/// The role of the peer whose certificate chain is validated.
///
/// A peer that is a TLS server is validated by a local client, so the anchors that apply are
/// those with `TAD_ROLE_CLIENT` ("clients may trust this anchor") and the end certificate
/// needs the serverAuth purpose. A peer that is a TLS client is validated by a local server,
/// under anchors with `TAD_ROLE_SERVER`, and needs clientAuth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRole {
    /// The peer is a TLS server; the local side is a client.
    Server,
    /// The peer is a TLS client; the local side is a server.
    Client,
}

/// A trust anchor: a certificate whose public key and subject end a path.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// The anchor certificate.
    pub certificate: Certificate,
    /// Local clients may trust it to validate servers (`TAD_ROLE_CLIENT`).
    pub for_clients: bool,
    /// Local servers may trust it to validate clients (`TAD_ROLE_SERVER`).
    pub for_servers: bool,
    /// Trusted, but not a self-signed root (`TAD_NOTROOT`): an intermediate that ends paths.
    pub not_root: bool,
    /// The validation expression for peers validated under this anchor; `"1"` means none.
    pub valexp: String,
}

/// A revocation list: the serial numbers an issuer revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    /// Time of this list.
    pub this_update: SystemTime,
    /// Time of the next expected list.
    pub next_update: SystemTime,
    /// The revoked serial numbers: the content octets of each DER INTEGER.
    pub serials: Vec<Vec<u8>>,
}

/// A pinned end certificate with its optional hard expiry and roll-over window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// Local clients pin this server certificate (`TAD_ROLE_CLIENT`).
    pub for_clients: bool,
    /// Local servers pin this client certificate (`TAD_ROLE_SERVER`).
    pub for_servers: bool,
    /// After this time the pin no longer holds.
    pub expiry: Option<SystemTime>,
    /// The time before the expiry from which a new certificate may silently replace this one.
    pub rollover_window: Option<Duration>,
}

/// One record stored under a key of the trust store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TrustRecord {
    /// An X.509 trust anchor (`TAD_TYPE_X509`).
    Anchor(Box<Anchor>),
    /// An X.509 revocation list (`TAD_TYPE_REVOKE_X509`).
    Revocation(RevocationList),
    /// A pinned X.509 end certificate (`TAD_TYPE_PINNED_X509`).
    Pinned(Pin),
    /// A record that does not decode or does not fit its type; it counts as invalid.
    Invalid(String),
}

/// The outcome of looking up the pin of an end certificate; the numbers are the status values
/// of the TLS Pool version 2 protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinStatus {
    /// 0: pinned, and the pin holds.
    Success = 0,
    /// 1: no pin for this certificate and role.
    NotFound = 1,
    /// 2: the pinned entry is malformed.
    Invalid = 2,
    /// 3: pinned and still valid, but inside its roll-over window.
    Replaceable = 3,
    /// 4: the pin has passed its hard expiry.
    Expired = 4,
}

/// Read access to trust anchors, revocation lists and pins by key.
pub trait TrustStore {
    /// Returns the records stored under `key`, in their stored order.
    ///
    /// # Errors
    ///
    /// [`ValidateError::TrustStore`] when the store cannot be read.
    fn records(&self, key: &[u8]) -> Result<Vec<TrustRecord>, ValidateError>;

    /// Returns anchors whose subject has the DER encoding `subject`, for certificates that
    /// carry no AuthorityKeyIdentifier. The default finds none, which is right for stores
    /// indexed only by key.
    fn anchors_by_subject(&self, subject: &[u8]) -> Vec<Anchor> {
        let _ = subject;
        Vec::new()
    }
}

/// An in-memory trust store, such as a PEM bundle of anchors given on a command line.
#[derive(Debug, Clone, Default)]
pub struct AnchorSet {
    records: Vec<(Vec<u8>, TrustRecord)>,
}

impl PeerRole {
    /// Returns the extended key usage the peer's end certificate needs, by its RFC 5280 name.
    pub fn purpose_name(self) -> &'static str {
        match self {
            Self::Server => "serverAuth",
            Self::Client => "clientAuth",
        }
    }
}

impl Anchor {
    /// Tells whether a validation of a peer in `role` may end at this anchor.
    pub fn applies_to(&self, role: PeerRole) -> bool {
        match role {
            PeerRole::Server => self.for_clients,
            PeerRole::Client => self.for_servers,
        }
    }
}

impl Pin {
    /// Works out the status of this pin at time `at`.
    pub fn status_at(&self, at: SystemTime) -> PinStatus {
        let Some(expiry) = self.expiry else {
            return PinStatus::Success;
        };
        if at >= expiry {
            return PinStatus::Expired;
        }
        let window = self.rollover_window.unwrap_or_default();
        match expiry.checked_sub(window) {
            Some(start) if !window.is_zero() && at >= start => PinStatus::Replaceable,
            None => PinStatus::Replaceable,
            _ => PinStatus::Success,
        }
    }

    /// Tells whether a validation of a peer in `role` uses this pin.
    pub fn applies_to(&self, role: PeerRole) -> bool {
        match role {
            PeerRole::Server => self.for_clients,
            PeerRole::Client => self.for_servers,
        }
    }
}

impl PinStatus {
    /// Returns the status code of the TLS Pool version 2 protocol.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Tells whether the `P` predicate holds: the certificate is pinned and the pin has not
    /// expired (a pin inside its roll-over window still counts).
    pub fn is_pinned(self) -> bool {
        matches!(self, Self::Success | Self::Replaceable)
    }

    /// Tells whether the `p` predicate (trust on first use) holds: as for `P`, or no pin
    /// exists yet for this certificate.
    pub fn is_pinned_or_first_use(self) -> bool {
        self.is_pinned() || self == Self::NotFound
    }
}

impl AnchorSet {
    /// Creates an empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every certificate of a PEM bundle (or concatenated DER) as an anchor for both
    /// roles with no validation expression. Self-issued certificates become roots, others
    /// `not_root` anchors.
    ///
    /// # Errors
    ///
    /// As for [`Certificate::parse_chain`].
    pub fn add_bundle(&mut self, input: &[u8]) -> Result<usize, ValidateError> {
        let certificates = Certificate::parse_chain(input)?;
        let count = certificates.len();
        for certificate in certificates {
            let not_root = !certificate.is_self_issued();
            self.add_anchor(Anchor {
                certificate,
                for_clients: true,
                for_servers: true,
                not_root,
                valexp: "1".into(),
            });
        }
        Ok(count)
    }

    /// Adds an anchor under its key identifier.
    pub fn add_anchor(&mut self, anchor: Anchor) {
        let key = anchor.certificate.key_id();
        self.records
            .push((key, TrustRecord::Anchor(Box::new(anchor))));
    }

    /// Adds a record under `key`.
    pub fn insert(&mut self, key: &[u8], record: TrustRecord) {
        self.records.push((key.to_vec(), record));
    }
}

impl TrustStore for AnchorSet {
    fn records(&self, key: &[u8]) -> Result<Vec<TrustRecord>, ValidateError> {
        Ok(self
            .records
            .iter()
            .filter(|(stored, _)| stored == key)
            .map(|(_, record)| record.clone())
            .collect())
    }

    fn anchors_by_subject(&self, subject: &[u8]) -> Vec<Anchor> {
        self.records
            .iter()
            .filter_map(|(_, record)| match record {
                TrustRecord::Anchor(anchor) if anchor.certificate.subject_der() == subject => {
                    Some((**anchor).clone())
                }
                _ => None,
            })
            .collect()
    }
}

/// Returns the pin status of the end certificate `leaf` for a peer in `role` at time `at`:
/// the first pinned record under the SHA-256 of `leaf` that applies to the role decides.
pub fn pin_status(
    store: &dyn TrustStore,
    leaf: &Certificate,
    role: PeerRole,
    at: SystemTime,
) -> PinStatus {
    let Ok(records) = store.records(&leaf.sha256()) else {
        return PinStatus::Invalid;
    };
    for record in records {
        match record {
            TrustRecord::Pinned(pin) if pin.applies_to(role) => return pin.status_at(at),
            TrustRecord::Invalid(_) => return PinStatus::Invalid,
            _ => {}
        }
    }
    PinStatus::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::testing::{day, self_signed, server_params};

    fn pin(expiry: Option<SystemTime>, window_days: Option<u64>) -> Pin {
        Pin {
            for_clients: true,
            for_servers: false,
            expiry,
            rollover_window: window_days.map(|days| Duration::from_secs(days * 86_400)),
        }
    }

    #[test]
    fn pin_status_follows_expiry_and_window() {
        let at = day(2025, 6, 1);
        let cases = [
            (pin(None, None), PinStatus::Success),
            (pin(Some(day(2026, 1, 1)), None), PinStatus::Success),
            (pin(Some(day(2026, 1, 1)), Some(30)), PinStatus::Success),
            (
                pin(Some(day(2025, 6, 15)), Some(30)),
                PinStatus::Replaceable,
            ),
            (pin(Some(day(2025, 6, 1)), Some(30)), PinStatus::Expired),
            (pin(Some(day(2025, 1, 1)), None), PinStatus::Expired),
        ];
        for (pin, expected) in cases {
            assert_eq!(pin.status_at(at), expected, "{pin:?}");
        }
    }

    #[test]
    fn pin_lookup_uses_sha256_and_role() {
        let leaf = self_signed(server_params("www", &["www.example.com"])).parsed();
        let at = day(2025, 6, 1);
        let mut store = AnchorSet::new();
        assert_eq!(
            pin_status(&store, &leaf, PeerRole::Server, at),
            PinStatus::NotFound
        );

        store.insert(&leaf.sha256(), TrustRecord::Pinned(pin(None, None)));
        assert_eq!(
            pin_status(&store, &leaf, PeerRole::Server, at),
            PinStatus::Success
        );
        assert_eq!(
            pin_status(&store, &leaf, PeerRole::Client, at),
            PinStatus::NotFound,
            "the pin is for local clients only"
        );

        let mut broken = AnchorSet::new();
        broken.insert(&leaf.sha256(), TrustRecord::Invalid("3 bytes".into()));
        assert_eq!(
            pin_status(&broken, &leaf, PeerRole::Server, at),
            PinStatus::Invalid
        );
    }

    #[test]
    fn pin_status_codes_match_protocol() {
        let codes = [
            (PinStatus::Success, 0),
            (PinStatus::NotFound, 1),
            (PinStatus::Invalid, 2),
            (PinStatus::Replaceable, 3),
            (PinStatus::Expired, 4),
        ];
        for (status, code) in codes {
            assert_eq!(status.code(), code);
        }
    }

    #[test]
    fn pin_status_decides_p_predicates() {
        let cases = [
            (PinStatus::Success, true, true),
            (PinStatus::Replaceable, true, true),
            (PinStatus::NotFound, false, true),
            (PinStatus::Invalid, false, false),
            (PinStatus::Expired, false, false),
        ];
        for (status, upper, lower) in cases {
            assert_eq!(status.is_pinned(), upper, "P for {status:?}");
            assert_eq!(status.is_pinned_or_first_use(), lower, "p for {status:?}");
        }
    }

    #[test]
    fn bundle_anchors_are_roots_or_notroot() {
        let root = self_signed(crate::x509::testing::ca_params("Root"));
        let intermediate =
            crate::x509::testing::issue(crate::x509::testing::ca_params("Intermediate"), &root);
        let pem = format!("junk\n{}\n{}", root.cert.pem(), intermediate.cert.pem());
        let mut store = AnchorSet::new();
        assert_eq!(store.add_bundle(pem.as_bytes()).unwrap(), 2);

        let roots = store.anchors_by_subject(root.parsed().subject_der());
        assert_eq!(roots.len(), 1);
        assert!(!roots[0].not_root);
        let records = store.records(&intermediate.parsed().key_id()).unwrap();
        assert!(matches!(&records[..], [TrustRecord::Anchor(a)] if a.not_root));
    }
}
