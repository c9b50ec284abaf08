//! A validated response: its DNSSEC security status, and the records of the queried type at
//! the end of the CNAME chain that starts at the query name.

use bytes::Bytes;
use domain::base::iana::{OptRcode, Rtype};
use domain::base::rdata::RecordData as _;
use domain::base::{Message, Name, ParsedName, ToName};
use domain::rdata::AllRecordData;

use super::DnsError;

/// The most CNAME records followed from the query name, as in the `domain` validator's default.
pub const MAX_CNAME_CHAIN: usize = 11;

/// Record data as parsed from a response.
pub type RecordData = AllRecordData<Bytes, ParsedName<Bytes>>;

/// The DNSSEC security status of a response (RFC 4033 section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Every signature from a trust anchor down to the answer, or to the proof that it does
    /// not exist, verifies.
    Secure,
    /// A signed proof shows that a zone on the way from a trust anchor is unsigned.
    Insecure,
    /// The response should be signed but fails validation, for the reason given.
    Bogus(String),
    /// No trust anchor covers the name.
    Indeterminate,
}

/// A response whose security status has been established.
///
/// Only a [`Security::Secure`] answer's records and denials may be relied upon; the others
/// are kept for logging and for callers that accept unsigned data knowingly.
#[derive(Debug, Clone)]
pub struct Answer {
    qname: Name<Bytes>,
    qtype: Rtype,
    security: Security,
    message: Message<Bytes>,
}

/// The records of the queried type at the end of the CNAME chain.
#[derive(Debug, Clone)]
pub struct Rrset {
    /// The owner of the records: the query name, or the last CNAME target.
    pub owner: String,
    /// The CNAME targets followed from the query name, in order.
    pub cname_chain: Vec<String>,
    /// The records of the queried type at `owner`; empty when the name or the type does not
    /// exist there.
    pub records: Vec<RecordData>,
}

impl Answer {
    pub(super) fn new(
        qname: Name<Bytes>,
        qtype: Rtype,
        security: Security,
        message: Message<Bytes>,
    ) -> Self {
        Self {
            qname,
            qtype,
            security,
            message,
        }
    }

    /// Returns the security status.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// Tells whether the response code is NXDOMAIN: the name at the end of the CNAME chain
    /// does not exist.
    pub fn is_nxdomain(&self) -> bool {
        self.message.opt_rcode() == OptRcode::NXDOMAIN
    }

    /// Returns the response message, after validation adjusted its TTLs.
    pub fn message(&self) -> &Message<Bytes> {
        &self.message
    }

    /// Follows the CNAME records of the answer section from the query name, as the validator
    /// did, and returns the records of the queried type at the end of the chain.
    ///
    /// # Errors
    ///
    /// [`DnsError::InvalidResponse`] for a record that does not parse, a name with more than
    /// one CNAME record, a CNAME loop, or a chain longer than [`MAX_CNAME_CHAIN`].
    pub fn rrset(&self) -> Result<Rrset, DnsError> {
        let records = self.answer_records()?;
        let mut owner = self.qname.clone();
        let mut cname_chain: Vec<Name<Bytes>> = Vec::new();
        loop {
            let mut targets = records.iter().filter_map(|(name, data)| match data {
                AllRecordData::Cname(cname) if *name == owner => Some(cname.cname()),
                _ => None,
            });
            let Some(target) = targets.next() else {
                break;
            };
            if targets.next().is_some() {
                return Err(self.invalid(format!("{owner} has more than one CNAME record")));
            }
            let target: Name<Bytes> = target.to_name();
            if target == self.qname || cname_chain.contains(&target) {
                return Err(self.invalid(format!("the CNAME chain loops at {target}")));
            }
            if cname_chain.len() == MAX_CNAME_CHAIN {
                return Err(self.invalid(format!(
                    "the CNAME chain is longer than {MAX_CNAME_CHAIN} records"
                )));
            }
            cname_chain.push(target.clone());
            owner = target;
        }

        let matching = records
            .into_iter()
            .filter(|(name, data)| *name == owner && data.rtype() == self.qtype)
            .map(|(_, data)| data)
            .collect();
        Ok(Rrset {
            owner: owner.to_string(),
            cname_chain: cname_chain.iter().map(ToString::to_string).collect(),
            records: matching,
        })
    }

    fn answer_records(&self) -> Result<Vec<(Name<Bytes>, RecordData)>, DnsError> {
        let section = self
            .message
            .answer()
            .map_err(|err| self.invalid(format!("the answer section is invalid: {err}")))?;
        let mut records = Vec::new();
        for record in section {
            let record =
                record.map_err(|err| self.invalid(format!("a record is invalid: {err}")))?;
            let parsed = record
                .into_record::<RecordData>()
                .map_err(|err| self.invalid(format!("a record is invalid: {err}")))?;
            if let Some(parsed) = parsed {
                let owner: Name<Bytes> = parsed.owner().to_name();
                records.push((owner, parsed.into_data()));
            }
        }
        Ok(records)
    }

    fn invalid(&self, reason: String) -> DnsError {
        DnsError::InvalidResponse {
            name: self.qname.to_string(),
            rtype: self.qtype.to_string(),
            reason,
        }
    }
}
