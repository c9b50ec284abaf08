//! Core of the TLS Pool: configuration, logging settings, identities, databases, the TLS session
//! engine and the relay.
//!
//! ```
//! use std::path::Path;
//!
//! use tlspool_core::{Config, LogLevel};
//!
//! let text = "socket_mode 0660\nsocket_name /run/tlspool.sock\nlog_level DEBUG\n";
//! let config = Config::parse(text, Path::new("/etc/tlspool.conf"))?;
//! assert_eq!(config.sockets()[0].mode, Some(0o660));
//! assert_eq!(config.log_level(), LogLevel::Debug);
//! # Ok::<(), tlspool_core::ConfigError>(())
//! ```
//!
//! The `subscriber` feature adds `logging::init_subscriber`, which binaries use to install
//! the tracing subscriber.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod config;
pub mod db;
pub mod logging;
pub mod relay;
pub mod tls;

pub use config::{
    Config, ConfigError, Directive, Key, Pkcs11Token, SocketSpec, client_socket_path, configvar,
};
pub use logging::{LogCategories, LogLevel, LogSettings, LoggingError};
