//! STARTTLS for a new session over TCP: the procedure of the TLS Pool version 2 protocol from
//! the request to the relay, run as one task per request.
//!
//! The task normalises the roles, finds the local credential (asking the application first
//! with `LOCALID_CHECK`), runs the handshake on the ciphertext socket within the request's
//! timeout, validates the peer, obtains the plaintext descriptor (PLAINTEXT_CONNECT), registers
//! the control key and sends the final reply with the negotiated identities and `pio_cbid` 0.
//! Then it hands the session to a relay task, which lives until the session ends, or until
//! its control connection closes when the session is attached and was not started with
//! `FORK`. Every failure sends one ERROR record built by [`StartTlsError::to_record`]; both
//! descriptors are then closed and nothing stays registered, because each lives in a value
//! the failing task drops. The connection task aborts the request when its client
//! disconnects, which frees the same things.
//!
//! # Known limitations
//!
//! - A client with `LOCALID_CHECK` receives its LOCALID callback before the handshake, for
//!   the first disclosed identity, even when the server never requests a certificate. The
//!   local identity selection service is consulted at the same point.
//! - `DTLS` and `DOMAIN_REPRESENTS_USER` are accepted and have no effect. `IGNORE_CACHES`
//!   bypasses the cache of the online validation checks.

mod callback;
mod card;
mod client_hello;
mod credentials;
mod dtls;
mod error;
mod onthefly;
mod peer;
mod plaintext;
mod privacy;
mod renegotiate;
mod validation;

use std::os::fd::{AsFd, AsRawFd as _, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::socket::{SockaddrStorage, getpeername};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use tlspool_core::db::{DbEnv, DiscloseChanges};
use tlspool_core::logging::TARGET_TLS;
use tlspool_core::relay::{self, CipherSocket, QueryReceiver, RelayEnd, RelayError};
use tlspool_core::tls::{
    self, ClientCertificate, CredentialSelector, Role, Session, SessionConfig, TlsError,
};
use tlspool_proto::{Identity, Payload, Record, StartTls, StartTlsFlags, TIMEOUT_DEFAULT};

pub use credentials::{CACHE_TTL, CredentialLoader, MAX_CONCURRENT_LOOKUPS};
pub use dtls::DtlsSettings;
pub use error::{OpenPgpRejection, PeerCause, StartTlsError};
pub use onthefly::OnTheFlySigner;
pub use privacy::PrivacySettings;
pub use validation::Validation;

use crate::commands::CommandContext;
use crate::lidentry::{Choice, LidEntryService, Selection};
use crate::pinentry::PinEntryService;
use crate::protocol::Request;
use crate::sessions::Registration;
use callback::Caller;
use credentials::{LocalCredential, certificate_types};
use dtls::CipherTransport;
use privacy::PrivacyOutcome;

/// GnuTLS's default handshake timeout (`GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT`, 40 s in GnuTLS
/// 3.7), for a request whose timeout is 0.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(40);

/// `pioc_starttls.timeout` for "no timeout".
const TIMEOUT_NONE: u32 = tlspool_proto::TIMEOUT_INFINITE;

/// IP protocol numbers of the `ipproto` field.
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_SCTP: u8 = 132;

/// What every STARTTLS request of the daemon shares: the databases, the GnuTLS priority, the
/// credential loader, the PIN entry service, the local identity selection service and the
/// on-the-fly signer.
#[derive(Debug)]
pub struct TlsResources {
    /// The databases, or `None` without `dbenv_dir`.
    pub databases: Option<DbEnv>,
    /// The GnuTLS priority string (`tls_priority`).
    pub priority: String,
    /// Whether X.509 is preferred over an OpenPGP raw public key when both sides can use
    /// either (`tls_prefer_x509`).
    pub prefer_x509: bool,
    /// The runner and cache of credential lookups, bounded by `pkcs11_timeout`.
    pub credentials: CredentialLoader,
    /// The validation expression settings and online checks.
    pub validation: Validation,
    /// The settings and cookie secret of DTLS sessions (`ipproto` 17).
    pub dtls: DtlsSettings,
    /// The PIN entry service that token logins ask after `pkcs11_pin`.
    pub pin_entry: Arc<PinEntryService>,
    /// The local identity selection service that client handshakes consult.
    pub lidentry: LidEntryService,
    /// The signer of on-the-fly certificates, when one is configured.
    pub on_the_fly: Option<OnTheFlySigner>,
    /// The privacy mode settings and registry.
    pub privacy: PrivacySettings,
}

/// A session whose final reply is due: the handshake is done, the peer validated and the
/// control key registered.
struct Established {
    session: Session,
    cipher: CipherTransport,
    plaintext: OwnedFd,
    registration: Registration,
    queries: QueryReceiver,
    reply: StartTls,
    /// The request id of the final reply: that of the last callback response.
    reqid: u16,
    /// Application data received before privacy mode authenticated the peer.
    early_plaintext: Vec<u8>,
}

/// Serves one STARTTLS request: negotiates the session, sends the final reply or the ERROR,
/// and starts the relay.
pub(crate) async fn serve(request: Request, context: CommandContext) {
    let connection = context.connection.0;
    let request_reqid = request.record.reqid;
    if let Payload::StartTls(params) = &request.record.payload {
        if params.flags.contains(StartTlsFlags::RENEGOTIATE) {
            let reply =
                renegotiate::serve(request_reqid, params.clone(), request.fd, &context).await;
            if let Err(error) = context.writer.send_record(&reply, None).await {
                debug!(target: TARGET_TLS, connection, reqid = request_reqid, %error,
                    "sending the renegotiation reply failed");
            }
            return;
        }
    }
    let peer = peer_address(request.fd.as_ref());
    let (requested_local_id, requested_remote_id) = match &request.record.payload {
        Payload::StartTls(params) => (params.localid.to_string(), params.remoteid.to_string()),
        _ => (String::new(), String::new()),
    };
    match negotiate(request, &context).await {
        Ok(established) => {
            let reply = Record::new(
                established.reqid,
                Payload::StartTls(established.reply.clone()),
            );
            if let Err(error) = context.writer.send_record(&reply, None).await {
                debug!(target: TARGET_TLS, connection, reqid = established.reqid, %error,
                    "sending the STARTTLS reply failed; closing the session");
                return;
            }
            info!(target: TARGET_TLS, connection, reqid = established.reqid, %peer,
                local_id = established.reply.localid.as_str(),
                remote_id = established.reply.remoteid.as_str(), "tls session established");
            tokio::spawn(relay_session(established, connection, peer));
        }
        Err((reqid, error)) => {
            warn!(target: TARGET_TLS, connection, reqid = request_reqid, %peer,
                local_id = requested_local_id, remote_id = requested_remote_id, %error,
                "starttls failed");
            let record = error.to_record(reqid);
            if let Err(error) = context.writer.send_record(&record, None).await {
                debug!(target: TARGET_TLS, connection, reqid, %error,
                    "sending the STARTTLS error failed");
            }
        }
    }
}

/// Relays `established` until it ends, then unregisters its control key.
async fn relay_session(established: Established, connection: u64, peer: String) {
    let Established {
        session,
        cipher,
        plaintext,
        registration,
        queries,
        early_plaintext,
        reply,
        ..
    } = established;
    let stop = registration.stop_signal();
    let outcome = match cipher {
        CipherTransport::Stream(cipher) => {
            relay::run_on_socket(session, cipher, plaintext, stop, queries, early_plaintext).await
        }
        CipherTransport::Datagram {
            socket,
            idle_timeout,
        } => {
            let idle_timeout = Some(idle_timeout);
            relay::run_datagram(session, socket, plaintext, stop, queries, idle_timeout).await
        }
    };
    let end = match &outcome.end {
        RelayEnd::Closed => "closed".to_owned(),
        RelayEnd::HungUp(role) => format!("{role} side hung up"),
        RelayEnd::Stopped => {
            "stopped by the control connection's close or the daemon's stop".to_owned()
        }
        RelayEnd::IdleTimedOut { idle } => {
            format!("no datagram from the DTLS peer for {} s", idle.as_secs())
        }
        RelayEnd::Failed(error) => error.to_string(),
        other => format!("{other:?}"),
    };
    let (local_id, remote_id) = (reply.localid.as_str(), reply.remoteid.as_str());
    let (sent, received) = (outcome.plaintext_to_tls, outcome.tls_to_plaintext);
    match &outcome.end {
        RelayEnd::Failed(RelayError::Tls {
            source: TlsError::PrematureTermination,
            ..
        }) => warn!(target: TARGET_TLS, connection, %peer, local_id, remote_id,
            plaintext_to_tls = sent, tls_to_plaintext = received,
            "tls session truncated: the peer closed the connection without close_notify"),
        RelayEnd::Failed(_) => warn!(target: TARGET_TLS, connection, %peer, local_id, remote_id,
            end = %end, plaintext_to_tls = sent, tls_to_plaintext = received,
            "tls session failed"),
        _ => info!(target: TARGET_TLS, connection, %peer, local_id, remote_id, end = %end,
            plaintext_to_tls = sent, tls_to_plaintext = received, "tls session ended"),
    }
    drop(registration);
}

/// Returns the peer address of the ciphertext socket `fd` for logs, or `unknown`.
fn peer_address(fd: Option<&OwnedFd>) -> String {
    fd.and_then(|fd| getpeername::<SockaddrStorage>(fd.as_raw_fd()).ok())
        .map_or_else(|| "unknown".to_owned(), |address| address.to_string())
}

/// The state of one request while it negotiates.
struct Negotiation<'c> {
    context: &'c CommandContext,
    resources: &'c Arc<TlsResources>,
    caller: Caller,
    params: StartTls,
    reqid: u16,
    forked: bool,
    plaintext: Option<OwnedFd>,
    /// Disclose changes that the local identity selection service asked for, committed when
    /// the handshake succeeds and dropped with the negotiation otherwise.
    disclose_changes: DiscloseChanges,
}

/// Runs the procedure up to the final reply; on failure returns the request id for the ERROR.
async fn negotiate(
    request: Request,
    context: &CommandContext,
) -> Result<Established, (u16, StartTlsError)> {
    let reqid = request.record.reqid;
    let Payload::StartTls(params) = request.record.payload else {
        // The connection routes only STARTTLS records here.
        return Err((reqid, StartTlsError::CipherSocketNeeded));
    };
    let mut negotiation = Negotiation {
        context,
        resources: &context.tls,
        caller: Caller {
            connection: context.connection,
            callbacks: Arc::clone(&context.callbacks),
            writer: context.writer.clone(),
        },
        params,
        reqid,
        forked: false,
        plaintext: None,
        disclose_changes: DiscloseChanges::new(),
    };
    match negotiation.run(request.fd).await {
        Ok(established) => Ok(established),
        Err(error) => Err((negotiation.reqid, error)),
    }
}

impl Negotiation<'_> {
    async fn run(&mut self, cipher_fd: Option<OwnedFd>) -> Result<Established, StartTlsError> {
        // Step 1: FORK is remembered, not echoed; the ciphertext socket is required.
        self.forked = self.params.flags.contains(StartTlsFlags::FORK);
        self.params.flags.remove(StartTlsFlags::FORK);
        let cipher_fd = cipher_fd.ok_or(StartTlsError::CipherSocketNeeded)?;
        let peer_port = validation::peer_port(cipher_fd.as_fd());
        let role = normalise_roles(&mut self.params.flags)?;
        check_transport(self.params.ipproto)?;
        let databases = self
            .resources
            .databases
            .as_ref()
            .ok_or(StartTlsError::NoDatabases)?;
        let deadline = handshake_timeout(self.params.timeout).map(|limit| Deadline {
            at: Instant::now() + limit,
            limit,
        });

        let (mut session, cipher, local_id) = match role {
            Role::Client => self.client_handshake(cipher_fd, deadline).await?,
            Role::Server => self.server_handshake(cipher_fd, deadline).await?,
        };
        let (privacy, early_plaintext) = match &cipher {
            CipherTransport::Stream(stream) if self.offers_privacy(role) => {
                let settings = &self.resources.privacy;
                let priority = &self.resources.priority;
                privacy::authenticate(
                    &mut session,
                    stream,
                    priority,
                    settings.max_preauth,
                    deadline,
                )
                .await?
            }
            _ => (PrivacyOutcome::NotAttempted, Vec::new()),
        };
        let request = peer::PeerRequest {
            flags: self.params.flags,
            remote_id: self.params.remoteid.as_str(),
            local_id: &local_id,
            peer_port,
            privacy,
        };
        let validation = &self.resources.validation;
        // NOTE: peer validation still reads the trust database on the async worker.
        let peer = peer::prepare(databases, validation, &session, &request)?;
        let remote_id = peer::decide(peer, validation).await?;
        self.params.localid = identity_field("localid", &local_id)?;
        self.params.remoteid = identity_field("remoteid", &remote_id)?;
        debug!(target: TARGET_TLS, connection = self.context.connection.0, reqid = self.reqid,
            local_id, remote_id, version = ?session.protocol_version(),
            peer_certificate_type = ?session.peer_certificate_type(), "peer validated");

        let plaintext = match self.plaintext.take() {
            Some(fd) => fd,
            None => {
                let (reqid, fd) = self
                    .caller
                    .plaintext_connect(self.reqid, &self.params)
                    .await?;
                self.reqid = reqid;
                fd
            }
        };
        plaintext::check(
            plaintext.as_fd(),
            self.is_datagram(),
            self.caller.writer.stream().as_fd(),
        )?;
        let owner =
            (!self.params.flags.contains(StartTlsFlags::DETACH)).then_some(self.context.connection);
        let (sender, queries) = relay::query_channel();
        let registration = self
            .context
            .sessions
            .register(self.params.ctlkey, owner, self.forked, sender)
            .map_err(|_| StartTlsError::CtlKeyInUse)?;
        if privacy == PrivacyOutcome::Ran {
            registration.set_privacy_renegotiated();
        }
        let changes = std::mem::take(&mut self.disclose_changes);
        self.resources
            .credentials
            .commit_disclose_changes(Arc::clone(self.resources), changes)
            .await?;
        Ok(Established {
            session,
            cipher,
            plaintext,
            registration,
            queries,
            reply: self.params.clone(),
            reqid: self.reqid,
            early_plaintext,
        })
    }

    /// Returns whether this request offers the privacy mode precursor in the local `role`.
    fn offers_privacy(&self, role: Role) -> bool {
        !self.is_datagram()
            && self
                .resources
                .privacy
                .permits(self.params.service.as_str(), role)
    }

    /// Handshakes as a TLS client with the credential disclosed to the remote identity.
    async fn client_handshake(
        &mut self,
        cipher_fd: OwnedFd,
        deadline: Option<Deadline>,
    ) -> Result<(Session, CipherTransport, String), StartTlsError> {
        let remote_id = self.params.remoteid.as_str().to_owned();
        let credential = self.client_credential(&remote_id).await?;

        let mut config = self.session_config(Role::Client, deadline);
        if !self.params.flags.contains(StartTlsFlags::WITHOUT_SNI) {
            config.sni = Some(domain_of(&remote_id).to_owned()).filter(|name| !name.is_empty());
        }
        let (credentials, local_id) = match credential {
            Some(found) => (found.credentials, found.local_id),
            None => {
                let anonymous = tls::Credentials::anonymous_client()
                    .map_err(|source| StartTlsError::SessionSetup { source })?;
                (anonymous, String::new())
            }
        };
        config.certificate_types = certificate_types(&credentials, self.resources.prefer_x509);
        let session = self.new_session(config, &credentials, None, cipher_fd.as_fd())?;
        let dtls = &self.resources.dtls;
        let (session, cipher) = drive(session, cipher_fd, &[], deadline, None, dtls).await?;
        Ok((session, cipher, local_id))
    }

    /// Handshakes as a TLS server with the credential of `localid` or of the client's SNI.
    async fn server_handshake(
        &mut self,
        cipher_fd: OwnedFd,
        deadline: Option<Deadline>,
    ) -> Result<(Session, CipherTransport, String), StartTlsError> {
        let mut config = self.session_config(Role::Server, deadline);
        let preset = self.params.localid.as_str().to_owned();
        let check = self.params.flags.contains(StartTlsFlags::LOCALID_CHECK);

        // Without a preset identity the credential follows the client's server name. The
        // ClientHello is read first so that the lookup runs off the handshake, which calls the
        // credential selector synchronously.
        // A DTLS server always reads the ClientHello first, because the cookie exchange
        // precedes the session.
        if check || preset.is_empty() || self.is_datagram() {
            let (cipher_fd, received, server_name, cookie) = if self.is_datagram() {
                let dtls = &self.resources.dtls;
                let hello = with_deadline(deadline, dtls::read_hello(cipher_fd, dtls)).await??;
                let fd = hello.socket.into_fd();
                (fd, hello.datagram, hello.server_name, Some(hello.cookie))
            } else {
                let hello = with_deadline(deadline, client_hello::read(cipher_fd)).await?;
                let (fd, received, server_name) = hello?;
                (fd, received, server_name, None)
            };
            let (field, proposal) = match (preset.is_empty(), server_name) {
                (false, name) => {
                    check_server_name(&preset, name.as_deref())?;
                    ("localid", preset)
                }
                (true, Some(name)) => ("server name", name),
                (true, None) => return Err(StartTlsError::NoServerName),
            };
            let (field, chosen) = if check {
                ("localid", self.check_localid(&proposal).await?)
            } else {
                (field, proposal)
            };
            let found = self.server_credential(field, &chosen).await?;
            config.certificate_types =
                certificate_types(&found.credentials, self.resources.prefer_x509);
            let session =
                self.new_session(config, &found.credentials, cookie, cipher_fd.as_fd())?;
            let dtls = &self.resources.dtls;
            let (session, cipher) =
                drive(session, cipher_fd, &received, deadline, None, dtls).await?;
            return Ok((session, cipher, found.local_id));
        }

        let choice = Arc::new(Mutex::new(SelectorChoice::default()));
        let found = self.server_credential("localid", &preset).await?;
        let preset_credential = LocalCredential {
            local_id: preset.clone(),
            credentials: found.credentials.clone(),
        };
        config.credential_selector = Some(selector(preset_credential, Arc::clone(&choice)));
        config.certificate_types =
            certificate_types(&found.credentials, self.resources.prefer_x509);
        let session = self.new_session(config, &found.credentials, None, cipher_fd.as_fd())?;
        let dtls = &self.resources.dtls;
        let (session, cipher) =
            drive(session, cipher_fd, &[], deadline, Some(&choice), dtls).await?;
        let local_id = lock(&choice).local_id.clone().unwrap_or(preset);
        Ok((session, cipher, local_id))
    }

    /// Finds the credential a client shows to `remote_id`: an on-the-fly certificate with
    /// `LOCALID_ONTHEFLY`, the choice of the local identity selection service, or the first
    /// disclosed identity; with `LOCALID_CHECK` the application confirms the identity first.
    /// Returns `None` when no certificate is shown.
    async fn client_credential(
        &mut self,
        remote_id: &str,
    ) -> Result<Option<LocalCredential>, StartTlsError> {
        let resources = Arc::clone(self.resources);
        let loader = &resources.credentials;
        let flags = self.params.flags;
        let check = flags.contains(StartTlsFlags::LOCALID_CHECK);
        let requested = self.params.localid.as_str().to_owned();
        if flags.contains(StartTlsFlags::LOCALID_ONTHEFLY)
            && resources.on_the_fly.is_some()
            && !requested.is_empty()
        {
            let chosen = if check {
                self.check_localid(&requested).await?
            } else {
                requested
            };
            return self.on_the_fly_credential(&chosen).await.map(Some);
        }

        if resources.lidentry.is_available() {
            let (remote, disclosure) = loader
                .find_disclosure(Arc::clone(&resources), remote_id)
                .await?;
            let selection = resources
                .lidentry
                .consult(&remote, disclosure.as_ref())
                .await?;
            if let Some(selection) = selection {
                return self.selected_credential(selection).await;
            }
        }

        if check {
            let disclosed = loader
                .disclosed_identities(Arc::clone(&resources), remote_id)
                .await?;
            let proposal = disclosed
                .first()
                .map(ToString::to_string)
                .unwrap_or(requested);
            let chosen = self.check_localid(&proposal).await?;
            return loader
                .client_credential(Arc::clone(&resources), &chosen)
                .await
                .map(Some);
        }
        loader
            .disclosed_client_credential(Arc::clone(&resources), remote_id)
            .await
    }

    /// Finds the credential of the identity a local identity selection service chose, after
    /// the application confirms it with `LOCALID_CHECK`, and records the disclose changes the
    /// answer asked for. Returns `None` when the service chose no identity.
    async fn selected_credential(
        &mut self,
        selection: Selection,
    ) -> Result<Option<LocalCredential>, StartTlsError> {
        for change in selection.changes {
            self.disclose_changes.push(change);
        }
        let chosen = match &selection.choice {
            Choice::Nothing => return Ok(None),
            Choice::Stored(local_id) | Choice::New(local_id) | Choice::OnTheFly(local_id) => {
                local_id.clone()
            }
        };
        let chosen = if self.params.flags.contains(StartTlsFlags::LOCALID_CHECK) {
            self.check_localid(&chosen).await?
        } else {
            chosen
        };

        let resources = Arc::clone(self.resources);
        let loader = &resources.credentials;
        let found = match selection.choice {
            Choice::OnTheFly(_) => self.on_the_fly_credential(&chosen).await?,
            Choice::New(_) => {
                loader
                    .new_client_credential(Arc::clone(&resources), &chosen, selection.window)
                    .await?
            }
            Choice::Stored(_) | Choice::Nothing => {
                loader
                    .client_credential(Arc::clone(&resources), &chosen)
                    .await?
            }
        };
        Ok(Some(found))
    }

    /// Issues an on-the-fly certificate for `local_id` and the request's service.
    async fn on_the_fly_credential(
        &self,
        local_id: &str,
    ) -> Result<LocalCredential, StartTlsError> {
        let service = self.params.service.as_str().to_owned();
        self.resources
            .credentials
            .on_the_fly_credential(Arc::clone(self.resources), local_id, &service)
            .await
    }

    /// Finds the server credential of `local_id` (read from request field `field`): an
    /// on-the-fly certificate with `LOCALID_ONTHEFLY`, a configured signer and a requested
    /// `localid`, else the localid database entry.
    async fn server_credential(
        &self,
        field: &'static str,
        local_id: &str,
    ) -> Result<LocalCredential, StartTlsError> {
        let on_the_fly = self.params.flags.contains(StartTlsFlags::LOCALID_ONTHEFLY)
            && self.resources.on_the_fly.is_some()
            && !self.params.localid.as_str().is_empty();
        if on_the_fly {
            return self.on_the_fly_credential(local_id).await;
        }
        self.resources
            .credentials
            .server_credential(Arc::clone(self.resources), field, local_id)
            .await
    }

    /// Sends the LOCALID callback for `proposal` and returns the accepted identity. A
    /// descriptor in the response becomes the plaintext descriptor.
    async fn check_localid(&mut self, proposal: &str) -> Result<String, StartTlsError> {
        let mut params = self.params.clone();
        params.localid = identity_field("localid", proposal)?;
        let answer = self.caller.localid(self.reqid, &params).await?;
        self.reqid = answer.reqid;
        if let Some(fd) = answer.plaintext {
            self.plaintext = Some(fd);
        }
        Ok(answer.local_id)
    }

    /// Returns whether the request runs DTLS over UDP.
    fn is_datagram(&self) -> bool {
        self.params.ipproto == IPPROTO_UDP
    }

    /// Creates the TLS session, or for UDP the DTLS session with the path MTU of `cipher`.
    fn new_session(
        &self,
        config: SessionConfig,
        credentials: &tls::Credentials,
        cookie: Option<tls::CookieState>,
        cipher: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Session, StartTlsError> {
        let role = config.role;
        let session = if self.is_datagram() {
            let mut dtls = tls::DtlsConfig::new(self.resources.dtls.mtu_for(cipher));
            dtls.cookie = cookie;
            Session::new_dtls(config, credentials, dtls)
        } else {
            Session::new(config, credentials)
        };
        let mut session = session.map_err(|source| StartTlsError::SessionSetup { source })?;
        if self.offers_privacy(role) {
            session
                .offer_anonymous_precursor(&self.resources.priority)
                .map_err(|source| StartTlsError::SessionSetup { source })?;
        }
        Ok(session)
    }

    fn session_config(&self, role: Role, deadline: Option<Deadline>) -> SessionConfig {
        let flags = self.params.flags;
        let mut config = SessionConfig::new(role);
        if self.is_datagram() {
            config.priority.clone_from(&self.resources.dtls.priority);
        } else {
            config.priority.clone_from(&self.resources.priority);
        }
        config.handshake_timeout = deadline.map(Deadline::remaining);
        config.client_cert = if flags.contains(StartTlsFlags::IGNORE_REMOTEID) {
            ClientCertificate::Ignore
        } else if flags.contains(StartTlsFlags::REQUEST_REMOTEID) {
            ClientCertificate::Request
        } else {
            ClientCertificate::Require
        };
        config
    }
}

/// What the server's credential selector decided, read after the handshake.
#[derive(Debug, Default)]
struct SelectorChoice {
    local_id: Option<String>,
    failure: Option<StartTlsError>,
}

/// Builds the selector of a server with a preset `localid` and without `LOCALID_CHECK`: it
/// returns the credential of `preset` when the client's server name matches the domain of
/// `localid` (or is absent).
fn selector(preset: LocalCredential, choice: Arc<Mutex<SelectorChoice>>) -> CredentialSelector {
    Arc::new(move |server_name: Option<&str>| {
        let result = check_server_name(&preset.local_id, server_name).map(|()| preset.clone());
        let mut choice = lock(&choice);
        match result {
            Ok(found) => {
                choice.local_id = Some(found.local_id);
                Some(found.credentials)
            }
            Err(error) => {
                choice.failure = Some(error);
                None
            }
        }
    })
}

/// Runs the handshake of `session` over `cipher_fd`, feeding `received` first (for DTLS, as
/// one datagram), until `deadline`. A failure of the server's selector replaces the handshake
/// error it caused.
async fn drive(
    mut session: Session,
    cipher_fd: OwnedFd,
    received: &[u8],
    deadline: Option<Deadline>,
    choice: Option<&Arc<Mutex<SelectorChoice>>>,
    dtls: &DtlsSettings,
) -> Result<(Session, CipherTransport), StartTlsError> {
    let timeout = deadline.map(Deadline::remaining);
    let result = if session.is_datagram() {
        let socket = dtls::datagram_socket(cipher_fd)?;
        if !received.is_empty() {
            session.feed_datagram(received);
        }
        match relay::drive_dtls_handshake(&mut session, &socket, timeout).await {
            Ok(()) => Ok(CipherTransport::Datagram {
                socket,
                idle_timeout: dtls.idle_timeout,
            }),
            Err(error) => Err(error),
        }
    } else {
        let cipher = CipherSocket::new(cipher_fd).map_err(StartTlsError::from_handshake)?;
        session.feed_ciphertext(received);
        match relay::drive_handshake(&mut session, &cipher, timeout).await {
            Ok(()) => Ok(CipherTransport::Stream(cipher)),
            Err(error) => Err(error),
        }
    };
    let error = match result {
        Ok(cipher) => return Ok((session, cipher)),
        Err(error) => error,
    };
    if let Some(failure) = choice.and_then(|choice| lock(choice).failure.take()) {
        return Err(failure);
    }
    Err(drive_error(error, deadline))
}

/// Classifies a failure of the handshake driver, naming the request's timeout when it passed.
fn drive_error(error: RelayError, deadline: Option<Deadline>) -> StartTlsError {
    let timed_out = match &error {
        RelayError::HandshakeTimedOut { .. } => true,
        RelayError::Tls { source, .. } => matches!(source, TlsError::HandshakeTimeout),
        _ => false,
    };
    match deadline {
        Some(deadline) if timed_out => StartTlsError::HandshakeTimedOut {
            timeout: deadline.limit,
        },
        _ => StartTlsError::from_handshake(error),
    }
}

/// The end of the handshake time of a request.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    /// The request's whole timeout, for the message.
    limit: Duration,
}

impl Deadline {
    fn remaining(self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// Awaits `future` until `deadline`, mapping a timeout to [`StartTlsError::HandshakeTimedOut`].
async fn with_deadline<T>(
    deadline: Option<Deadline>,
    future: impl Future<Output = T>,
) -> Result<T, StartTlsError> {
    let Some(deadline) = deadline else {
        return Ok(future.await);
    };
    tokio::time::timeout_at(deadline.at, future)
        .await
        .map_err(|_| StartTlsError::HandshakeTimedOut {
            timeout: deadline.limit,
        })
}

/// Applies the role rules: a local server needs a remote client and a local client a remote
/// server. Returns the one local role left.
fn normalise_roles(flags: &mut StartTlsFlags) -> Result<Role, StartTlsError> {
    if !flags.contains(StartTlsFlags::REMOTEROLE_CLIENT) {
        flags.remove(StartTlsFlags::LOCALROLE_SERVER);
    }
    if !flags.contains(StartTlsFlags::REMOTEROLE_SERVER) {
        flags.remove(StartTlsFlags::LOCALROLE_CLIENT);
    }
    let client = flags.contains(StartTlsFlags::LOCALROLE_CLIENT);
    let server = flags.contains(StartTlsFlags::LOCALROLE_SERVER);
    match (client, server) {
        (true, true) => Err(StartTlsError::PeerRoleNotImplemented),
        (true, false) => Ok(Role::Client),
        (false, true) => Ok(Role::Server),
        (false, false) => Err(StartTlsError::NoLocalRole {
            flags: flags.bits(),
        }),
    }
}

/// Accepts TCP (TLS) and UDP (DTLS, whether or not the request sets `DTLS`).
fn check_transport(ipproto: u8) -> Result<(), StartTlsError> {
    match ipproto {
        IPPROTO_TCP | IPPROTO_UDP => Ok(()),
        // NOTE: DTLS over SCTP (RFC 6083) is not built, and this kernel has no SCTP to test it.
        IPPROTO_SCTP => Err(StartTlsError::TransportUnsupported {
            transport: "SCTP",
            ipproto,
        }),
        _ => Err(StartTlsError::UnknownTransport { ipproto }),
    }
}

/// Converts the request's timeout: 0 is GnuTLS's default, 0xFFFFFFFF none, else milliseconds.
fn handshake_timeout(timeout_ms: u32) -> Option<Duration> {
    match timeout_ms {
        TIMEOUT_DEFAULT => Some(DEFAULT_HANDSHAKE_TIMEOUT),
        TIMEOUT_NONE => None,
        ms => Some(Duration::from_millis(u64::from(ms))),
    }
}

/// Returns the domain of a DoNAI: the part after the last `@`, or all of it.
fn domain_of(donai: &str) -> &str {
    donai.rsplit_once('@').map_or(donai, |(_, domain)| domain)
}

/// Checks that the client's server name, if it sent one, is the domain of `local_id`.
fn check_server_name(local_id: &str, server_name: Option<&str>) -> Result<(), StartTlsError> {
    match server_name {
        Some(name) if !name.eq_ignore_ascii_case(domain_of(local_id)) => {
            Err(StartTlsError::ServerNameMismatch {
                local_id: local_id.to_owned(),
                server_name: name.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

fn identity_field(field: &'static str, value: &str) -> Result<Identity, StartTlsError> {
    Identity::for_field(field, value).map_err(|error| StartTlsError::InvalidIdentity {
        field,
        value: value.to_owned(),
        reason: error.to_string(),
    })
}

fn lock(choice: &Mutex<SelectorChoice>) -> std::sync::MutexGuard<'_, SelectorChoice> {
    choice.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(bits: u32) -> (Result<Role, StartTlsError>, u32) {
        let mut flags = StartTlsFlags::from_bits_retain(bits);
        let role = normalise_roles(&mut flags);
        (role, flags.bits())
    }

    #[test]
    fn roles_normalise_against_remote_roles() {
        assert!(matches!(normalised(0x9), (Ok(Role::Client), 0x9)));
        assert!(matches!(normalised(0x6), (Ok(Role::Server), 0x6)));
        // A local client without a remote server loses its role.
        assert!(matches!(
            normalised(0x1),
            (Err(StartTlsError::NoLocalRole { .. }), 0)
        ));
        // Both roles on both sides are the peer role.
        assert!(matches!(
            normalised(0xf),
            (Err(StartTlsError::PeerRoleNotImplemented), 0xf)
        ));
        // Local peer with only a remote server leaves the client role.
        assert!(matches!(normalised(0xb), (Ok(Role::Client), 0x9)));
    }

    #[test]
    fn timeouts_follow_the_request_field() {
        assert_eq!(handshake_timeout(0), Some(DEFAULT_HANDSHAKE_TIMEOUT));
        assert_eq!(handshake_timeout(u32::MAX), None);
        assert_eq!(handshake_timeout(1500), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn transports_tcp_and_udp_only() {
        assert!(check_transport(IPPROTO_TCP).is_ok());
        assert!(check_transport(IPPROTO_UDP).is_ok());
        assert!(matches!(
            check_transport(IPPROTO_SCTP),
            Err(StartTlsError::TransportUnsupported { .. })
        ));
        assert!(matches!(
            check_transport(0),
            Err(StartTlsError::UnknownTransport { ipproto: 0 })
        ));
    }

    #[test]
    fn server_name_must_match_localid_domain() {
        assert!(check_server_name("server.example", Some("SERVER.example")).is_ok());
        assert!(check_server_name("user@server.example", Some("server.example")).is_ok());
        assert!(check_server_name("server.example", None).is_ok());
        assert!(matches!(
            check_server_name("server.example", Some("other.example")),
            Err(StartTlsError::ServerNameMismatch { .. })
        ));
        assert_eq!(domain_of("a@b@c.example"), "c.example");
    }
}
