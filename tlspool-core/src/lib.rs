//! Core of the TLS Pool: configuration, logging settings, identities, databases, the TLS session engine and the relay.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod db;
pub mod tls;
