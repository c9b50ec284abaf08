//! Path building and validation (RFC 5280 section 6.1): from the end certificate, through the
//! intermediates the peer sent in any order, to a trust anchor of the peer's role.
//!
//! Candidate issuers are found by name (the issuer name equals the subject) and, where both
//! are present, by key identifier (the AuthorityKeyIdentifier equals the SubjectKeyIdentifier).
//! Anchors are looked up in the trust store under the AuthorityKeyIdentifier of the
//! certificate they would issue, and by subject where the store supports it. The search is
//! depth first and tries every alternative until a path validates, so an expired
//! intermediate does not hide a valid cross-signed path.
//!
//! A root anchor (no `TAD_NOTROOT`) must be self-issued; a `TAD_NOTROOT` anchor is an
//! intermediate trusted in itself. Validation stops at either: the anchor's validity period
//! is not checked, but its basicConstraints path length and nameConstraints apply to the
//! certificates below it, as RFC 5937 allows.

use std::time::SystemTime;

use tracing::debug;
use x509_cert::ext::pkix::KeyUsages;

use super::constraints::{NameConstraintSet, check_leaf_usage};
use super::signature::verify_signature;
use super::trust::{Anchor, PeerRole, TrustRecord, TrustStore};
use super::{Certificate, ValidateError};

/// The maximum number of certificates in a path below the anchor. Longer candidate paths are
/// not tried.
pub const MAX_PATH_DEPTH: usize = 8;

/// The maximum number of candidate issuers (intermediates and anchors) tried per validation,
/// which bounds the work a peer can cause with many certificates of the same name.
pub const MAX_CANDIDATES: usize = 64;

/// A validated path.
#[derive(Debug, Clone)]
pub struct ValidPath {
    /// The certificates from the end certificate up to, not including, the anchor.
    pub certificates: Vec<Certificate>,
    /// The anchor that ends the path.
    pub anchor: Anchor,
}

/// The parameters of one validation.
#[derive(Clone, Copy)]
pub struct PathValidator<'s> {
    store: &'s dyn TrustStore,
    role: PeerRole,
    at: SystemTime,
}

impl<'s> PathValidator<'s> {
    /// Creates a validator that trusts the anchors of `store` for a peer in `role`, and checks
    /// validity periods at time `at`.
    pub fn new(store: &'s dyn TrustStore, role: PeerRole, at: SystemTime) -> Self {
        Self { store, role, at }
    }

    /// Returns the role of the peer.
    pub fn role(&self) -> PeerRole {
        self.role
    }

    /// Returns the validation time.
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// Returns the trust store.
    pub fn store(&self) -> &'s dyn TrustStore {
        self.store
    }

    /// Validates `chain` (end certificate first, the rest in any order) to a trust anchor: the
    /// `T` predicate.
    ///
    /// # Errors
    ///
    /// The reason from the longest candidate path that failed; see
    /// [`validate_all`](Self::validate_all) for every reason.
    pub fn validate(&self, chain: &[Certificate]) -> Result<ValidPath, ValidateError> {
        self.validate_all(chain).map_err(|mut reasons| {
            // `validate_all` returns at least one reason; the first is the deepest.
            if reasons.is_empty() {
                ValidateError::EmptyChain
            } else {
                reasons.swap_remove(0)
            }
        })
    }

    /// Validates `chain` like [`validate`](Self::validate), returning on failure the reason
    /// of every candidate path tried, the reason of the longest path first.
    ///
    /// # Errors
    ///
    /// A non-empty list of reasons.
    pub fn validate_all(&self, chain: &[Certificate]) -> Result<ValidPath, Vec<ValidateError>> {
        let Some(leaf) = chain.first() else {
            return Err(vec![ValidateError::EmptyChain]);
        };
        let mut search = Search {
            validator: self,
            pool: &chain[1..],
            failures: Vec::new(),
            tried: 0,
        };
        let mut path = vec![leaf];
        if let Some(valid) = search.extend(&mut path) {
            return Ok(valid);
        }

        let mut failures = search.failures;
        failures.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
        let mut reasons: Vec<ValidateError> = Vec::new();
        for (_, reason) in failures {
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
        if reasons.is_empty() {
            reasons.push(ValidateError::UnknownIssuer {
                subject: leaf.subject().to_owned(),
                issuer: leaf.issuer().to_owned(),
            });
        }
        Err(reasons)
    }

    /// Accepts `chain` when its end certificate is self-signed and valid on its own: the
    /// second half of the `t` predicate. The signature, validity period, critical extensions
    /// and the key usages of the role are checked; the rest of the chain is ignored.
    ///
    /// # Errors
    ///
    /// [`ValidateError::UnknownIssuer`] when the certificate is not self-issued, otherwise the
    /// check that failed.
    pub fn validate_self_signed(&self, chain: &[Certificate]) -> Result<(), ValidateError> {
        let leaf = chain.first().ok_or(ValidateError::EmptyChain)?;
        if !leaf.is_self_issued() {
            return Err(ValidateError::UnknownIssuer {
                subject: leaf.subject().to_owned(),
                issuer: leaf.issuer().to_owned(),
            });
        }
        verify_signature(leaf, leaf.spki_der(), leaf.subject())?;
        check_validity(leaf, self.at)?;
        check_critical_extensions(leaf)?;
        check_leaf_usage(leaf, self.role)
    }

    /// Tells whether `chain` validates to a trust anchor: the `T` predicate.
    pub fn is_trusted(&self, chain: &[Certificate]) -> bool {
        self.validate(chain).is_ok()
    }

    /// Tells whether `chain` validates to a trust anchor or is a valid self-signed end
    /// certificate: the `t` predicate.
    pub fn is_trusted_or_self_signed(&self, chain: &[Certificate]) -> bool {
        self.is_trusted(chain) || self.validate_self_signed(chain).is_ok()
    }

    /// Checks a candidate path from the end certificate (`path[0]`) to `anchor`.
    fn check_path(&self, path: &[&Certificate], anchor: &Anchor) -> Result<(), ValidateError> {
        let top = &anchor.certificate;
        if !anchor.not_root && !top.is_self_issued() {
            return Err(ValidateError::AnchorNotSelfIssued {
                subject: top.subject().to_owned(),
            });
        }

        let mut issuer = top;
        let mut path_limit = PathLimit::tighten(None, top);
        let mut constraints = NameConstraintSet::default();
        constraints.add(top);

        for (position, cert) in path.iter().enumerate().rev() {
            let is_leaf = position == 0;
            verify_signature(cert, issuer.spki_der(), issuer.subject())?;
            check_validity(cert, self.at)?;
            check_critical_extensions(cert)?;
            if is_leaf || !cert.is_self_issued() {
                constraints.check(cert, is_leaf)?;
            }
            if is_leaf {
                check_leaf_usage(cert, self.role)?;
                break;
            }

            check_issuer_capability(cert, self.role)?;
            if !cert.is_self_issued() {
                path_limit = consume_path_length(cert, path_limit)?;
            }
            path_limit = PathLimit::tighten(path_limit, cert);
            constraints.add(cert);
            issuer = cert;
        }
        Ok(())
    }

    /// Returns the anchors of the role that may have issued `cert`.
    fn issuing_anchors(&self, cert: &Certificate) -> Result<Vec<Anchor>, ValidateError> {
        let mut anchors = Vec::new();
        if let Some(key) = cert.authority_key_id() {
            for record in self.store.records(key)? {
                if let TrustRecord::Anchor(anchor) = record {
                    anchors.push(*anchor);
                }
            }
        } else {
            anchors = self.store.anchors_by_subject(cert.issuer_der());
        }
        anchors.retain(|anchor| {
            anchor.applies_to(self.role) && anchor.certificate.subject_der() == cert.issuer_der()
        });
        Ok(anchors)
    }
}

impl std::fmt::Debug for PathValidator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PathValidator")
            .field("role", &self.role)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// The state of one depth-first search for a path.
struct Search<'v, 'c> {
    validator: &'v PathValidator<'v>,
    pool: &'c [Certificate],
    /// Every failed candidate with the length of its path.
    failures: Vec<(usize, ValidateError)>,
    tried: usize,
}

impl<'c> Search<'_, 'c> {
    /// Extends `path` towards an anchor, returning the first path that validates.
    fn extend(&mut self, path: &mut Vec<&'c Certificate>) -> Option<ValidPath> {
        let current = *path.last()?;

        match self.validator.issuing_anchors(current) {
            Ok(anchors) => {
                for anchor in anchors {
                    if let Some(valid) = self.try_anchor(path, anchor) {
                        return Some(valid);
                    }
                }
            }
            Err(err) => self.failures.push((path.len(), err)),
        }

        if path.len() >= MAX_PATH_DEPTH {
            return None;
        }
        for candidate in self.pool {
            if !may_issue(candidate, current) || path.iter().any(|c| c.der() == candidate.der()) {
                continue;
            }
            if self.tried >= MAX_CANDIDATES {
                return None;
            }
            self.tried += 1;
            path.push(candidate);
            let found = self.extend(path);
            path.pop();
            if found.is_some() {
                return found;
            }
        }

        if !self.failures.iter().any(|(depth, _)| *depth >= path.len()) {
            self.failures.push((
                path.len(),
                ValidateError::UnknownIssuer {
                    subject: current.subject().to_owned(),
                    issuer: current.issuer().to_owned(),
                },
            ));
        }
        None
    }

    fn try_anchor(&mut self, path: &[&'c Certificate], anchor: Anchor) -> Option<ValidPath> {
        self.tried += 1;
        // A copy of the anchor that the peer sent along is not part of the path.
        let end = path
            .iter()
            .rposition(|c| c.der() != anchor.certificate.der())
            .map_or(0, |i| i + 1);
        let path = &path[..end.max(1)];
        match self.validator.check_path(path, &anchor) {
            Ok(()) => Some(ValidPath {
                certificates: path.iter().map(|c| (*c).clone()).collect(),
                anchor,
            }),
            Err(err) => {
                debug!(anchor = anchor.certificate.subject(), error = %err, "candidate path failed");
                self.failures.push((path.len() + 1, err));
                None
            }
        }
    }
}

/// Tells whether `issuer` may be the issuer of `cert`: the names match and, where both key
/// identifiers are present, so do they. A certificate never issues itself here.
fn may_issue(issuer: &Certificate, cert: &Certificate) -> bool {
    if issuer.der() == cert.der() || issuer.subject_der() != cert.issuer_der() {
        return false;
    }
    match (cert.authority_key_id(), &issuer.extensions().subject_key_id) {
        (Some(authority), Some(subject)) => authority == subject.as_slice(),
        _ => true,
    }
}

/// Checks the validity period of `cert` at `at` (RFC 5280 section 6.1.3 (a)(2)).
pub(crate) fn check_validity(cert: &Certificate, at: SystemTime) -> Result<(), ValidateError> {
    if at < cert.not_before() {
        return Err(ValidateError::NotYetValid {
            subject: cert.subject().to_owned(),
            not_before: cert.not_before(),
            at,
        });
    }
    if at > cert.not_after() {
        return Err(ValidateError::Expired {
            subject: cert.subject().to_owned(),
            not_after: cert.not_after(),
            at,
        });
    }
    Ok(())
}

/// Rejects the first critical extension that this validator does not process (RFC 5280
/// section 6.1.4 (o) and 6.1.5 (f)).
pub(crate) fn check_critical_extensions(cert: &Certificate) -> Result<(), ValidateError> {
    match cert.extensions().unknown_critical.first() {
        Some(oid) => Err(ValidateError::UnknownCriticalExtension {
            subject: cert.subject().to_owned(),
            oid: oid.to_string(),
        }),
        None => Ok(()),
    }
}

/// Checks that an intermediate may issue certificates: the CA flag of basicConstraints
/// (RFC 5280 section 6.1.4 (k)), keyCertSign where keyUsage is present (6.1.4 (n)), and
/// the purpose of the role where extendedKeyUsage is present, as most TLS validators require.
fn check_issuer_capability(cert: &Certificate, role: PeerRole) -> Result<(), ValidateError> {
    if !cert
        .extensions()
        .basic_constraints
        .as_ref()
        .is_some_and(|bc| bc.ca)
    {
        return Err(ValidateError::NotCa {
            subject: cert.subject().to_owned(),
        });
    }
    if cert.has_key_usage(KeyUsages::KeyCertSign) == Some(false) {
        return Err(ValidateError::KeyUsage {
            subject: cert.subject().to_owned(),
            required: "keyCertSign",
        });
    }
    super::constraints::check_extended_key_usage(cert, role)
}

/// The number of intermediates still allowed below a point of the path, and the
/// pathLenConstraint that set it.
struct PathLimit {
    remaining: u8,
    path_len: u8,
    set_by: String,
}

impl PathLimit {
    /// Applies the pathLenConstraint of `cert`, if it is tighter than `limit`.
    fn tighten(limit: Option<Self>, cert: &Certificate) -> Option<Self> {
        let constraint = cert
            .extensions()
            .basic_constraints
            .as_ref()
            .and_then(|bc| bc.path_len_constraint);
        match (limit, constraint) {
            (Some(limit), Some(path_len)) if limit.remaining <= path_len => Some(limit),
            (_, Some(path_len)) => Some(Self {
                remaining: path_len,
                path_len,
                set_by: cert.subject().to_owned(),
            }),
            (limit, None) => limit,
        }
    }
}

/// Counts one intermediate against the path length limit in force (RFC 5280 section 6.1.4
/// (l)), returning the limit left for the certificates below it.
fn consume_path_length(
    cert: &Certificate,
    limit: Option<PathLimit>,
) -> Result<Option<PathLimit>, ValidateError> {
    match limit {
        Some(limit) if limit.remaining == 0 => Err(ValidateError::PathLenExceeded {
            subject: cert.subject().to_owned(),
            path_len: limit.path_len,
            limited_by: limit.set_by,
        }),
        Some(mut limit) => {
            limit.remaining -= 1;
            Ok(Some(limit))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CustomExtension, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
        KeyUsagePurpose, NameConstraints,
    };

    use super::*;
    use crate::x509::AnchorSet;
    use crate::x509::testing::{
        Issued, anchors, ca_params, chain, day, issue, issue_with, self_signed, server_params,
    };

    const AT: fn() -> SystemTime = || day(2025, 6, 1);

    fn validate(store: &AnchorSet, certs: &[&Issued]) -> Result<ValidPath, ValidateError> {
        PathValidator::new(store, PeerRole::Server, AT()).validate(&chain(certs))
    }

    /// A root, an intermediate and a server certificate for www.example.com.
    fn three() -> (Issued, Issued, Issued) {
        let root = self_signed(ca_params("Root"));
        let intermediate = issue(ca_params("Intermediate"), &root);
        let leaf = issue(server_params("www", &["www.example.com"]), &intermediate);
        (root, intermediate, leaf)
    }

    #[test]
    fn chain_in_any_order_with_extras_validates() {
        let (root, intermediate, leaf) = three();
        let second = issue(ca_params("Second"), &intermediate);
        let leaf2 = issue(server_params("deep", &["deep.example.com"]), &second);
        let stranger = self_signed(ca_params("Stranger"));
        let store = anchors(&[&root]);

        let path = validate(
            &store,
            &[
                &leaf2,
                &stranger,
                &intermediate,
                &root,
                &second,
                &intermediate,
            ],
        )
        .unwrap();
        let subjects: Vec<&str> = path.certificates.iter().map(|c| c.subject()).collect();
        assert_eq!(subjects, ["CN=deep", "CN=Second", "CN=Intermediate"]);
        assert_eq!(path.anchor.certificate.subject(), "CN=Root");
        assert!(validate(&store, &[&leaf, &intermediate]).is_ok());
    }

    #[test]
    fn missing_intermediate_is_unknown_issuer() {
        let (root, _intermediate, leaf) = three();
        let err = validate(&anchors(&[&root]), &[&leaf]).unwrap_err();
        assert_eq!(
            err,
            ValidateError::UnknownIssuer {
                subject: "CN=www".into(),
                issuer: "CN=Intermediate".into(),
            }
        );
    }

    #[test]
    fn untrusted_root_is_unknown_issuer() {
        let (root, intermediate, leaf) = three();
        let other = self_signed(ca_params("Other Root"));
        let err = validate(&anchors(&[&other]), &[&leaf, &intermediate, &root]).unwrap_err();
        assert_eq!(
            err,
            ValidateError::UnknownIssuer {
                subject: "CN=Root".into(),
                issuer: "CN=Root".into(),
            }
        );
    }

    #[test]
    fn expired_intermediate_with_alternative_path_validates() {
        let root = self_signed(ca_params("Root"));
        let key = crate::x509::testing::new_key();
        let key_copy = crate::x509::testing::copy_key(&key);
        let mut old = ca_params("Intermediate");
        old.not_after = time::OffsetDateTime::from(day(2024, 1, 1));
        let expired = issue_with(old, key, &root);
        let current = issue_with(ca_params("Intermediate"), key_copy, &root);
        let leaf = issue(server_params("www", &["www.example.com"]), &expired);
        let store = anchors(&[&root]);

        let path = validate(&store, &[&leaf, &expired, &current]).unwrap();
        assert_eq!(path.certificates[1].der(), current.der());

        let err = validate(&store, &[&leaf, &expired]).unwrap_err();
        assert_eq!(
            err,
            ValidateError::Expired {
                subject: "CN=Intermediate".into(),
                not_after: day(2024, 1, 1),
                at: AT(),
            }
        );
    }

    #[test]
    fn not_yet_valid_leaf_is_rejected() {
        let (root, intermediate, _) = three();
        let mut params = server_params("future", &["future.example.com"]);
        params.not_before = time::OffsetDateTime::from(day(2026, 1, 1));
        let leaf = issue(params, &intermediate);
        let err = validate(&anchors(&[&root]), &[&leaf, &intermediate]).unwrap_err();
        assert!(
            matches!(&err, ValidateError::NotYetValid { subject, not_before, .. }
                if subject == "CN=future" && *not_before == day(2026, 1, 1)),
            "{err}"
        );
    }

    #[test]
    fn path_length_limit_is_enforced() {
        let mut root_params = ca_params("Root");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let root = self_signed(root_params);
        let intermediate = issue(ca_params("Intermediate"), &root);
        let leaf = issue(server_params("www", &["www.example.com"]), &intermediate);
        let direct = issue(server_params("direct", &["direct.example.com"]), &root);
        let store = anchors(&[&root]);

        let err = validate(&store, &[&leaf, &intermediate]).unwrap_err();
        assert_eq!(
            err,
            ValidateError::PathLenExceeded {
                subject: "CN=Intermediate".into(),
                path_len: 0,
                limited_by: "CN=Root".into(),
            }
        );
        assert!(validate(&store, &[&direct]).is_ok());
    }

    #[test]
    fn intermediate_path_length_limits_those_below() {
        let root = self_signed(ca_params("Root"));
        let mut first = ca_params("First");
        first.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let first = issue(first, &root);
        let second = issue(ca_params("Second"), &first);
        let leaf = issue(server_params("www", &["www.example.com"]), &second);
        let err = validate(&anchors(&[&root]), &[&leaf, &second, &first]).unwrap_err();
        assert!(
            matches!(&err, ValidateError::PathLenExceeded { subject, limited_by, .. }
                if subject == "CN=Second" && limited_by == "CN=First"),
            "{err}"
        );
    }

    fn constrained_root(permitted: &[&str], excluded: &[&str]) -> Issued {
        let mut params = ca_params("Constrained Root");
        let subtrees = |names: &[&str]| {
            names
                .iter()
                .map(|name| GeneralSubtree::DnsName((*name).into()))
                .collect()
        };
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: subtrees(permitted),
            excluded_subtrees: subtrees(excluded),
        });
        self_signed(params)
    }

    #[test]
    fn name_outside_permitted_subtree_is_rejected() {
        let root = constrained_root(&["example.com"], &[]);
        let intermediate = issue(ca_params("Intermediate"), &root);
        let inside = issue(server_params("in", &["a.example.com"]), &intermediate);
        let outside = issue(server_params("out", &["a.example.org"]), &intermediate);
        let store = anchors(&[&root]);

        assert!(validate(&store, &[&inside, &intermediate]).is_ok());
        let err = validate(&store, &[&outside, &intermediate]).unwrap_err();
        assert_eq!(
            err,
            ValidateError::NameConstraint {
                subject: "CN=out".into(),
                name: "a.example.org".into(),
                issuer: "CN=Constrained Root".into(),
                rule: "is outside the permitted subtrees example.com".into(),
            }
        );
    }

    #[test]
    fn name_in_excluded_subtree_is_rejected() {
        let root = constrained_root(&[], &["secret.example.com"]);
        let fine = issue(server_params("fine", &["www.example.com"]), &root);
        let banned = issue(server_params("banned", &["x.secret.example.com"]), &root);
        let wildcard = issue(server_params("wild", &["*.example.com"]), &root);
        let store = anchors(&[&root]);

        assert!(validate(&store, &[&fine]).is_ok());
        let err = validate(&store, &[&banned]).unwrap_err();
        assert!(
            matches!(&err, ValidateError::NameConstraint { name, rule, .. }
                if name == "x.secret.example.com"
                    && rule == "is in the excluded subtree secret.example.com"),
            "{err}"
        );
        let err = validate(&store, &[&wildcard]).unwrap_err();
        assert!(
            matches!(&err, ValidateError::NameConstraint { name, .. } if name == "*.example.com"),
            "{err}"
        );
    }

    #[test]
    fn common_name_of_leaf_without_san_is_constrained() {
        let root = constrained_root(&["example.com"], &[]);
        let leaf = issue(server_params("www.example.net", &[]), &root);
        let err = validate(&anchors(&[&root]), &[&leaf]).unwrap_err();
        assert!(
            matches!(&err, ValidateError::NameConstraint { name, .. } if name == "www.example.net"),
            "{err}"
        );
    }

    #[test]
    fn issuer_without_key_cert_sign_is_rejected() {
        let root = self_signed(ca_params("Root"));
        let mut params = ca_params("Intermediate");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let intermediate = issue(params, &root);
        let leaf = issue(server_params("www", &["www.example.com"]), &intermediate);
        let err = validate(&anchors(&[&root]), &[&leaf, &intermediate]).unwrap_err();
        assert_eq!(
            err,
            ValidateError::KeyUsage {
                subject: "CN=Intermediate".into(),
                required: "keyCertSign",
            }
        );
    }

    #[test]
    fn issuer_without_ca_flag_is_rejected() {
        let root = self_signed(ca_params("Root"));
        let mut params = ca_params("Intermediate");
        params.is_ca = IsCa::ExplicitNoCa;
        let intermediate = issue(params, &root);
        let leaf = issue(server_params("www", &["www.example.com"]), &intermediate);
        let err = validate(&anchors(&[&root]), &[&leaf, &intermediate]).unwrap_err();
        assert_eq!(
            err,
            ValidateError::NotCa {
                subject: "CN=Intermediate".into()
            }
        );
    }

    #[test]
    fn leaf_key_usage_must_fit_role() {
        let root = self_signed(ca_params("Root"));
        let mut params = server_params("www", &["www.example.com"]);
        params.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![];
        let leaf = issue(params, &root);
        let store = anchors(&[&root]);

        assert!(
            validate(&store, &[&leaf]).is_ok(),
            "keyEncipherment serves a server"
        );
        let as_client =
            PathValidator::new(&store, PeerRole::Client, AT()).validate(&chain(&[&leaf]));
        assert_eq!(
            as_client.unwrap_err(),
            ValidateError::KeyUsage {
                subject: "CN=www".into(),
                required: "digitalSignature",
            }
        );
    }

    #[test]
    fn extended_key_usage_must_fit_role() {
        let root = self_signed(ca_params("Root"));
        let mut params = server_params("client", &[]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = issue(params, &root);
        let store = anchors(&[&root]);

        let err = validate(&store, &[&client]).unwrap_err();
        assert_eq!(
            err,
            ValidateError::ExtendedKeyUsage {
                subject: "CN=client".into(),
                required: "serverAuth",
            }
        );
        let validator = PathValidator::new(&store, PeerRole::Client, AT());
        assert!(validator.validate(&chain(&[&client])).is_ok());
    }

    #[test]
    fn absent_extended_key_usage_is_allowed() {
        let root = self_signed(ca_params("Root"));
        let mut params = server_params("www", &["www.example.com"]);
        params.extended_key_usages = vec![];
        let leaf = issue(params, &root);
        let store = anchors(&[&root]);
        for role in [PeerRole::Server, PeerRole::Client] {
            let validator = PathValidator::new(&store, role, AT());
            assert!(validator.validate(&chain(&[&leaf])).is_ok(), "{role:?}");
        }
    }

    #[test]
    fn anchor_role_decides_which_peers_it_validates() {
        let (root, intermediate, leaf) = three();
        let mut anchor = root.anchor();
        anchor.for_servers = false;
        let mut store = AnchorSet::new();
        store.add_anchor(anchor);
        let certs = chain(&[&leaf, &intermediate]);

        let as_server_peer = PathValidator::new(&store, PeerRole::Server, AT());
        assert!(
            as_server_peer.validate(&certs).is_ok(),
            "TAD_ROLE_CLIENT validates servers"
        );
        let as_client_peer = PathValidator::new(&store, PeerRole::Client, AT());
        assert!(matches!(
            as_client_peer.validate(&certs),
            Err(ValidateError::UnknownIssuer { .. })
        ));
    }

    #[test]
    fn notroot_anchor_ends_the_path() {
        let (_root, intermediate, leaf) = three();
        let mut anchor = intermediate.anchor();
        anchor.not_root = true;
        let mut store = AnchorSet::new();
        store.add_anchor(anchor);

        let path = validate(&store, &[&leaf]).unwrap();
        assert_eq!(path.certificates.len(), 1);
        assert_eq!(path.anchor.certificate.subject(), "CN=Intermediate");

        let err = validate(&anchors(&[&intermediate]), &[&leaf]).unwrap_err();
        assert_eq!(
            err,
            ValidateError::AnchorNotSelfIssued {
                subject: "CN=Intermediate".into()
            }
        );
    }

    #[test]
    fn tampered_signature_is_rejected() {
        let (root, intermediate, leaf) = three();
        let mut der = leaf.der();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let tampered = Certificate::from_der(&der).unwrap();
        let store = anchors(&[&root]);
        let validator = PathValidator::new(&store, PeerRole::Server, AT());
        let err = validator
            .validate(&[tampered, intermediate.parsed()])
            .unwrap_err();
        assert_eq!(
            err,
            ValidateError::BadSignature {
                subject: "CN=www".into(),
                issuer: "CN=Intermediate".into(),
            }
        );
    }

    #[test]
    fn unknown_critical_extension_is_rejected() {
        let root = self_signed(ca_params("Root"));
        let mut params = server_params("www", &["www.example.com"]);
        let mut extension =
            CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
        extension.set_criticality(true);
        params.custom_extensions = vec![extension];
        let leaf = issue(params, &root);
        let err = validate(&anchors(&[&root]), &[&leaf]).unwrap_err();
        assert_eq!(
            err,
            ValidateError::UnknownCriticalExtension {
                subject: "CN=www".into(),
                oid: "1.3.6.1.4.1.99999.1".into(),
            }
        );
    }

    #[test]
    fn self_signed_leaf_passes_only_weak_trust() {
        let leaf = self_signed(server_params("self", &["self.example.com"]));
        let store = AnchorSet::new();
        let validator = PathValidator::new(&store, PeerRole::Server, AT());
        let certs = chain(&[&leaf]);
        assert!(!validator.is_trusted(&certs), "T");
        assert!(validator.is_trusted_or_self_signed(&certs), "t");

        let late = PathValidator::new(&store, PeerRole::Server, day(2031, 1, 1));
        assert!(
            !late.is_trusted_or_self_signed(&certs),
            "expired self-signed fails t"
        );
        let (_, intermediate, issued) = three();
        assert!(!validator.is_trusted_or_self_signed(&chain(&[&issued, &intermediate])));
    }

    #[test]
    fn validate_all_lists_every_failed_path() {
        let root = self_signed(ca_params("Root"));
        let mut expired = ca_params("Intermediate");
        expired.not_after = time::OffsetDateTime::from(day(2024, 1, 1));
        let key = crate::x509::testing::new_key();
        let key_copy = crate::x509::testing::copy_key(&key);
        let expired = issue_with(expired, key, &root);
        let mut no_ca = ca_params("Intermediate");
        no_ca.is_ca = IsCa::ExplicitNoCa;
        let no_ca = issue_with(no_ca, key_copy, &root);
        let leaf = issue(server_params("www", &["www.example.com"]), &expired);
        let store = anchors(&[&root]);

        let validator = PathValidator::new(&store, PeerRole::Server, AT());
        let reasons = validator
            .validate_all(&chain(&[&leaf, &expired, &no_ca]))
            .unwrap_err();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(matches!(reasons[0], ValidateError::Expired { .. }));
        assert!(matches!(reasons[1], ValidateError::NotCa { .. }));
    }

    #[test]
    fn empty_chain_is_rejected() {
        let store = AnchorSet::new();
        let validator = PathValidator::new(&store, PeerRole::Server, AT());
        assert_eq!(
            validator.validate(&[]).unwrap_err(),
            ValidateError::EmptyChain
        );
    }
}
