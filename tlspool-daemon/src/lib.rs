//! The TLS Pool daemon `tlspool` and its database tool `tlspool-admin`.
pub mod admin;
