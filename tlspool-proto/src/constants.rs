//! Sizes, default paths and limits of the TLS Pool version 2 protocol.

/// Size of every command record in either direction, in bytes.
pub const RECORD_LEN: usize = 388;

/// Size of the record header (`pio_reqid`, `pio_cbid`, `pio_cmd`), in bytes.
pub const HEADER_LEN: usize = 8;

/// Size of the payload union that follows the header, in bytes.
pub const PAYLOAD_LEN: usize = RECORD_LEN - HEADER_LEN;

/// Identity string of the version 2 protocol: the semantics date 2015-11-11 followed by the
/// producer's DoNAI. Clients and the daemon exchange it in PING.
pub const IDENTITY_V2: &str = "20151111api@tlspool.arpa2.net";

/// Length of a control key, in bytes.
pub const CTLKEY_LEN: usize = 16;

/// Size of the service name field, in bytes, so a service name has at most 15 characters.
pub const SERVICE_LEN: usize = 16;

/// Size of the PRNG buffer (control key, label, context, or output), in bytes.
pub const PRNG_BUF_LEN: usize = 350;

/// Size of the INFO value buffer, in bytes (the PRNG buffer size minus a control key).
pub const INFO_BUF_LEN: usize = 334;

/// Handshake timeout value that selects the TLS library's default.
pub const TIMEOUT_DEFAULT: u32 = 0;

/// Handshake timeout value that disables the timeout.
pub const TIMEOUT_INFINITE: u32 = 0xFFFF_FFFF;

/// Configuration file read when `TLSPOOL_CONFIG_FILE` is not set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tlspool.conf";

/// Socket path used when neither an explicit path nor a `socket_name` setting is found.
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/tlspool.sock";

/// PID file path used when the configuration names none.
pub const DEFAULT_PIDFILE_PATH: &str = "/var/run/tlspool.pid";

/// Highest callback id; valid callback ids are `1..=MAX_CALLBACK_ID` and 0 means "no callback".
pub const MAX_CALLBACK_ID: u16 = 1024;

/// Size of an identity or other string field (127 characters plus NUL), in bytes.
pub const ID_FIELD_LEN: usize = 128;

/// Size of the PING producer field, in bytes.
pub const PRODUCER_LEN: usize = 136;

/// Size of the token manufacturer and token label fields of PINENTRY, in bytes.
pub const TOKEN_LABEL_LEN: usize = 36;

/// Size of the token model and token serial fields of PINENTRY, in bytes.
pub const TOKEN_SERIAL_LEN: usize = 20;
