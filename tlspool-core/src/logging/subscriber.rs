//! The process-wide tracing subscriber of the daemon: an `EnvFilter` built from the logging
//! settings (or from `RUST_LOG`), writing to stderr or to the local syslog socket.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::Mutex;

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use super::{LogSettings, LoggingError};

/// Local syslog socket.
const SYSLOG_SOCKET: &str = "/dev/log";

/// Syslog identity. The process id follows it in every message, as with `LOG_PID`.
const SYSLOG_IDENTITY: &str = "tlspool";

/// A tracing layer that sends each event as one RFC 3164 message to a syslog socket.
struct SyslogLayer {
    logger: Mutex<Logger<LoggerBackend, Formatter3164>>,
}

/// Collects an event's message and fields into one line.
#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

/// Installs the global tracing subscriber for `settings`.
///
/// The filter comes from `RUST_LOG` when that variable is set and not empty, and replaces the
/// `log_level` and `log_filter` settings entirely. Otherwise it is
/// [`LogSettings::filter_directives`]. With `settings.stderr` the events go to stderr.
/// Otherwise they go to the syslog socket `/dev/log` with identity `tlspool`, the process id
/// and facility `LOG_DAEMON`. When that socket cannot be connected, the events go to stderr
/// and a warning saying so is written to stderr first, because the level filter could drop it.
///
/// # Errors
///
/// [`LoggingError::InvalidFilter`] when `RUST_LOG` does not parse, and
/// [`LoggingError::AlreadyInstalled`] when a global subscriber exists already.
pub fn init_subscriber(settings: &LogSettings) -> Result<(), LoggingError> {
    let filter = build_filter(settings)?;

    let syslog = if settings.stderr {
        None
    } else {
        match SyslogLayer::connect(Path::new(SYSLOG_SOCKET)) {
            Ok(layer) => Some(layer),
            Err(error) => {
                eprintln!(
                    "{SYSLOG_IDENTITY}: warning: cannot connect to syslog socket \
                     {SYSLOG_SOCKET} ({error}); logging to stderr"
                );
                None
            }
        }
    };
    let stderr = syslog.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
    });

    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(syslog)
        .try_init()
        .map_err(|error| LoggingError::AlreadyInstalled {
            reason: error.to_string(),
        })
}

/// Builds the filter from `RUST_LOG` if set, else from the settings.
fn build_filter(settings: &LogSettings) -> Result<EnvFilter, LoggingError> {
    let from_environment = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.is_empty());
    let (origin, directives) = match from_environment {
        Some(value) => ("RUST_LOG", value),
        None => ("log_level and log_filter", settings.filter_directives()),
    };
    EnvFilter::try_new(&directives).map_err(|error| LoggingError::InvalidFilter {
        origin,
        directives,
        reason: error.to_string(),
    })
}

impl SyslogLayer {
    /// Connects to the syslog datagram socket at `socket`.
    fn connect(socket: &Path) -> Result<Self, syslog::Error> {
        let formatter = Formatter3164 {
            facility: Facility::LOG_DAEMON,
            hostname: None,
            process: SYSLOG_IDENTITY.to_owned(),
            pid: std::process::id(),
        };
        let logger = syslog::unix_custom(formatter, socket)?;
        Ok(Self {
            logger: Mutex::new(logger),
        })
    }
}

impl<S: Subscriber> Layer<S> for SyslogLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let line = format!(
            "{}: {}{}",
            event.metadata().target(),
            visitor.message,
            visitor.fields
        );

        // A failed send cannot be logged anywhere, so it is dropped.
        let mut logger = self
            .logger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = match *event.metadata().level() {
            Level::ERROR => logger.err(line),
            Level::WARN => logger.warning(line),
            Level::INFO => logger.info(line),
            Level::DEBUG | Level::TRACE => logger.debug(line),
        };
    }
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::logging::{TARGET_DAEMON, TARGET_TLS};

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 2048];
        let length = socket.recv(&mut buffer).expect("syslog datagram");
        String::from_utf8_lossy(&buffer[..length]).into_owned()
    }

    #[test]
    fn syslog_layer_sends_rfc3164_lines() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("log");
        let server = UnixDatagram::bind(&path).expect("bind syslog socket");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");

        let layer = SyslogLayer::connect(&path).expect("connect syslog socket");
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: TARGET_DAEMON, socket = "/run/x.sock", "listener failed");
            tracing::info!(target: TARGET_TLS, "handshake done");
        });

        // Priority = facility LOG_DAEMON (3) * 8 + severity.
        let error_line = receive(&server);
        assert!(error_line.starts_with("<27>"), "{error_line}");
        let identity = format!("tlspool[{}]: ", std::process::id());
        assert!(error_line.contains(&identity), "{error_line}");
        assert!(
            error_line.ends_with("tlspool::daemon: listener failed socket=\"/run/x.sock\""),
            "{error_line}"
        );
        let info_line = receive(&server);
        assert!(info_line.starts_with("<30>"), "{info_line}");
        assert!(
            info_line.ends_with("tlspool::tls: handshake done"),
            "{info_line}"
        );
    }

    #[test]
    fn syslog_connect_fails_without_socket() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let missing = directory.path().join("absent");
        assert!(SyslogLayer::connect(&missing).is_err());
    }

    #[test]
    fn settings_filter_parses() {
        let filter = build_filter(&LogSettings::default());
        assert!(filter.is_ok());
    }
}
