//! Peer validation for the TLS Pool: trust anchors, validation expressions, LDAP, DANE and
//! caching.
//!
//! This crate owns the validation expression engine ([`valexp`]) of the TLS Pool version 2
//! protocol and the checks behind its predicates: X.509 path validation, revocation lists,
//! stapled OCSP responses and pins ([`x509`]), DANE under DNSSEC validated in process
//! ([`dane`], [`dns`]), the LDAP global directory found through `ldap_proxy` or DNSSEC SRV
//! records ([`ldap`]), OpenPGP keys ([`openpgp`]) and the memcached cache ([`cache`]).
//!
//! The engine parses the postfix expressions and expands them into the ordered normal form,
//! whose printed text is compared byte for byte. It combines the expressions of several
//! sources with AND and evaluates a normal form as predicate results arrive.
//!
//! ```
//! use tlspool_validate::valexp::{Event, NormalForm, Predicate, Registration};
//!
//! // "if d then T else E", with the consensus case "T and E" last.
//! let form = NormalForm::parse("ETd?")?;
//! assert_eq!(form.to_string(), "Td | E~d | TE");
//!
//! let letter = |c| Predicate::from_letter(c).ok_or_else(|| format!("{c} is no predicate"));
//! let (mut registration, events) = Registration::register(form);
//! assert_eq!(
//!     events,
//!     [Event::Start(letter('T')?), Event::Start(letter('d')?), Event::Start(letter('E')?)]
//! );
//! assert_eq!(registration.set(letter('d')?, false), [Event::Stop(letter('d')?)]);
//! assert_eq!(registration.printed_live_cases(), "TE | E");
//! assert_eq!(
//!     registration.set(letter('E')?, true),
//!     [Event::Stop(letter('T')?), Event::Stop(letter('E')?), Event::Final(true)]
//! );
//! assert_eq!(registration.unregister(), []);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Event model
//!
//! The engine does no I/O. [`Registration::register`](valexp::Registration::register),
//! [`set`](valexp::Registration::set) and [`unregister`](valexp::Registration::unregister)
//! each return the events the caller acts on: `Start(p)` asks for the check of predicate `p`,
//! `Stop(p)` cancels it, and `Final(outcome)` comes exactly once per registration. Several
//! starts or stops at once come in predicate bit order (`LlIiFfAaTtDdRrEeOoGgPpUuSsCcQq`),
//! and the stops of a call precede its final. Once final, the outcome never changes and later
//! results are ignored.
//!
//! # Known limitations
//!
//! - The engine gives predicates no meaning: [`predicates::evaluate`] runs the checks that a
//!   caller provides for them, and [`predicates::OnlineChecks`] provides the online ones
//!   (DANE, the global directory, both through the cache).
//! - A registration whose first case to be true is found at registration still returns
//!   `Start` for the predicates of the later cases after `Final(true)`, and never stops them.
//!   The protocol defines this order, so it is kept.
//! - Expressions nested deeper than [`MAX_NESTING`](valexp::MAX_NESTING) operators, or whose
//!   expansion exceeds [`MAX_CASES`](valexp::MAX_CASES) cases, are rejected as errors (and so
//!   fail the handshake); the original has neither limit.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cache;
pub mod dane;
pub mod dns;
mod error;
pub mod ldap;
pub mod openpgp;
pub mod predicates;
pub mod valexp;
pub mod x509;

pub use cache::{CacheConfig, CacheKey, CheckKind, OnlineCache};
pub use dane::DaneOutcome;
pub use dns::{DnsError, Resolver};
pub use error::ValexpError;
pub use ldap::{Credential, DirectoryError, GlobalDirectory, Outcome};
pub use openpgp::OpenPgpError;
pub use x509::ValidateError;
