//! DNS lookups validated with DNSSEC in this process, for DANE (the `D` and `d` predicates) and
//! later OPENPGPKEY and SRV lookups.
//!
//! [`Resolver`] sends each query to one server (`dns_server` of the configuration, else the
//! first `nameserver` of `/etc/resolv.conf`) over UDP, retries once, and repeats it over TCP
//! when the response is truncated. It sets the DO and CD bits and ignores the server's AD bit,
//! because the `domain` crate's validator (RFC 4033 to 4035, RFC 5155 NSEC3) checks every
//! response here. The validator fetches the DS and DNSKEY records it needs through the same
//! server, from the DS or DNSKEY records of the `dnssec_rootkey` file down. A lookup, validation included, is bounded
//! by one timeout (default [`DEFAULT_TIMEOUT`]) and runs on the tokio runtime without
//! blocking a worker.
//!
//! The result is an [`Answer`] with a [`Security`] status. Callers must only rely on the
//! records, or on the absence of records, of a [`Security::Secure`] answer:
//!
//! - `Secure`: the records at the end of the CNAME chain ([`Answer::rrset`]) are signed
//!   under the trust anchor; an empty set is an authenticated denial (NSEC or NSEC3 proof of
//!   NXDOMAIN or of NODATA).
//! - `Insecure`: a signed proof shows that a zone on the path is unsigned; the data proves
//!   nothing.
//! - `Bogus`: validation failed; the data must not be used.
//! - `Indeterminate`: no trust anchor covers the name.
//!
//! # Known limitations
//!
//! - A response that ends at a CNAME whose target it does not include is not chased further:
//!   the validator finds no proof for the target and returns `Bogus`. Recursive servers
//!   include the whole chain; an authoritative server includes it only within its zones.
//! - The trust anchors are read once at start-up; there is no RFC 5011 key rollover.
//! - Responses are not cached beyond the validator's own DS and DNSKEY cache.

mod answer;
mod error;
mod resolver;

pub use answer::{Answer, MAX_CNAME_CHAIN, RecordData, Rrset, Security};
pub use domain::base::iana::Rtype;
pub use error::DnsError;
pub use resolver::{DEFAULT_TIMEOUT, RESOLV_CONF, Resolver};
