//! A virtual OpenPGP card for the tests: the opcard implementation of the OpenPGP card
//! application (version 3.4), running on trussed's software platform with RAM storage, served
//! to the `vpcd` reader driver of pcscd through the vpicc protocol.
//!
//! The card starts empty with the factory PINs (user `123456`, admin `12345678`) and keeps its
//! state in RAM only, so every start is a fresh card. It connects to vpcd, retrying until pcscd
//! has loaded the driver, and exits with status 0 when pcscd closes the connection, so stopping
//! pcscd stops the card too.
//!
//! NOTE: trussed's software platform seeds its random number generator with a constant, so keys
//! generated on this card are predictable. The card is for tests only.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

use iso7816::command::{CommandView, FromSliceError};
use iso7816::{Command, Instruction, Status};
use trussed::backend::{Backend as _, BackendId};
use trussed::platform::Platform;
use trussed::serde_extensions::{ExtensionDispatch, ExtensionId, ExtensionImpl};
use trussed::service::ServiceResources;
use trussed::types::Context;
use trussed::virt::{self, StoreConfig};
use trussed_auth::AuthExtension;
use trussed_auth_backend::{AuthBackend, AuthContext, FilesystemLayout};
use trussed_chunked::ChunkedExtension;
use trussed_core::Error as TrussedError;
use trussed_core::api::{Reply, Request, reply, request};
use trussed_core::types::Location;
use trussed_staging::{StagingBackend, StagingContext};
use trussed_wrap_key_to_file::WrapKeyToFileExtension;

/// Maximum length of one command or response APDU after chaining is resolved, the extended
/// length limit opcard is built for.
const MAX_APDU_LEN: usize = 7609;

/// How long the card keeps retrying to connect while pcscd loads the vpcd driver.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves a virtual OpenPGP card to the vpcd reader driver of pcscd.
#[derive(argh::FromArgs)]
struct Args {
    /// address of the vpcd driver (default 127.0.0.1:35963, the port vpcd opens for its first
    /// reader)
    #[argh(
        option,
        default = "SocketAddr::from(([127, 0, 0, 1], vpicc::DEFAULT_PORT))"
    )]
    vpcd: SocketAddr,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args: Args = argh::from_env();

    let mut connection = match connect_with_retry(args.vpcd) {
        Ok(connection) => connection,
        Err(error) => {
            tracing::error!(vpcd = %args.vpcd, %error, "connecting to vpcd failed");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(vpcd = %args.vpcd, "virtual openpgp card connected");

    let result: std::io::Result<std::convert::Infallible> =
        virt::with_platform(StoreConfig::ram(), |platform| {
            platform.run_client_with_backends("opcard", CardDispatch::new(), BACKENDS, |client| {
                let mut card =
                    VpiccCard::new(opcard::Card::new(client, opcard::Options::default()));
                loop {
                    connection.poll(&mut card)?;
                }
            })
        });

    match result {
        Ok(never) => match never {},
        Err(error) if error.kind() == ErrorKind::UnexpectedEof => {
            tracing::info!("vpcd closed the connection, virtual openpgp card stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "serving the virtual openpgp card failed");
            ExitCode::FAILURE
        }
    }
}

/// Connects to vpcd, retrying every 20 ms until [`CONNECT_TIMEOUT`] has passed.
fn connect_with_retry(address: SocketAddr) -> std::io::Result<vpicc::Connection> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match vpicc::connect_socket(address) {
            Ok(connection) => return Ok(connection),
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "vpcd not reachable yet, retrying");
                sleep(Duration::from_millis(20));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Backends opcard calls, in the order trussed tries them for a core request.
const BACKENDS: &[BackendId<Backend>] = &[
    BackendId::Custom(Backend::Staging),
    BackendId::Custom(Backend::Auth),
    BackendId::Core,
];

/// Custom trussed backends of the virtual card.
#[derive(Debug, Clone, Copy)]
enum Backend {
    /// PIN storage and retry counters (trussed-auth).
    Auth,
    /// Key wrapping to files and chunked file access (trussed-staging).
    Staging,
}

/// Trussed extensions opcard uses, numbered for the serialised extension requests.
#[derive(Debug, Clone, Copy)]
enum Extension {
    Auth,
    WrapKeyToFile,
    Chunked,
}

impl From<Extension> for u8 {
    fn from(extension: Extension) -> Self {
        match extension {
            Extension::Auth => 0,
            Extension::WrapKeyToFile => 1,
            Extension::Chunked => 2,
        }
    }
}

impl TryFrom<u8> for Extension {
    type Error = TrussedError;

    fn try_from(id: u8) -> Result<Self, Self::Error> {
        match id {
            0 => Ok(Self::Auth),
            1 => Ok(Self::WrapKeyToFile),
            2 => Ok(Self::Chunked),
            _ => Err(TrussedError::InternalError),
        }
    }
}

/// Routes trussed requests to the auth and staging backends.
struct CardDispatch {
    auth: AuthBackend,
    staging: StagingBackend,
}

/// Per-client state of the two custom backends.
#[derive(Default)]
struct CardDispatchContext {
    auth: AuthContext,
    staging: StagingContext,
}

impl CardDispatch {
    fn new() -> Self {
        Self {
            auth: AuthBackend::new(Location::Internal, FilesystemLayout::V0),
            staging: StagingBackend::new(),
        }
    }
}

impl ExtensionDispatch for CardDispatch {
    type BackendId = Backend;
    type Context = CardDispatchContext;
    type ExtensionId = Extension;

    fn core_request<P: Platform>(
        &mut self,
        backend: &Backend,
        ctx: &mut Context<CardDispatchContext>,
        request: &Request,
        resources: &mut ServiceResources<P>,
    ) -> Result<Reply, TrussedError> {
        match backend {
            Backend::Auth => {
                self.auth
                    .request(&mut ctx.core, &mut ctx.backends.auth, request, resources)
            }
            Backend::Staging => {
                self.staging
                    .request(&mut ctx.core, &mut ctx.backends.staging, request, resources)
            }
        }
    }

    fn extension_request<P: Platform>(
        &mut self,
        backend: &Backend,
        extension: &Extension,
        ctx: &mut Context<CardDispatchContext>,
        request: &request::SerdeExtension,
        resources: &mut ServiceResources<P>,
    ) -> Result<reply::SerdeExtension, TrussedError> {
        let core = &mut ctx.core;
        match (backend, extension) {
            (Backend::Auth, Extension::Auth) => self.auth.extension_request_serialized(
                core,
                &mut ctx.backends.auth,
                request,
                resources,
            ),
            (Backend::Staging, Extension::WrapKeyToFile) => {
                ExtensionImpl::<WrapKeyToFileExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    &mut ctx.backends.staging,
                    request,
                    resources,
                )
            }
            (Backend::Staging, Extension::Chunked) => {
                ExtensionImpl::<ChunkedExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    &mut ctx.backends.staging,
                    request,
                    resources,
                )
            }
            _ => Err(TrussedError::RequestNotAvailable),
        }
    }
}

impl ExtensionId<AuthExtension> for CardDispatch {
    type Id = Extension;
    const ID: Extension = Extension::Auth;
}

impl ExtensionId<WrapKeyToFileExtension> for CardDispatch {
    type Id = Extension;
    const ID: Extension = Extension::WrapKeyToFile;
}

impl ExtensionId<ChunkedExtension> for CardDispatch {
    type Id = Extension;
    const ID: Extension = Extension::Chunked;
}

/// An opcard card seen through vpicc: resolves command chaining (ISO 7816-4 CLA bit 0x10) and
/// hands out long responses with GET RESPONSE (status `61xx`).
struct VpiccCard<T: opcard::Client> {
    card: opcard::Card<T>,
    chained: Option<Command<MAX_APDU_LEN>>,
    response: heapless::Vec<u8, MAX_APDU_LEN>,
    response_offset: usize,
}

impl<T: opcard::Client> VpiccCard<T> {
    fn new(card: opcard::Card<T>) -> Self {
        Self {
            card,
            chained: None,
            response: heapless::Vec::new(),
            response_offset: 0,
        }
    }

    /// Executes one APDU and returns the response data and status word.
    fn respond(&mut self, apdu: &[u8]) -> (Vec<u8>, Status) {
        let command = match Command::<MAX_APDU_LEN>::try_from(apdu) {
            Ok(command) => command,
            Err(error) => return (Vec::new(), status_for_parse_error(error)),
        };

        // Collect a chain until its last command arrives.
        let command = match self.chained.take() {
            Some(mut first) => {
                if first.extend_from_command(&command).is_err() {
                    return (Vec::new(), Status::WrongLength);
                }
                first
            }
            None => command,
        };
        if !command.class().chain().last_or_only() {
            self.chained = Some(command);
            return (Vec::new(), Status::Success);
        }

        if command.instruction() != Instruction::GetResponse {
            self.response.clear();
            self.response_offset = 0;
            let view: CommandView<'_> = command.as_view();
            if let Err(status) = self.card.handle(view, &mut self.response) {
                return (Vec::new(), status);
            }
        }
        self.next_response_chunk(command.expected())
    }

    /// Returns up to `max_len` bytes of the pending response, with `61xx` while more remain.
    fn next_response_chunk(&mut self, max_len: usize) -> (Vec<u8>, Status) {
        let pending = &self.response[self.response_offset..];
        let chunk = pending[..max_len.min(pending.len())].to_vec();
        self.response_offset += chunk.len();

        let remaining = self.response.len() - self.response_offset;
        if remaining == 0 {
            (chunk, Status::Success)
        } else {
            let announced = u8::try_from(remaining).unwrap_or(u8::MAX);
            (chunk, Status::MoreAvailable(announced))
        }
    }
}

impl<T: opcard::Client> vpicc::VSmartCard for VpiccCard<T> {
    fn power_off(&mut self) {
        self.card.reset();
    }

    fn reset(&mut self) {
        self.card.reset();
    }

    fn execute(&mut self, apdu: &[u8]) -> Vec<u8> {
        let (mut data, status) = self.respond(apdu);
        let status: [u8; 2] = status.into();
        data.extend_from_slice(&status);
        data
    }
}

/// Maps a malformed APDU to the ISO 7816-4 status word the card returns for it.
fn status_for_parse_error(error: FromSliceError) -> Status {
    tracing::warn!(?error, "malformed apdu");
    match error {
        FromSliceError::InvalidSliceLength | FromSliceError::TooShort | FromSliceError::TooLong => {
            Status::WrongLength
        }
        FromSliceError::InvalidClass => Status::ClassNotSupported,
        FromSliceError::InvalidFirstBodyByteForExtended => Status::UnspecifiedCheckingError,
    }
}
