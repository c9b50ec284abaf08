//! tlstunnel: plaintext services wrapped in TLS through the TLS Pool daemon.
//!
//! It will own the client and server tunnel modes, their listeners and chat scripts.
