//! The error type of validation expressions: syntax errors with the position and character
//! that broke the grammar, and the limits that bound parsing and expansion.

/// An error in parsing, expanding or tracing a validation expression.
///
/// Positions count characters from 0 at the start of the expression text. The daemon treats
/// any of these errors as a false expression and fails the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValexpError {
    /// The expression text is empty.
    #[error("validation expression is empty; expected a postfix expression such as IT&")]
    Empty,

    /// A character that is neither a predicate letter, `0`, `1`, nor one of `~ & | ?`.
    #[error(
        "invalid character {character:?} at position {position} of validation expression; \
         expected a predicate letter, 0, 1 or one of ~ & | ?"
    )]
    InvalidCharacter {
        /// Position of the character.
        position: usize,
        /// The character.
        character: char,
    },

    /// An operator that has fewer operands before it than it takes.
    #[error(
        "operator {operator:?} at position {position} of validation expression lacks an operand"
    )]
    MissingOperand {
        /// Position of the operator.
        position: usize,
        /// The operator character.
        operator: char,
    },

    /// Text before the one expression that ends the string: the string contains more than one
    /// expression.
    #[error(
        "character {character:?} at position {position} is not part of the validation \
         expression that ends the text; join separate expressions with & or |"
    )]
    TrailingInput {
        /// Position of the last character that is not part of the expression.
        position: usize,
        /// That character.
        character: char,
    },

    /// Operators nested deeper than [`MAX_NESTING`](crate::valexp::MAX_NESTING).
    #[error(
        "operator {operator:?} at position {position} nests deeper than the limit of {limit} \
         operators"
    )]
    TooDeep {
        /// Position of the operator that exceeded the limit.
        position: usize,
        /// The operator character.
        operator: char,
        /// The nesting limit.
        limit: usize,
    },

    /// An operator whose expansion into the normal form exceeds
    /// [`MAX_CASES`](crate::valexp::MAX_CASES) cases.
    #[error(
        "operator {operator:?} at position {position} expands to {cases} cases, more than the \
         limit of {limit}"
    )]
    TooManyCases {
        /// Position of the operator.
        position: usize,
        /// The operator character.
        operator: char,
        /// Number of cases the operator would produce.
        cases: u64,
        /// The case limit.
        limit: usize,
    },

    /// The AND of several expressions exceeds [`MAX_CASES`](crate::valexp::MAX_CASES) cases.
    #[error(
        "the AND of {sources} validation expressions expands to {cases} cases, more than the \
         limit of {limit}"
    )]
    TooManyCombinedCases {
        /// Number of expressions combined so far, including the one that exceeded the limit.
        sources: usize,
        /// Number of cases the combination would produce.
        cases: u64,
        /// The case limit.
        limit: usize,
    },

    /// A character in a trace vector that is neither a predicate letter nor `~`.
    #[error(
        "invalid character {character:?} at position {position} of signal vector {vector}; \
         expected a predicate letter or ~"
    )]
    InvalidVectorCharacter {
        /// Index of the vector in the list given to the trace, from 0.
        vector: usize,
        /// Position of the character in that vector.
        position: usize,
        /// The character.
        character: char,
    },
}
