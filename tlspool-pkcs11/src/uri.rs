//! RFC 7512 `pkcs11:` URIs: parsing, printing and matching against tokens and objects.
//!
//! Path attributes select a library, slot, token and object; query attributes name the module
//! and the PIN source. Values are percent-decoded on parsing and percent-encoded on
//! printing, so `token=My%20Token` and the label `My Token` compare equal. An attribute that
//! is absent matches anything, so `pkcs11:` matches every token and object.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::error::{Pkcs11Error, UriProblem};
use crate::token::{LibraryInfo, ObjectInfo, TokenInfo};

/// The object classes that the `type` attribute names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// `public`: `CKO_PUBLIC_KEY`.
    PublicKey,
    /// `private`: `CKO_PRIVATE_KEY`.
    PrivateKey,
    /// `cert`: `CKO_CERTIFICATE`.
    Certificate,
    /// `secret-key`: `CKO_SECRET_KEY`.
    SecretKey,
    /// `data`: `CKO_DATA`.
    Data,
}

impl ObjectType {
    /// Returns the RFC 7512 spelling of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PublicKey => "public",
            Self::PrivateKey => "private",
            Self::Certificate => "cert",
            Self::SecretKey => "secret-key",
            Self::Data => "data",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "public" => Some(Self::PublicKey),
            "private" => Some(Self::PrivateKey),
            "cert" => Some(Self::Certificate),
            "secret-key" => Some(Self::SecretKey),
            "data" => Some(Self::Data),
            _ => None,
        }
    }
}

/// A `library-version` value: a major number and an optional minor number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibraryVersion {
    /// Major version.
    pub major: u8,
    /// Minor version; `library-version=3` means `3.0`.
    pub minor: u8,
}

/// A parsed RFC 7512 `pkcs11:` URI.
///
/// Text attributes contain the decoded UTF-8 value and `id` contains the decoded bytes. `Display`
/// prints the URI without `pin-value`, so a URI can be logged safely; use
/// [`Pkcs11Uri::to_string_with_pin`] for the complete text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token`: the token label (`CK_TOKEN_INFO.label`).
    pub token: Option<String>,
    /// `manufacturer`: `CK_TOKEN_INFO.manufacturerID`.
    pub manufacturer: Option<String>,
    /// `serial`: `CK_TOKEN_INFO.serialNumber`.
    pub serial: Option<String>,
    /// `model`: `CK_TOKEN_INFO.model`.
    pub model: Option<String>,
    /// `library-manufacturer`: `CK_INFO.manufacturerID`.
    pub library_manufacturer: Option<String>,
    /// `library-description`: `CK_INFO.libraryDescription`.
    pub library_description: Option<String>,
    /// `library-version`: `CK_INFO.libraryVersion`.
    pub library_version: Option<LibraryVersion>,
    /// `slot-manufacturer`: `CK_SLOT_INFO.manufacturerID`.
    pub slot_manufacturer: Option<String>,
    /// `slot-description`: `CK_SLOT_INFO.slotDescription`.
    pub slot_description: Option<String>,
    /// `slot-id`: the `CK_SLOT_ID`.
    pub slot_id: Option<u64>,
    /// `object`: the object's `CKA_LABEL`.
    pub object: Option<String>,
    /// `type`: the object's `CKA_CLASS`.
    pub object_type: Option<ObjectType>,
    /// `id`: the object's `CKA_ID` bytes.
    pub id: Option<Vec<u8>>,
    /// `pin-value`: the PIN itself, wiped when the URI is dropped.
    pub pin_value: Option<Zeroizing<String>>,
    /// `pin-source`: where to read the PIN from, such as `file:/etc/token_pin`.
    pub pin_source: Option<String>,
    /// `module-name`: the module's file name without directory and extension.
    pub module_name: Option<String>,
    /// `module-path`: the module's full path.
    pub module_path: Option<String>,
    /// Vendor path attributes (names containing `-`), in URI order. A URI with any of them
    /// matches no token or object, because their meaning is unknown here.
    pub vendor_path: Vec<(String, String)>,
    /// Vendor query attributes, in URI order; they do not affect matching.
    pub vendor_query: Vec<(String, String)>,
}

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI, percent-decoding every value.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::InvalidUri`] naming the attribute that breaks RFC 7512.
    pub fn parse(text: &str) -> Result<Self, Pkcs11Error> {
        let rest =
            strip_scheme(text).ok_or_else(|| invalid("scheme", UriProblem::MissingScheme))?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };

        let mut uri = Self::default();
        for component in path.split(';').filter(|c| !c.is_empty()) {
            let (name, raw) = split_component(component)?;
            check_characters(name, raw, Part::Path)?;
            uri.set_path_attribute(name, raw)?;
        }
        for component in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|c| !c.is_empty())
        {
            let (name, raw) = split_component(component)?;
            check_characters(name, raw, Part::Query)?;
            uri.set_query_attribute(name, raw)?;
        }

        if uri.pin_value.is_some() && uri.pin_source.is_some() {
            return Err(invalid("pin-value", UriProblem::ConflictingPinAttributes));
        }
        Ok(uri)
    }

    /// Returns the URI that selects a token by its manufacturer, model, serial and label.
    pub fn for_token(token: &TokenInfo) -> Self {
        Self {
            token: Some(token.label.clone()),
            manufacturer: Some(token.manufacturer.clone()),
            serial: Some(token.serial.clone()),
            model: Some(token.model.clone()),
            ..Self::default()
        }
    }

    /// Returns the URI of an object on a token: the token's URI plus `object`, `type` and `id`.
    pub fn for_object(token: &TokenInfo, object: &ObjectInfo) -> Self {
        Self {
            object: Some(object.label.clone()),
            object_type: Some(object.object_type),
            id: Some(object.id.clone()),
            ..Self::for_token(token)
        }
    }

    /// Returns a copy that keeps only the token and object attributes, dropping library,
    /// slot, module and PIN attributes.
    pub fn token_and_object(&self) -> Self {
        Self {
            token: self.token.clone(),
            manufacturer: self.manufacturer.clone(),
            serial: self.serial.clone(),
            model: self.model.clone(),
            object: self.object.clone(),
            object_type: self.object_type,
            id: self.id.clone(),
            vendor_path: self.vendor_path.clone(),
            ..Self::default()
        }
    }

    /// Checks the library attributes against a module's `CK_INFO`.
    pub fn matches_library(&self, library: &LibraryInfo) -> bool {
        self.vendor_path.is_empty()
            && matches_text(&self.library_manufacturer, &library.manufacturer)
            && matches_text(&self.library_description, &library.description)
            && self.library_version.is_none_or(|v| {
                v.major == library.version.major && v.minor == library.version.minor
            })
    }

    /// Checks the slot and token attributes against a token's slot and token information.
    pub fn matches_token(&self, token: &TokenInfo) -> bool {
        self.vendor_path.is_empty()
            && self.slot_id.is_none_or(|id| id == token.slot_id)
            && matches_text(&self.slot_manufacturer, &token.slot_manufacturer)
            && matches_text(&self.slot_description, &token.slot_description)
            && matches_text(&self.token, &token.label)
            && matches_text(&self.manufacturer, &token.manufacturer)
            && matches_text(&self.serial, &token.serial)
            && matches_text(&self.model, &token.model)
    }

    /// Checks the `object`, `type` and `id` attributes against an object's attributes.
    pub fn matches_object(&self, object: &ObjectInfo) -> bool {
        self.vendor_path.is_empty()
            && matches_text(&self.object, &object.label)
            && self.object_type.is_none_or(|t| t == object.object_type)
            && self.id.as_ref().is_none_or(|id| *id == object.id)
    }

    /// Prints the complete URI, `pin-value` included, into a buffer that is wiped on drop.
    pub fn to_string_with_pin(&self) -> Zeroizing<String> {
        // Reserve the final size up front, because a reallocation would leave a copy of the PIN
        // in freed memory: each PIN byte takes at most three characters, plus "?pin-value=".
        let pin_len = self.pin_value.as_ref().map_or(0, |p| p.len());
        let capacity = self.to_string().len() + 3 * pin_len + 11;
        let mut text = Zeroizing::new(String::with_capacity(capacity));
        self.write_uri(&mut text, true);
        text
    }

    fn set_path_attribute(&mut self, name: &str, raw: &str) -> Result<(), Pkcs11Error> {
        let slot = match name {
            "token" => &mut self.token,
            "manufacturer" => &mut self.manufacturer,
            "serial" => &mut self.serial,
            "model" => &mut self.model,
            "library-manufacturer" => &mut self.library_manufacturer,
            "library-description" => &mut self.library_description,
            "slot-manufacturer" => &mut self.slot_manufacturer,
            "slot-description" => &mut self.slot_description,
            "object" => &mut self.object,
            "library-version" => {
                let version = parse_library_version(&decode_text(name, raw)?)
                    .ok_or_else(|| invalid(name, UriProblem::InvalidValue("expected M or M.N")))?;
                return set_once(name, &mut self.library_version, version);
            }
            "slot-id" => {
                let id = decode_text(name, raw)?;
                let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
                let id = id.parse().ok().filter(|_| valid);
                let id =
                    id.ok_or_else(|| invalid(name, UriProblem::InvalidValue("expected digits")))?;
                return set_once(name, &mut self.slot_id, id);
            }
            "type" => {
                let value = decode_text(name, raw)?;
                let object_type = ObjectType::parse(&value).ok_or_else(|| {
                    invalid(
                        name,
                        UriProblem::InvalidValue(
                            "expected public, private, cert, secret-key or data",
                        ),
                    )
                })?;
                return set_once(name, &mut self.object_type, object_type);
            }
            "id" => return set_once(name, &mut self.id, percent_decode(name, raw)?),
            vendor if vendor.contains('-') => {
                let value = decode_text(name, raw)?;
                return push_vendor(&mut self.vendor_path, name, value);
            }
            _ => return Err(invalid(name, UriProblem::UnknownAttribute)),
        };
        set_once(name, slot, decode_text(name, raw)?)
    }

    fn set_query_attribute(&mut self, name: &str, raw: &str) -> Result<(), Pkcs11Error> {
        let slot = match name {
            "pin-source" => &mut self.pin_source,
            "module-name" => &mut self.module_name,
            "module-path" => &mut self.module_path,
            "pin-value" => {
                let pin = Zeroizing::new(decode_text(name, raw)?);
                return set_once(name, &mut self.pin_value, pin);
            }
            vendor if vendor.contains('-') => {
                let value = decode_text(name, raw)?;
                return push_vendor(&mut self.vendor_query, name, value);
            }
            _ => return Err(invalid(name, UriProblem::UnknownAttribute)),
        };
        set_once(name, slot, decode_text(name, raw)?)
    }

    fn write_uri(&self, out: &mut String, with_pin: bool) {
        out.push_str("pkcs11:");
        let mut writer = UriWriter {
            out,
            part: Part::Path,
            started: false,
        };
        let texts = [
            ("library-manufacturer", &self.library_manufacturer),
            ("library-description", &self.library_description),
            ("slot-manufacturer", &self.slot_manufacturer),
            ("slot-description", &self.slot_description),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
            ("token", &self.token),
            ("object", &self.object),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                writer.attribute(name, value.as_bytes());
            }
        }
        if let Some(version) = self.library_version {
            let version = format!("{}.{}", version.major, version.minor);
            writer.attribute("library-version", version.as_bytes());
        }
        if let Some(id) = self.slot_id {
            writer.attribute("slot-id", id.to_string().as_bytes());
        }
        if let Some(object_type) = self.object_type {
            writer.attribute("type", object_type.as_str().as_bytes());
        }
        if let Some(id) = &self.id {
            writer.id(id);
        }
        for (name, value) in &self.vendor_path {
            writer.attribute(name, value.as_bytes());
        }

        writer.start_query();
        let pin = self.pin_value.as_ref().filter(|_| with_pin);
        let queries = [
            ("pin-value", pin.map(|p| p.as_str())),
            ("pin-source", self.pin_source.as_deref()),
            ("module-name", self.module_name.as_deref()),
            ("module-path", self.module_path.as_deref()),
        ];
        for (name, value) in queries {
            if let Some(value) = value {
                writer.attribute(name, value.as_bytes());
            }
        }
        for (name, value) in &self.vendor_query {
            writer.attribute(name, value.as_bytes());
        }
    }
}

impl FromStr for Pkcs11Uri {
    type Err = Pkcs11Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Pkcs11Uri {
    /// Prints the URI without `pin-value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.write_uri(&mut text, false);
        f.write_str(&text)
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pkcs11Uri").field(&self.to_string()).finish()
    }
}

/// The two parts of a URI, which allow different characters unencoded.
#[derive(Clone, Copy)]
enum Part {
    Path,
    Query,
}

impl Part {
    /// Returns whether RFC 7512 allows `byte` unencoded in a value of this part:
    /// `pk11-pchar` plus `&` in the path and `/ ? |` in the query.
    fn allows(self, byte: u8) -> bool {
        let unreserved = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
        let res_avail = b":[]@!$'()*+,=".contains(&byte);
        let extra: &[u8] = match self {
            Self::Path => b"&",
            Self::Query => b"/?|",
        };
        unreserved || res_avail || extra.contains(&byte)
    }
}

/// Appends attributes to a URI being printed, writing the PIN-bearing values straight into the
/// output buffer so that no other copy of them is left behind.
struct UriWriter<'a> {
    out: &'a mut String,
    part: Part,
    started: bool,
}

impl UriWriter<'_> {
    fn start_query(&mut self) {
        self.part = Part::Query;
        self.started = false;
    }

    fn begin(&mut self, name: &str) {
        match (self.part, self.started) {
            (Part::Path, false) => {}
            (Part::Path, true) => self.out.push(';'),
            (Part::Query, false) => self.out.push('?'),
            (Part::Query, true) => self.out.push('&'),
        }
        self.started = true;
        self.out.push_str(name);
        self.out.push('=');
    }

    fn attribute(&mut self, name: &str, value: &[u8]) {
        self.begin(name);
        for &byte in value {
            // `=` is allowed unencoded, but encoding it keeps values clear to weaker parsers.
            if self.part.allows(byte) && byte != b'=' {
                self.out.push(char::from(byte));
            } else {
                push_escape(self.out, byte);
            }
        }
    }

    /// Writes `id` with every byte percent-encoded, as p11-kit prints it.
    fn id(&mut self, id: &[u8]) {
        self.begin("id");
        for &byte in id {
            push_escape(self.out, byte);
        }
    }
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

fn strip_scheme(text: &str) -> Option<&str> {
    let prefix = text.get(..7)?;
    prefix.eq_ignore_ascii_case("pkcs11:").then(|| &text[7..])
}

fn split_component(component: &str) -> Result<(&str, &str), Pkcs11Error> {
    component
        .split_once('=')
        .ok_or_else(|| invalid(component, UriProblem::MissingEquals))
}

fn check_characters(name: &str, raw: &str, part: Part) -> Result<(), Pkcs11Error> {
    let name_valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_valid {
        return Err(invalid(name, UriProblem::UnknownAttribute));
    }
    match raw
        .chars()
        .find(|&c| c != '%' && !(c.is_ascii() && part.allows(c as u8)))
    {
        Some(c) => Err(invalid(name, UriProblem::InvalidCharacter(c))),
        None => Ok(()),
    }
}

fn percent_decode(name: &str, raw: &str) -> Result<Vec<u8>, Pkcs11Error> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = raw
            .get(i + 1..i + 3)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
        let byte =
            byte.ok_or_else(|| invalid(name, UriProblem::InvalidPercentEncoding { offset: i }))?;
        decoded.push(byte);
        i += 3;
    }
    Ok(decoded)
}

fn decode_text(name: &str, raw: &str) -> Result<String, Pkcs11Error> {
    String::from_utf8(percent_decode(name, raw)?).map_err(|_| invalid(name, UriProblem::NotUtf8))
}

fn parse_library_version(value: &str) -> Option<LibraryVersion> {
    let (major, minor) = value.split_once('.').unwrap_or((value, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    Some(LibraryVersion {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
    })
}

fn set_once<T>(name: &str, slot: &mut Option<T>, value: T) -> Result<(), Pkcs11Error> {
    if slot.is_some() {
        return Err(invalid(name, UriProblem::Duplicate));
    }
    *slot = Some(value);
    Ok(())
}

fn push_vendor(
    list: &mut Vec<(String, String)>,
    name: &str,
    value: String,
) -> Result<(), Pkcs11Error> {
    if list.iter().any(|(n, _)| n == name) {
        return Err(invalid(name, UriProblem::Duplicate));
    }
    list.push((name.to_owned(), value));
    Ok(())
}

fn matches_text(wanted: &Option<String>, actual: &str) -> bool {
    wanted.as_deref().is_none_or(|w| w == actual)
}

fn invalid(attribute: &str, problem: UriProblem) -> Pkcs11Error {
    Pkcs11Error::InvalidUri {
        attribute: attribute.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenFlags;

    /// The examples of RFC 7512 section 3.3, each on one line.
    const RFC_EXAMPLES: &[&str] = &[
        "pkcs11:",
        "pkcs11:object=my-pubkey;type=public",
        "pkcs11:object=my-key;type=private?pin-source=file:/etc/token",
        "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;\
         model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=\
         ?pin-source=file:/etc/token_pin",
        "pkcs11:object=my-sign-key;type=private?module-name=mypkcs11",
        "pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1",
        "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.\
         ?pin-value=the-pin",
        "pkcs11:slot-description=Sun%20Metaslot",
        "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;\
         library-version=1.23",
        "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;\
         id=%01%02%03%Ba%dd%Ca%fe%04%05%06",
        "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
        "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;\
         type=cert",
        "pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a\
         ?pin-source=file:/etc/token_pin&vendor-bbb=value-b",
    ];

    fn parse(text: &str) -> Pkcs11Uri {
        match Pkcs11Uri::parse(text) {
            Ok(uri) => uri,
            Err(error) => panic!("{text} did not parse: {error}"),
        }
    }

    fn problem(text: &str) -> (String, UriProblem) {
        match Pkcs11Uri::parse(text) {
            Err(Pkcs11Error::InvalidUri { attribute, problem }) => (attribute, problem),
            other => panic!("{text} gave {other:?}, expected InvalidUri"),
        }
    }

    fn token_info() -> TokenInfo {
        TokenInfo {
            slot_id: 7,
            slot_description: "SoftHSM slot ID 0x7".to_owned(),
            slot_manufacturer: "SoftHSM project".to_owned(),
            label: "my-token".to_owned(),
            manufacturer: "SoftHSM project".to_owned(),
            model: "SoftHSM v2".to_owned(),
            serial: "1234abcd".to_owned(),
            flags: TokenFlags::default(),
            min_pin_len: 4,
            max_pin_len: 255,
        }
    }

    #[test]
    fn parses_every_rfc_example() {
        for example in RFC_EXAMPLES {
            parse(example);
        }
    }

    #[test]
    fn decodes_rfc_example_with_token_and_id() {
        let uri = parse(RFC_EXAMPLES[3]);
        assert_eq!(uri.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(uri.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(uri.model.as_deref(), Some("1.0"));
        assert_eq!(uri.serial.as_deref(), Some(""));
        assert_eq!(uri.object.as_deref(), Some("my-certificate"));
        assert_eq!(uri.object_type, Some(ObjectType::Certificate));
        let id = [0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91];
        assert_eq!(uri.id.as_deref(), Some(&id[..]));
        assert_eq!(uri.pin_source.as_deref(), Some("file:/etc/token_pin"));
    }

    #[test]
    fn decodes_query_attributes() {
        let uri = parse(RFC_EXAMPLES[6]);
        assert_eq!(
            uri.pin_value.as_deref().map(String::as_str),
            Some("the-pin")
        );
        assert_eq!(
            parse(RFC_EXAMPLES[4]).module_name.as_deref(),
            Some("mypkcs11")
        );
        let path = parse(RFC_EXAMPLES[5]).module_path;
        assert_eq!(path.as_deref(), Some("/mnt/libmypkcs11.so.1"));
    }

    #[test]
    fn decodes_library_and_slot_attributes() {
        let uri = parse(RFC_EXAMPLES[8]);
        assert_eq!(uri.library_manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(
            uri.library_description.as_deref(),
            Some("Soft Token Library")
        );
        assert_eq!(
            uri.library_version,
            Some(LibraryVersion {
                major: 1,
                minor: 23
            })
        );
        let uri = parse(RFC_EXAMPLES[9]);
        assert_eq!(
            uri.library_version,
            Some(LibraryVersion { major: 3, minor: 0 })
        );
        assert_eq!(uri.token.as_deref(), Some("My token% created by Joe"));
        let id = [1, 2, 3, 0xba, 0xdd, 0xca, 0xfe, 4, 5, 6];
        assert_eq!(uri.id.as_deref(), Some(&id[..]));
        let uri = parse(RFC_EXAMPLES[7]);
        assert_eq!(uri.slot_description.as_deref(), Some("Sun Metaslot"));
        assert_eq!(parse("pkcs11:slot-id=42").slot_id, Some(42));
    }

    #[test]
    fn decodes_utf8_and_escaped_separators() {
        let uri = parse(RFC_EXAMPLES[10]);
        assert_eq!(uri.token.as_deref(), Some("A name with a substring %;"));
        let uri = parse(RFC_EXAMPLES[11]);
        assert_eq!(
            uri.token.as_deref(),
            Some("Name with a small A with acute: \u{e1}")
        );
    }

    #[test]
    fn keeps_vendor_attributes() {
        let uri = parse(RFC_EXAMPLES[12]);
        assert_eq!(
            uri.vendor_path,
            [("vendor-aaa".to_owned(), "value-a".to_owned())]
        );
        assert_eq!(
            uri.vendor_query,
            [("vendor-bbb".to_owned(), "value-b".to_owned())]
        );
    }

    #[test]
    fn printed_form_parses_back_to_same_uri() {
        for example in RFC_EXAMPLES {
            let uri = parse(example);
            let printed = uri.to_string_with_pin();
            assert_eq!(
                parse(&printed),
                uri,
                "{example} printed as {}",
                printed.as_str()
            );
        }
    }

    #[test]
    fn display_omits_pin_value() {
        let uri = parse(RFC_EXAMPLES[6]);
        assert!(!uri.to_string().contains("the-pin"));
        assert!(!format!("{uri:?}").contains("the-pin"));
        assert!(uri.to_string_with_pin().contains("pin-value=the-pin"));
    }

    #[test]
    fn prints_id_and_spaces_percent_encoded() {
        let uri = Pkcs11Uri {
            token: Some("My Token;1".to_owned()),
            id: Some(vec![0x01, 0xab]),
            object_type: Some(ObjectType::PrivateKey),
            ..Pkcs11Uri::default()
        };
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=My%20Token%3B1;type=private;id=%01%AB"
        );
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(parse("PKCS11:token=a").token.as_deref(), Some("a"));
    }

    #[test]
    fn rejects_missing_scheme() {
        assert_eq!(problem("token=a").1, UriProblem::MissingScheme);
        assert_eq!(problem("pkcs1").1, UriProblem::MissingScheme);
    }

    #[test]
    fn rejects_bad_percent_encoding_naming_attribute() {
        let (attribute, found) = problem("pkcs11:token=ok;object=bad%2");
        assert_eq!(attribute, "object");
        assert_eq!(found, UriProblem::InvalidPercentEncoding { offset: 3 });
        let (attribute, found) = problem("pkcs11:id=%zz");
        assert_eq!(attribute, "id");
        assert_eq!(found, UriProblem::InvalidPercentEncoding { offset: 0 });
    }

    #[test]
    fn rejects_non_utf8_text_but_not_binary_id() {
        assert_eq!(
            problem("pkcs11:token=%FF"),
            ("token".to_owned(), UriProblem::NotUtf8)
        );
        assert_eq!(parse("pkcs11:id=%FF").id.as_deref(), Some(&[0xff][..]));
    }

    #[test]
    fn rejects_unencoded_reserved_characters() {
        let (attribute, found) = problem("pkcs11:token=two words");
        assert_eq!(attribute, "token");
        assert_eq!(found, UriProblem::InvalidCharacter(' '));
        // `/` is allowed in the query but not in the path.
        assert_eq!(
            problem("pkcs11:object=a/b").1,
            UriProblem::InvalidCharacter('/')
        );
        assert_eq!(
            problem("pkcs11:token=\u{e1}").1,
            UriProblem::InvalidCharacter('\u{e1}')
        );
    }

    #[test]
    fn rejects_unknown_duplicate_and_malformed_attributes() {
        assert_eq!(
            problem("pkcs11:label=x"),
            ("label".to_owned(), UriProblem::UnknownAttribute)
        );
        assert_eq!(problem("pkcs11:token=a;token=b").1, UriProblem::Duplicate);
        assert_eq!(problem("pkcs11:token").1, UriProblem::MissingEquals);
        assert!(matches!(
            problem("pkcs11:type=key").1,
            UriProblem::InvalidValue(_)
        ));
        assert!(matches!(
            problem("pkcs11:slot-id=-1").1,
            UriProblem::InvalidValue(_)
        ));
        assert!(matches!(
            problem("pkcs11:library-version=1.x").1,
            UriProblem::InvalidValue(_)
        ));
        assert!(matches!(
            problem("pkcs11:library-version=300").1,
            UriProblem::InvalidValue(_)
        ));
    }

    #[test]
    fn rejects_pin_value_with_pin_source() {
        let found = problem("pkcs11:?pin-value=1&pin-source=file:/p").1;
        assert_eq!(found, UriProblem::ConflictingPinAttributes);
    }

    #[test]
    fn matches_token_by_each_attribute() {
        let token = token_info();
        assert!(parse("pkcs11:").matches_token(&token));
        assert!(parse("pkcs11:token=my-token;serial=1234abcd").matches_token(&token));
        assert!(parse("pkcs11:model=SoftHSM%20v2;slot-id=7").matches_token(&token));
        assert!(!parse("pkcs11:token=other").matches_token(&token));
        assert!(!parse("pkcs11:manufacturer=Snake%20Oil,%20Inc.").matches_token(&token));
        assert!(!parse("pkcs11:slot-id=8").matches_token(&token));
        assert!(!parse("pkcs11:token=my-token;vendor-x=1").matches_token(&token));
        assert!(Pkcs11Uri::for_token(&token).matches_token(&token));
    }

    #[test]
    fn matches_object_by_label_type_and_id() {
        let object = ObjectInfo {
            label: "my-key".to_owned(),
            object_type: ObjectType::PrivateKey,
            id: vec![1, 2],
            key_type: None,
        };
        assert!(parse("pkcs11:object=my-key").matches_object(&object));
        assert!(parse("pkcs11:type=private;id=%01%02").matches_object(&object));
        assert!(!parse("pkcs11:type=public;id=%01%02").matches_object(&object));
        assert!(!parse("pkcs11:id=%01").matches_object(&object));
        assert!(!parse("pkcs11:object=my-pubkey").matches_object(&object));
    }

    #[test]
    fn matches_library_version() {
        let library = LibraryInfo {
            manufacturer: "SoftHSM".to_owned(),
            description: "Implementation of PKCS11".to_owned(),
            version: LibraryVersion { major: 2, minor: 6 },
        };
        assert!(parse("pkcs11:library-version=2.6").matches_library(&library));
        assert!(!parse("pkcs11:library-version=2").matches_library(&library));
        assert!(parse("pkcs11:library-manufacturer=SoftHSM").matches_library(&library));
    }
}
