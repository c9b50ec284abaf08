//! Chat scripts run on the cipher-side connection before STARTTLS, so that protocols which
//! negotiate TLS in plaintext (SMTP, IMAP, POP3) can be bootstrapped.

mod driver;
mod interpreter;
mod script;

pub use driver::ChatMode;
pub use interpreter::{Action, Chat};
pub use script::{ChatScript, DEFAULT_TIMEOUT, DELAY, PAUSE};
