//! The constraints a certificate's place in the path puts on it: key usage and extended key
//! usage for the role (RFC 5280 sections 4.2.1.3 and 4.2.1.12), and the nameConstraints of
//! the issuers above it (RFC 5280 sections 4.2.1.10 and 6.1.4 (g)).

use der::oid::ObjectIdentifier;
use der::oid::db::rfc5280 as oids;
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::ext::pkix::constraints::name::GeneralSubtree;
use x509_cert::ext::pkix::name::GeneralName;

use super::name::{
    PresentedName, alt_and_email_names, dns_in_subtree, identity_names, mail_in_subtree,
};
use super::trust::PeerRole;
use super::{Certificate, ValidateError};

/// The permitted and excluded subtrees collected from the issuers above a certificate. Each
/// issuer's permitted subtrees form one set, and a name must lie in every set of its type.
#[derive(Default)]
pub(crate) struct NameConstraintSet {
    permitted: Vec<(String, Vec<GeneralSubtree>)>,
    excluded: Vec<(String, Vec<GeneralSubtree>)>,
}

impl NameConstraintSet {
    /// Adds the nameConstraints of `issuer`, if any.
    pub(crate) fn add(&mut self, issuer: &Certificate) {
        let extensions = issuer.extensions();
        if let Some(permitted) = &extensions.permitted_subtrees {
            self.permitted
                .push((issuer.subject().to_owned(), permitted.clone()));
        }
        if let Some(excluded) = &extensions.excluded_subtrees {
            self.excluded
                .push((issuer.subject().to_owned(), excluded.clone()));
        }
    }

    /// Checks the dNSName and rfc822Name subjectAltName entries and the subject emailAddress
    /// attributes of `cert`, and for an end certificate also every commonName that the name
    /// check or the pool may take as the peer's identity ([`identity_names`]), each against
    /// the subtrees of its kind.
    pub(crate) fn check(&self, cert: &Certificate, is_leaf: bool) -> Result<(), ValidateError> {
        if self.permitted.is_empty() && self.excluded.is_empty() {
            return Ok(());
        }
        let names = if is_leaf {
            identity_names(cert)
        } else {
            alt_and_email_names(cert)
        };
        for name in &names {
            self.check_name(cert, name)?;
        }
        Ok(())
    }

    /// Checks `name` against the subtrees of its kind. A name that cannot be compared with a
    /// base of its kind (a non-ASCII name, a mail address without `@`) is rejected.
    fn check_name(
        &self,
        cert: &Certificate,
        name: &PresentedName<'_>,
    ) -> Result<(), ValidateError> {
        let violation = |issuer: &str, rule: String| ValidateError::NameConstraint {
            subject: cert.subject().to_owned(),
            name: name.text().to_owned(),
            issuer: issuer.to_owned(),
            rule,
        };
        let uncomparable = |issuer: &str, base: &str| {
            violation(
                issuer,
                format!("cannot be compared with the subtree {base}"),
            )
        };

        for (issuer, subtrees) in &self.permitted {
            check_supported(cert, issuer, subtrees)?;
            let bases: Vec<&str> = subtrees
                .iter()
                .filter_map(|s| base_of_kind(name, s))
                .collect();
            let mut inside = bases.is_empty();
            for base in &bases {
                match in_subtree(name, base) {
                    Some(found) => inside |= found,
                    None => return Err(uncomparable(issuer, base)),
                }
            }
            if !inside {
                let rule = format!("is outside the permitted subtrees {}", bases.join(", "));
                return Err(violation(issuer, rule));
            }
        }
        for (issuer, subtrees) in &self.excluded {
            check_supported(cert, issuer, subtrees)?;
            for base in subtrees.iter().filter_map(|s| base_of_kind(name, s)) {
                match in_subtree(name, base) {
                    Some(false) => {}
                    Some(true) => {
                        return Err(violation(
                            issuer,
                            format!("is in the excluded subtree {base}"),
                        ));
                    }
                    None => return Err(uncomparable(issuer, base)),
                }
            }
        }
        Ok(())
    }
}

/// Returns the base of `subtree` if it is of the same kind as `name`.
fn base_of_kind<'s>(name: &PresentedName<'_>, subtree: &'s GeneralSubtree) -> Option<&'s str> {
    match (name, &subtree.base) {
        (PresentedName::Dns(_), GeneralName::DnsName(base)) => Some(base.as_str()),
        (PresentedName::Mail(_), GeneralName::Rfc822Name(base)) => Some(base.as_str()),
        _ => None,
    }
}

/// Tells whether `name` lies in the subtree `base` of its kind, or `None` when the two
/// cannot be compared.
fn in_subtree(name: &PresentedName<'_>, base: &str) -> Option<bool> {
    match name {
        PresentedName::Dns(dns) => dns_in_subtree(dns, base),
        PresentedName::Mail(mail) => mail_in_subtree(mail, base),
    }
}

/// Rejects subtrees this validator cannot enforce: types other than dNSName and rfc822Name,
/// and a minimum or maximum distance, which RFC 5280 forbids.
fn check_supported(
    cert: &Certificate,
    issuer: &str,
    subtrees: &[GeneralSubtree],
) -> Result<(), ValidateError> {
    for subtree in subtrees {
        let supported = matches!(
            subtree.base,
            GeneralName::DnsName(_) | GeneralName::Rfc822Name(_)
        ) && subtree.minimum == 0
            && subtree.maximum.is_none();
        if !supported {
            // NOTE: directoryName, iPAddress and URI subtrees are not enforced, so a path
            // under an issuer that uses them fails rather than passing unchecked.
            return Err(ValidateError::NameConstraint {
                subject: cert.subject().to_owned(),
                name: cert.subject().to_owned(),
                issuer: issuer.to_owned(),
                rule: format!(
                    "cannot be checked against the unsupported subtree {:?}",
                    subtree.base
                ),
            });
        }
    }
    Ok(())
}

/// Checks the key usage and extended key usage that the end certificate of a peer in `role`
/// needs. A server signs the handshake (digitalSignature), or decrypts the premaster secret
/// of RSA key exchange (keyEncipherment), or agrees on it with a static key (keyAgreement);
/// a client signs CertificateVerify (digitalSignature).
pub(crate) fn check_leaf_usage(cert: &Certificate, role: PeerRole) -> Result<(), ValidateError> {
    let usable = match role {
        PeerRole::Server => [
            KeyUsages::DigitalSignature,
            KeyUsages::KeyEncipherment,
            KeyUsages::KeyAgreement,
        ]
        .iter()
        .any(|usage| cert.has_key_usage(*usage) != Some(false)),
        PeerRole::Client => cert.has_key_usage(KeyUsages::DigitalSignature) != Some(false),
    };
    if !usable {
        return Err(ValidateError::KeyUsage {
            subject: cert.subject().to_owned(),
            required: match role {
                PeerRole::Server => "digitalSignature, keyEncipherment or keyAgreement",
                PeerRole::Client => "digitalSignature",
            },
        });
    }
    check_extended_key_usage(cert, role)
}

/// Checks that an extendedKeyUsage extension, where present, lists the purpose of `role` or
/// anyExtendedKeyUsage.
pub(crate) fn check_extended_key_usage(
    cert: &Certificate,
    role: PeerRole,
) -> Result<(), ValidateError> {
    let Some(purposes) = &cert.extensions().extended_key_usage else {
        return Ok(());
    };
    let required: ObjectIdentifier = match role {
        PeerRole::Server => oids::ID_KP_SERVER_AUTH,
        PeerRole::Client => oids::ID_KP_CLIENT_AUTH,
    };
    if purposes.contains(&required) || purposes.contains(&oids::ANY_EXTENDED_KEY_USAGE) {
        return Ok(());
    }
    Err(ValidateError::ExtendedKeyUsage {
        subject: cert.subject().to_owned(),
        required: role.purpose_name(),
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{
        ExtendedKeyUsagePurpose, GeneralSubtree, KeyUsagePurpose, NameConstraints, SanType,
    };

    use super::*;
    use crate::x509::testing::{
        Issued, anchors, ca_params, chain, day, issue, params, self_signed,
    };
    use crate::x509::{PathValidator, ValidPath};

    /// Returns a root and an intermediate below it with the given nameConstraints.
    fn constrained_pair(
        permitted: Vec<GeneralSubtree>,
        excluded: Vec<GeneralSubtree>,
    ) -> (Issued, Issued) {
        let root = self_signed(ca_params("Root"));
        let mut params = ca_params("Constrained Intermediate");
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: excluded,
        });
        let intermediate = issue(params, &root);
        (root, intermediate)
    }

    fn client(cn: &str, alt_names: Vec<SanType>, issuer: &Issued) -> Issued {
        let mut params = params(cn);
        params.subject_alt_names = alt_names;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        issue(params, issuer)
    }

    fn validate_client(
        root: &Issued,
        intermediate: &Issued,
        leaf: &Issued,
    ) -> Result<ValidPath, ValidateError> {
        PathValidator::new(&anchors(&[root]), PeerRole::Client, day(2025, 1, 1))
            .validate(&chain(&[leaf, intermediate]))
    }

    fn mail(base: &str) -> GeneralSubtree {
        GeneralSubtree::Rfc822Name(base.into())
    }

    fn dns(base: &str) -> GeneralSubtree {
        GeneralSubtree::DnsName(base.into())
    }

    #[test]
    fn mail_common_name_in_excluded_subtree_is_rejected() {
        let excluded = vec![
            mail("victim.dev.example"),
            mail(".victim.dev.example"),
            dns("victim.dev.example"),
        ];
        let (root, intermediate) = constrained_pair(vec![], excluded);
        let leaf = client("alice@victim.dev.example", vec![], &intermediate);
        let err = validate_client(&root, &intermediate, &leaf).unwrap_err();
        assert_eq!(
            err,
            ValidateError::NameConstraint {
                subject: "CN=alice@victim.dev.example".into(),
                name: "alice@victim.dev.example".into(),
                issuer: "CN=Constrained Intermediate".into(),
                rule: "is in the excluded subtree victim.dev.example".into(),
            }
        );

        let other = client("alice@other.dev.example", vec![], &intermediate);
        assert!(validate_client(&root, &intermediate, &other).is_ok());
    }

    #[test]
    fn mail_common_name_outside_permitted_subtree_is_rejected() {
        let (root, intermediate) = constrained_pair(vec![mail("allowed.dev.example")], vec![]);
        let outside = client("alice@victim.dev.example", vec![], &intermediate);
        let err = validate_client(&root, &intermediate, &outside).unwrap_err();
        assert!(
            matches!(&err, ValidateError::NameConstraint { name, rule, .. }
                if name == "alice@victim.dev.example"
                    && rule == "is outside the permitted subtrees allowed.dev.example"),
            "{err}"
        );

        let inside = client("alice@allowed.dev.example", vec![], &intermediate);
        assert!(validate_client(&root, &intermediate, &inside).is_ok());
    }

    #[test]
    fn uncomparable_mail_common_name_is_rejected() {
        let (root, intermediate) = constrained_pair(vec![mail("allowed.dev.example")], vec![]);
        let leaf = client("alice@bücher.dev.example", vec![], &intermediate);
        let err = validate_client(&root, &intermediate, &leaf).unwrap_err();
        assert!(
            matches!(&err, ValidateError::NameConstraint { rule, .. }
                if rule == "cannot be compared with the subtree allowed.dev.example"),
            "{err}"
        );
    }

    #[test]
    fn single_label_common_name_is_constrained() {
        let (root, intermediate) = constrained_pair(vec![dns(".dev.example")], vec![]);
        let leaf = client("localhost", vec![], &intermediate);
        let err = validate_client(&root, &intermediate, &leaf).unwrap_err();
        assert!(
            matches!(&err, ValidateError::NameConstraint { name, .. } if name == "localhost"),
            "{err}"
        );
    }

    #[test]
    fn common_name_that_names_nothing_is_not_constrained() {
        let (root, intermediate) = constrained_pair(
            vec![dns(".dev.example"), mail("allowed.dev.example")],
            vec![],
        );
        let alt_names = vec![SanType::Rfc822Name(
            "alice@allowed.dev.example".try_into().unwrap(),
        )];
        let leaf = client("Alice Smith", alt_names, &intermediate);
        assert!(validate_client(&root, &intermediate, &leaf).is_ok());
    }

    #[test]
    fn mail_common_name_hidden_by_alt_name_is_not_constrained() {
        let (root, intermediate) = constrained_pair(vec![mail("allowed.dev.example")], vec![]);
        let alt_names = vec![SanType::Rfc822Name(
            "alice@allowed.dev.example".try_into().unwrap(),
        )];
        let leaf = client("alice@victim.dev.example", alt_names, &intermediate);
        assert!(
            validate_client(&root, &intermediate, &leaf).is_ok(),
            "the name check never uses this commonName"
        );
    }
}
