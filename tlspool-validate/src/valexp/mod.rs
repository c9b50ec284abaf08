//! Validation expressions: small postfix boolean formulas over 30 predicates that decide
//! whether a completed handshake is acceptable, as defined by the TLS Pool version 2 protocol.
//!
//! [`Valexp::parse`] reads the text, [`Valexp::expand`] builds the ordered [`NormalForm`],
//! [`NormalForm::all_of`] combines the expressions of several sources with AND, and a
//! [`Registration`] evaluates a normal form as predicate results arrive, returning
//! [`Event`]s. [`trace`] runs signal vectors for the operator tool.

mod evaluate;
mod expand;
mod parse;
mod predicate;
mod print;
mod trace;

pub use evaluate::{Event, Registration};
pub use expand::{Case, MAX_CASES, NormalForm};
pub use parse::{MAX_NESTING, Valexp};
pub use predicate::{Predicate, PredicateSet, PredicateSetIter};
pub use print::PRINTED_FORM_MAX;
pub use trace::trace;
