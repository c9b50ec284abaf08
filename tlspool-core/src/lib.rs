//! Core of the TLS Pool: configuration, logging settings, identities, databases, the TLS session engine and the relay.
#![warn(missing_docs)]

pub mod db;
