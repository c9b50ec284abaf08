//! Loading the PKCS #11 module named by `pkcs11_path`, listing its tokens and finding the
//! token and objects that a `pkcs11:` URI names.
//!
//! A module is loaded and initialised once per process and kept until the process exits:
//! `C_Finalize` is never called, because GnuTLS may use the same module through its own
//! handle. Initialise the module here before GnuTLS adds it as a provider. A module that
//! someone else in the process already initialised (`CKR_CRYPTOKI_ALREADY_INITIALIZED`) is
//! accepted with a warning, but then that party's `C_Finalize` would end this crate's
//! sessions too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use tracing::{debug, info, warn};

use crate::error::Pkcs11Error;
use crate::pin::PinSource;
use crate::session::TokenSession;
use crate::token::{KeyKind, LibraryInfo, ObjectInfo, TokenInfo};
use crate::uri::{ObjectType, Pkcs11Uri};

/// A loaded and initialised PKCS #11 module, shared by every user in the process.
pub struct Module {
    path: PathBuf,
    context: Pkcs11,
    library: LibraryInfo,
    sessions: Mutex<HashMap<u64, Arc<TokenSession>>>,
    pub(crate) counters: Counters,
}

/// How often this crate called session and login functions of a module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleStats {
    /// `C_OpenSession` calls.
    pub sessions_opened: u64,
    /// `C_Login` calls, successful or not.
    pub login_attempts: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) sessions_opened: AtomicU64,
    pub(crate) login_attempts: AtomicU64,
}

/// Modules loaded in this process, keyed by canonical path.
static LOADED: Mutex<Vec<(PathBuf, Arc<Module>)>> = Mutex::new(Vec::new());

impl Module {
    /// Loads and initialises the module at `path` with OS locking (`CKF_OS_LOCKING_OK`), or
    /// returns the instance already loaded from the same file.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::Load`] when the file is not a PKCS #11 module, and
    /// [`Pkcs11Error::Call`] when `C_Initialize` or `C_GetInfo` fail.
    pub fn load(path: impl AsRef<Path>) -> Result<Arc<Self>, Pkcs11Error> {
        let path = path.as_ref();
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut loaded = lock(&LOADED);
        if let Some((_, module)) = loaded.iter().find(|(loaded_key, _)| *loaded_key == key) {
            return Ok(Arc::clone(module));
        }

        let context = Pkcs11::new(path).map_err(|source| Pkcs11Error::Load {
            path: path.to_path_buf(),
            source,
        })?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(CryptokiError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                warn!(path = %path.display(), "PKCS #11 module was already initialised in this process");
            }
            Err(error) => return Err(Pkcs11Error::from_cryptoki("initialising the module", error)),
        }
        let library = context
            .get_library_info()
            .map_err(|e| Pkcs11Error::from_cryptoki("reading library information", e))?;
        let library = LibraryInfo::from_cryptoki(&library);
        info!(
            path = %path.display(),
            manufacturer = %library.manufacturer,
            description = %library.description,
            "loaded PKCS #11 module"
        );

        let module = Arc::new(Self {
            path: path.to_path_buf(),
            context,
            library,
            sessions: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        });
        loaded.push((key, Arc::clone(&module)));
        Ok(module)
    }

    /// Returns the path the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the module's `CK_INFO`.
    pub fn library_info(&self) -> &LibraryInfo {
        &self.library
    }

    /// Returns how many sessions and logins this crate has opened and tried on the module.
    pub fn stats(&self) -> ModuleStats {
        ModuleStats {
            sessions_opened: self.counters.sessions_opened.load(Ordering::Relaxed),
            login_attempts: self.counters.login_attempts.load(Ordering::Relaxed),
        }
    }

    /// Lists the initialised tokens in the module's slots.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::Call`] when `C_GetSlotList`, `C_GetSlotInfo` or `C_GetTokenInfo` fail.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, Pkcs11Error> {
        let slots = self
            .context
            .get_slots_with_initialized_token()
            .map_err(|e| Pkcs11Error::from_cryptoki("listing slots", e))?;
        slots
            .into_iter()
            .map(|slot| self.token_info(slot))
            .collect()
    }

    /// Returns the first token that matches the library, slot and token attributes of `uri`.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::TokenNotFound`] when no token matches.
    pub fn find_token(&self, uri: &Pkcs11Uri) -> Result<TokenInfo, Pkcs11Error> {
        let not_found = || Pkcs11Error::TokenNotFound {
            uri: uri.to_string(),
        };
        if !uri.matches_library(&self.library) {
            return Err(not_found());
        }
        let mut matching = self.tokens()?.into_iter().filter(|t| uri.matches_token(t));
        let token = matching.next().ok_or_else(not_found)?;
        let others = matching.count();
        if others > 0 {
            debug!(uri = %uri, token = %token.label, others, "URI matches several tokens; using the first");
        }
        Ok(token)
    }

    /// Lists the objects on the token of `uri` that match its `object`, `type` and `id`.
    ///
    /// The search logs in first (asking `pins`) unless the URI selects only public keys or
    /// certificates, because private objects are invisible before a login.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::TokenNotFound`], the login errors of [`Module::login`], and
    /// [`Pkcs11Error::Call`] when a search or attribute read fails.
    pub fn find_objects(
        &self,
        uri: &Pkcs11Uri,
        pins: &dyn PinSource,
    ) -> Result<Vec<ObjectInfo>, Pkcs11Error> {
        let token = self.find_token(uri)?;
        let public_only = matches!(
            uri.object_type,
            Some(ObjectType::PublicKey | ObjectType::Certificate)
        );
        let found = self.with_session(&token, !public_only, pins, |session| {
            let found = find_matching(session, uri)?;
            if found.is_empty() && !public_only && token.flags.login_required {
                // Private objects vanish from searches when the login was lost.
                crate::session::check_logged_in(session)?;
            }
            Ok(found)
        })?;
        Ok(found.into_iter().map(|(_, object)| object).collect())
    }

    /// Logs the user in to `token` unless a session of this process already is, asking
    /// `pins` for the PIN. The login lasts as long as the session this crate keeps open, and
    /// PKCS #11 shares it with every other session of the process on that token, including
    /// those GnuTLS opens.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::WrongPin`], [`Pkcs11Error::PinLocked`] or
    /// [`Pkcs11Error::PinNotProvided`] when no accepted PIN was found.
    pub fn login(&self, token: &TokenInfo, pins: &dyn PinSource) -> Result<(), Pkcs11Error> {
        self.with_session(token, true, pins, |_| Ok(()))
    }

    /// Runs `operation` in the token's shared session, opening it and logging in when needed.
    /// A session that the token reports as invalid or logged out is reopened once.
    pub(crate) fn with_session<T>(
        &self,
        token: &TokenInfo,
        login: bool,
        pins: &dyn PinSource,
        operation: impl FnMut(&Session) -> Result<T, Pkcs11Error>,
    ) -> Result<T, Pkcs11Error> {
        let entry = {
            let mut sessions = lock(&self.sessions);
            let entry = sessions.entry(token.slot_id).or_insert_with(|| {
                Arc::new(TokenSession::new(
                    token.slot_id,
                    token.flags.write_protected,
                ))
            });
            Arc::clone(entry)
        };
        entry.run(self, token, login, pins, operation)
    }

    pub(crate) fn context(&self) -> &Pkcs11 {
        &self.context
    }

    /// Reads a slot's and its token's information afresh.
    pub(crate) fn token_info(&self, slot: Slot) -> Result<TokenInfo, Pkcs11Error> {
        let slot_info = self
            .context
            .get_slot_info(slot)
            .map_err(|e| Pkcs11Error::from_cryptoki("reading slot information", e))?;
        let token_info = self
            .context
            .get_token_info(slot)
            .map_err(|e| Pkcs11Error::from_cryptoki("reading token information", e))?;
        Ok(TokenInfo::from_cryptoki(slot.id(), &slot_info, &token_info))
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

/// Finds the objects of the session's token that match the object attributes of `uri`.
pub(crate) fn find_matching(
    session: &Session,
    uri: &Pkcs11Uri,
) -> Result<Vec<(ObjectHandle, ObjectInfo)>, Pkcs11Error> {
    let mut template = Vec::new();
    if let Some(object_type) = uri.object_type {
        template.push(Attribute::Class(object_type.class()));
    }
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    let handles = session
        .find_objects(&template)
        .map_err(|e| Pkcs11Error::from_cryptoki("searching objects", e))?;

    let mut found = Vec::new();
    for handle in handles {
        let Some(object) = read_object_info(session, handle)? else {
            continue;
        };
        if uri.matches_object(&object) {
            found.push((handle, object));
        }
    }
    Ok(found)
}

/// Reads the class, label, id and key type of an object; `None` for classes a URI cannot name.
fn read_object_info(
    session: &Session,
    handle: ObjectHandle,
) -> Result<Option<ObjectInfo>, Pkcs11Error> {
    let wanted = [
        AttributeType::Class,
        AttributeType::Label,
        AttributeType::Id,
    ];
    let attributes = session
        .get_attributes(handle, &wanted)
        .map_err(|e| Pkcs11Error::from_cryptoki("reading object attributes", e))?;
    let mut object_type = None;
    let mut label = String::new();
    let mut id = Vec::new();
    for attribute in attributes {
        match attribute {
            Attribute::Class(class) => object_type = ObjectType::from_class(class),
            Attribute::Label(bytes) => label = String::from_utf8_lossy(&bytes).into_owned(),
            Attribute::Id(bytes) => id = bytes,
            _ => {}
        }
    }
    let Some(object_type) = object_type else {
        return Ok(None);
    };

    let mut key_type = None;
    if matches!(object_type, ObjectType::PublicKey | ObjectType::PrivateKey) {
        let attributes = session
            .get_attributes(handle, &[AttributeType::KeyType])
            .map_err(|e| Pkcs11Error::from_cryptoki("reading the key type", e))?;
        key_type = attributes.into_iter().find_map(|a| match a {
            Attribute::KeyType(kind) => Some(KeyKind::from_key_type(kind)),
            _ => None,
        });
    }
    Ok(Some(ObjectInfo {
        object_type,
        label,
        id,
        key_type,
    }))
}

/// Locks a mutex, taking over the data of a thread that panicked while holding it: every
/// value guarded here stays consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
