//! Flag words and INFO kinds: `PIOF_FACILITY_*`, `PIOF_STARTTLS_*`, `PIOF_LIDENTRY_*` and
//! `PIOK_INFO_*`.
//!
//! Decoding keeps unknown bits (`from_bits_retain`), so a record re-encodes unchanged and the
//! daemon can decide what to ignore.

use bitflags::bitflags;

bitflags! {
    /// Facilities offered in PING (`pioc_ping.facilities`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Facilities: u32 {
        /// `PIOF_FACILITY_STARTTLS`: STARTTLS is supported.
        const STARTTLS = 0x0000_0001;
        /// `PIOF_FACILITY_STARTGSS`: reserved, never offered.
        const STARTGSS = 0x0000_0002;
        /// `PIOF_FACILITY_STARTSSH`: reserved, never offered.
        const STARTSSH = 0x0000_0004;
    }
}

impl Facilities {
    /// `PIOF_FACILITY_ALL_CURRENT`: every facility this implementation supports.
    pub const ALL_CURRENT: Self = Self::STARTTLS;
}

bitflags! {
    /// Flags of STARTTLS, STARTTLS_LOCALID and PLAINTEXT_CONNECT (`pioc_starttls.flags`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct StartTlsFlags: u32 {
        /// `PIOF_STARTTLS_LOCALROLE_CLIENT`: the local side acts as TLS client.
        const LOCALROLE_CLIENT = 0x0000_0001;
        /// `PIOF_STARTTLS_LOCALROLE_SERVER`: the local side acts as TLS server.
        const LOCALROLE_SERVER = 0x0000_0002;
        /// `PIOF_STARTTLS_LOCALROLE_PEER`: both local roles.
        const LOCALROLE_PEER = 0x0000_0003;
        /// `PIOF_STARTTLS_REMOTEROLE_CLIENT`: the remote side acts as TLS client.
        const REMOTEROLE_CLIENT = 0x0000_0004;
        /// `PIOF_STARTTLS_REMOTEROLE_SERVER`: the remote side acts as TLS server.
        const REMOTEROLE_SERVER = 0x0000_0008;
        /// `PIOF_STARTTLS_REMOTEROLE_PEER`: both remote roles.
        const REMOTEROLE_PEER = 0x0000_000c;
        /// `PIOF_STARTTLS_BOTHROLES_PEER`: peer roles on both sides.
        const BOTHROLES_PEER = 0x0000_000f;
        /// `PIOF_STARTTLS_DTLS`: run DTLS instead of TLS.
        const DTLS = 0x0000_0100;
        /// `PIOF_STARTTLS_WITHOUT_SNI`: a client sends no server name indication.
        const WITHOUT_SNI = 0x0000_0200;
        /// `PIOF_STARTTLS_IGNORE_CACHES`: validate afresh instead of using cached results.
        const IGNORE_CACHES = 0x0000_0400;
        /// `PIOF_STARTTLS_REQUEST_REMOTEID`: the peer's identity is optional.
        const REQUEST_REMOTEID = 0x0000_0800;
        /// `PIOF_STARTTLS_IGNORE_REMOTEID`: neither ask for nor validate the peer's identity.
        const IGNORE_REMOTEID = 0x0000_1000;
        /// `PIOF_STARTTLS_DETACH`: register the session detached from the control connection.
        const DETACH = 0x0000_2000;
        /// `PIOF_STARTTLS_FORK`: the session outlives its control connection.
        const FORK = 0x0000_4000;
        /// `PIOF_STARTTLS_DOMAIN_REPRESENTS_USER`: accept a domain credential for `user@domain`.
        const DOMAIN_REPRESENTS_USER = 0x0000_8000;
        /// `PIOF_STARTTLS_LOCALID_CHECK`: send a STARTTLS_LOCALID callback before using a local
        /// identity.
        const LOCALID_CHECK = 0x0001_0000;
        /// `PIOF_STARTTLS_RENEGOTIATE`: redo the handshake of the session named by `ctlkey`.
        const RENEGOTIATE = 0x0002_0000;
        /// `PIOF_STARTTLS_LOCALID_ONTHEFLY`: request an on-the-fly certificate for `localid`.
        const LOCALID_ONTHEFLY = 0x0004_0000;
    }
}

bitflags! {
    /// Flags of LIDENTRY registrations, callbacks and responses (`pioc_lidentry.flags`).
    ///
    /// Every `SKIP_*` flag contains the `0x80` bit, so test one with
    /// [`LidEntryFlags::contains_skip`] (all of its bits set), never with "any bit set".
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct LidEntryFlags: u32 {
        /// `PIOF_LIDENTRY_SKIP_DBENTRY`: database entries may skip the callback.
        const SKIP_DBENTRY = 0x0000_0080;
        /// `PIOF_LIDENTRY_SKIP_USER`: skip only if the user name is kept.
        const SKIP_USER = 0x0000_0081;
        /// `PIOF_LIDENTRY_SKIP_DOMAIN_SAME`: skip if the domain is unchanged.
        const SKIP_DOMAIN_SAME = 0x0000_0082;
        /// `PIOF_LIDENTRY_SKIP_DOMAIN_ONEUP`: skip if the domain is one level up.
        const SKIP_DOMAIN_ONEUP = 0x0000_0084;
        /// `PIOF_LIDENTRY_SKIP_DOMAIN_SUB`: skip if the domain is the same or one level up.
        const SKIP_DOMAIN_SUB = 0x0000_0086;
        /// `PIOF_LIDENTRY_SKIP_NOTROOT`: skip if the selector is not the root selector.
        const SKIP_NOTROOT = 0x0000_0088;
        /// `PIOF_LIDENTRY_WANT_DBENTRY`: send database entries before asking.
        const WANT_DBENTRY = 0x0000_0100;
        /// `PIOF_LIDENTRY_DBENTRY`: this callback reports a database entry.
        const DBENTRY = 0x0000_1000;
        /// `PIOF_LIDENTRY_DBINSERT`: store the response at the head of the list.
        const DBINSERT = 0x0000_2000;
        /// `PIOF_LIDENTRY_DBAPPEND`: store the response at the tail of the list.
        const DBAPPEND = 0x0000_4000;
        /// `PIOF_LIDENTRY_DBREORDER`: move an existing entry.
        const DBREORDER = 0x0000_8000;
        /// `PIOF_LIDENTRY_NEW`: wait for a new identity.
        const NEW = 0x0010_0000;
        /// `PIOF_LIDENTRY_ONTHEFLY`: use an on-the-fly identity.
        const ONTHEFLY = 0x0020_0000;
    }
}

impl LidEntryFlags {
    /// `PIOF_LIDENTRY_REGFLAGS`: the registration bits echoed in callbacks.
    pub const REGFLAGS: Self = Self::from_bits_retain(0x0000_0fff);

    /// Tests a `SKIP_*` flag correctly: true only if every bit of `flag` is set
    /// (`(regflags & F) == F`).
    pub fn contains_skip(self, flag: Self) -> bool {
        self.bits() & flag.bits() == flag.bits()
    }

    /// Returns the registration bits of these flags (`flags & PIOF_LIDENTRY_REGFLAGS`).
    pub fn registration(self) -> Self {
        Self::from_bits_retain(self.bits() & Self::REGFLAGS.bits())
    }
}

/// Kind of an INFO request (`pioc_info.info_kind`, `PIOK_INFO_*`).
///
/// A newtype rather than an enum, because the daemon must answer an unknown kind with
/// `E_TLSPOOL_INFOKIND_UNKNOWN` and the record must still decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InfoKind(pub u32);

impl InfoKind {
    /// `PIOK_INFO_PEERCERT_SUBJECT`: DER subject Name of the peer's certificate (query).
    pub const PEERCERT_SUBJECT: Self = Self(0x5280_0000);
    /// `PIOK_INFO_PEERCERT_ISSUER`: DER issuer Name of the peer's certificate (query).
    pub const PEERCERT_ISSUER: Self = Self(0x5280_0001);
    /// `PIOK_INFO_PEERCERT_SUBJECTALTNAME`: check a GeneralName of the peer's certificate.
    pub const PEERCERT_SUBJECTALTNAME: Self = Self(0x5280_0002);
    /// `PIOK_INFO_MYCERT_SUBJECT`: DER subject Name of the local certificate (query).
    pub const MYCERT_SUBJECT: Self = Self(0x5280_0100);
    /// `PIOK_INFO_MYCERT_ISSUER`: DER issuer Name of the local certificate (query).
    pub const MYCERT_ISSUER: Self = Self(0x5280_0101);
    /// `PIOK_INFO_MYCERT_SUBJECTALTNAME`: check a GeneralName of the local certificate.
    pub const MYCERT_SUBJECTALTNAME: Self = Self(0x5280_0102);
    /// `PIOK_INFO_CHANBIND_TLS_UNIQUE`: the RFC 5929 `tls-unique` channel binding (query).
    pub const CHANBIND_TLS_UNIQUE: Self = Self(0x5929_0000);
    /// `PIOK_INFO_CHANBIND_TLS_SERVER_END_POINT`: the RFC 5929 `tls-server-end-point` channel
    /// binding (query).
    pub const CHANBIND_TLS_SERVER_END_POINT: Self = Self(0x5929_0001);
    /// `PIOK_INFO_CHANBIND_TLS_EXPORTER`: the RFC 9266 `tls-exporter` channel binding, for
    /// TLS 1.3 only (query).
    pub const CHANBIND_TLS_EXPORTER: Self = Self(0x5929_0002);
    /// `PIOK_INFO_PEER_CERTIFICATE_TYPE`: the certificate type the peer sent, as the GnuTLS
    /// name `X.509`, `RAWPK` or `OPENPGP` (query). A kind of this implementation, in the local
    /// range `0x7470_xxxx`, which the TLS Pool version 2 protocol does not define.
    pub const PEER_CERTIFICATE_TYPE: Self = Self(0x7470_0000);
    /// `PIOK_INFO_MY_CERTIFICATE_TYPE`: the certificate type this side sent, named as for
    /// [`Self::PEER_CERTIFICATE_TYPE`] (query, local range).
    pub const MY_CERTIFICATE_TYPE: Self = Self(0x7470_0100);
    /// `PIOK_INFO_PROTOCOL_VERSION`: the negotiated protocol version as the GnuTLS name, such
    /// as `TLS1.2` or `TLS1.3` (query, local range).
    pub const PROTOCOL_VERSION: Self = Self(0x7470_0001);
    /// `PIOK_INFO_PRIVACY_MODE`: whether and how the handshake encrypted the certificates, as
    /// the name of a [`PrivacyMode`](crate::PrivacyMode) (query, local range).
    pub const PRIVACY_MODE: Self = Self(0x7470_0002);

    /// Bit that selects the local certificate instead of the peer's.
    pub const MYCERT_BIT: u32 = 0x0000_0100;

    /// Every defined kind.
    pub const ALL: [Self; 13] = [
        Self::PEERCERT_SUBJECT,
        Self::PEERCERT_ISSUER,
        Self::PEERCERT_SUBJECTALTNAME,
        Self::MYCERT_SUBJECT,
        Self::MYCERT_ISSUER,
        Self::MYCERT_SUBJECTALTNAME,
        Self::CHANBIND_TLS_UNIQUE,
        Self::CHANBIND_TLS_SERVER_END_POINT,
        Self::CHANBIND_TLS_EXPORTER,
        Self::PEER_CERTIFICATE_TYPE,
        Self::MY_CERTIFICATE_TYPE,
        Self::PROTOCOL_VERSION,
        Self::PRIVACY_MODE,
    ];

    /// Returns true for one of the defined `PIOK_INFO_*` kinds.
    pub fn is_known(self) -> bool {
        Self::ALL.contains(&self)
    }

    /// Returns true if the kind refers to the local certificate (bit `0x100`).
    pub fn is_local_certificate(self) -> bool {
        self.0 & Self::MYCERT_BIT != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_flag_test_requires_all_bits() {
        let registered = LidEntryFlags::SKIP_USER;
        assert!(registered.contains_skip(LidEntryFlags::SKIP_USER));
        assert!(registered.contains_skip(LidEntryFlags::SKIP_DBENTRY));
        assert!(!registered.contains_skip(LidEntryFlags::SKIP_DOMAIN_SAME));
        assert!(!registered.contains_skip(LidEntryFlags::SKIP_NOTROOT));
        assert!(!registered.contains_skip(LidEntryFlags::SKIP_DOMAIN_SUB));
    }

    #[test]
    fn skip_domain_sub_contains_same_and_oneup() {
        let registered = LidEntryFlags::SKIP_DOMAIN_SUB;
        assert!(registered.contains_skip(LidEntryFlags::SKIP_DOMAIN_SAME));
        assert!(registered.contains_skip(LidEntryFlags::SKIP_DOMAIN_ONEUP));
        assert!(!registered.contains_skip(LidEntryFlags::SKIP_USER));
    }

    #[test]
    fn registration_masks_callback_bits() {
        let flags = LidEntryFlags::WANT_DBENTRY | LidEntryFlags::DBENTRY | LidEntryFlags::DBINSERT;
        assert_eq!(flags.registration(), LidEntryFlags::WANT_DBENTRY);
    }

    #[test]
    fn info_kind_local_certificate_bit() {
        assert!(InfoKind::MYCERT_SUBJECT.is_local_certificate());
        assert!(InfoKind::MYCERT_SUBJECTALTNAME.is_local_certificate());
        assert!(!InfoKind::PEERCERT_ISSUER.is_local_certificate());
        assert!(!InfoKind::CHANBIND_TLS_UNIQUE.is_local_certificate());
        assert!(!InfoKind(0x1234_5678).is_known());
    }

    #[test]
    fn client_and_server_role_words() {
        let client = StartTlsFlags::LOCALROLE_CLIENT | StartTlsFlags::REMOTEROLE_SERVER;
        let server = StartTlsFlags::LOCALROLE_SERVER | StartTlsFlags::REMOTEROLE_CLIENT;
        assert_eq!(client.bits(), 0x9);
        assert_eq!(server.bits(), 0x6);
        assert_eq!(
            StartTlsFlags::from_bits_retain(0x8000_0001).bits(),
            0x8000_0001
        );
    }
}
