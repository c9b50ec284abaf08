//! The parser of validation expressions: postfix text read from its last character backwards
//! into an expression tree, and direct boolean evaluation of that tree.
//!
//! Grammar (the TLS Pool version 2 protocol):
//!
//! ```text
//! expr     ::= operand | expr "~" | expr expr "&" | expr expr "|" | expr expr expr "?"
//! operand  ::= "0" | "1" | predicate
//! ```
//!
//! The whole string must be one expression; no whitespace is allowed.

use std::fmt;
use std::str::FromStr;

use crate::ValexpError;
use crate::valexp::{Predicate, PredicateSet};

/// Maximum number of operators nested inside one another.
///
/// The expansion recurses once per nesting level, so this bounds its stack use. An expression
/// that names each of the 30 predicates once needs 29 binary operators, which leaves room for
/// negations and repeated predicates.
pub const MAX_NESTING: usize = 128;

/// A parsed validation expression.
///
/// `eti?` reads "if `i` then `t` else `e`": the top of the stack (written last) is the
/// condition, the second the then-branch, the third the else-branch.
#[derive(Clone, PartialEq, Eq)]
pub struct Valexp {
    text: String,
    root: Node,
}

/// One operand or operator of the tree, with its position in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) position: usize,
    pub(crate) kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Constant(bool),
    Predicate(Predicate),
    Not(Box<Node>),
    /// `left right &`.
    And(Box<Node>, Box<Node>),
    /// `left right |`.
    Or(Box<Node>, Box<Node>),
    IfThenElse {
        condition: Box<Node>,
        then: Box<Node>,
        otherwise: Box<Node>,
    },
}

/// One character of the text, classified.
enum Token {
    Operand(NodeKind),
    Operator { operator: char, state: Pending },
}

/// An operator still waiting for operands while the parser reads backwards, with the operands
/// read so far (the operand written last is read first).
enum Pending {
    Not,
    Binary { and: bool },
    BinaryWithRight { and: bool, right: Node },
    IfThenElse,
    IfWithCondition { condition: Node },
    IfWithThen { condition: Node, then: Node },
}

/// The result of giving a pending operator one more operand.
enum Attached {
    Complete(NodeKind),
    Waiting(Pending),
}

impl Valexp {
    /// Parses `text`, reading from its last character backwards.
    ///
    /// # Errors
    ///
    /// [`ValexpError::Empty`] for an empty text, [`ValexpError::InvalidCharacter`] for the
    /// first character outside the grammar, [`ValexpError::MissingOperand`] for an operator
    /// that runs out of operands, [`ValexpError::TrailingInput`] when characters remain before
    /// the expression that ends the text, and [`ValexpError::TooDeep`] past [`MAX_NESTING`].
    pub fn parse(text: &str) -> Result<Self, ValexpError> {
        let mut tokens = Vec::with_capacity(text.len());
        for (position, character) in text.chars().enumerate() {
            let Some(token) = Token::classify(character) else {
                return Err(ValexpError::InvalidCharacter {
                    position,
                    character,
                });
            };
            tokens.push((character, token));
        }
        if tokens.is_empty() {
            return Err(ValexpError::Empty);
        }

        let root = parse_backwards(&mut tokens)?;
        if let Some((character, _)) = tokens.last() {
            return Err(ValexpError::TrailingInput {
                position: tokens.len() - 1,
                character: *character,
            });
        }
        Ok(Self {
            text: text.to_owned(),
            root,
        })
    }

    /// Returns the expression text as parsed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluates the expression directly, with the predicates in `true_predicates` true and
    /// all others false.
    pub fn evaluate(&self, true_predicates: PredicateSet) -> bool {
        evaluate_node(&self.root, true_predicates)
    }

    pub(crate) fn root(&self) -> &Node {
        &self.root
    }
}

impl FromStr for Valexp {
    type Err = ValexpError;

    fn from_str(text: &str) -> Result<Self, ValexpError> {
        Self::parse(text)
    }
}

/// Writes the expression text as parsed.
impl fmt::Display for Valexp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Valexp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Valexp({:?})", self.text)
    }
}

impl Token {
    /// Classifies one character, or returns `None` for a character outside the grammar.
    fn classify(character: char) -> Option<Self> {
        let state = match character {
            '0' => return Some(Self::Operand(NodeKind::Constant(false))),
            '1' => return Some(Self::Operand(NodeKind::Constant(true))),
            '~' => Pending::Not,
            '&' => Pending::Binary { and: true },
            '|' => Pending::Binary { and: false },
            '?' => Pending::IfThenElse,
            letter => {
                let predicate = Predicate::from_letter(letter)?;
                return Some(Self::Operand(NodeKind::Predicate(predicate)));
            }
        };
        Some(Self::Operator {
            operator: character,
            state,
        })
    }
}

impl Pending {
    /// Gives the operator its next operand in reading order.
    fn attach(self, operand: Node) -> Attached {
        let operand = Box::new(operand);
        match self {
            Self::Not => Attached::Complete(NodeKind::Not(operand)),
            Self::Binary { and } => Attached::Waiting(Self::BinaryWithRight {
                and,
                right: *operand,
            }),
            Self::BinaryWithRight { and: true, right } => {
                Attached::Complete(NodeKind::And(operand, Box::new(right)))
            }
            Self::BinaryWithRight { and: false, right } => {
                Attached::Complete(NodeKind::Or(operand, Box::new(right)))
            }
            Self::IfThenElse => Attached::Waiting(Self::IfWithCondition {
                condition: *operand,
            }),
            Self::IfWithCondition { condition } => Attached::Waiting(Self::IfWithThen {
                condition,
                then: *operand,
            }),
            Self::IfWithThen { condition, then } => Attached::Complete(NodeKind::IfThenElse {
                condition: Box::new(condition),
                then: Box::new(then),
                otherwise: operand,
            }),
        }
    }
}

/// Reads one expression off the end of `tokens`, without recursion, and leaves the tokens
/// before it in place.
fn parse_backwards(tokens: &mut Vec<(char, Token)>) -> Result<Node, ValexpError> {
    // Waiting operators with their position and character, innermost last.
    let mut pending: Vec<(usize, char, Pending)> = Vec::new();
    loop {
        let Some((_, token)) = tokens.pop() else {
            return Err(missing_operand(&pending));
        };
        let position = tokens.len();

        let kind = match token {
            Token::Operand(kind) => kind,
            Token::Operator { operator, state } => {
                if pending.len() == MAX_NESTING {
                    return Err(ValexpError::TooDeep {
                        position,
                        operator,
                        limit: MAX_NESTING,
                    });
                }
                pending.push((position, operator, state));
                continue;
            }
        };

        // An operand completes a subexpression, which may complete the operators above it.
        let mut completed = Node { position, kind };
        loop {
            let Some((operator_position, operator, state)) = pending.pop() else {
                return Ok(completed);
            };
            match state.attach(completed) {
                Attached::Complete(kind) => {
                    completed = Node {
                        position: operator_position,
                        kind,
                    };
                }
                Attached::Waiting(state) => {
                    pending.push((operator_position, operator, state));
                    break;
                }
            }
        }
    }
}

/// Returns the error for the innermost operator still waiting when the text runs out.
fn missing_operand(pending: &[(usize, char, Pending)]) -> ValexpError {
    match pending.last() {
        Some(&(position, operator, _)) => ValexpError::MissingOperand { position, operator },
        // Unreachable: the text is not empty, and an operand with no operator above it
        // completes the expression.
        None => ValexpError::Empty,
    }
}

fn evaluate_node(node: &Node, true_predicates: PredicateSet) -> bool {
    match &node.kind {
        NodeKind::Constant(value) => *value,
        NodeKind::Predicate(predicate) => true_predicates.contains(*predicate),
        NodeKind::Not(operand) => !evaluate_node(operand, true_predicates),
        NodeKind::And(left, right) => {
            evaluate_node(left, true_predicates) && evaluate_node(right, true_predicates)
        }
        NodeKind::Or(left, right) => {
            evaluate_node(left, true_predicates) || evaluate_node(right, true_predicates)
        }
        NodeKind::IfThenElse {
            condition,
            then,
            otherwise,
        } => {
            if evaluate_node(condition, true_predicates) {
                evaluate_node(then, true_predicates)
            } else {
                evaluate_node(otherwise, true_predicates)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(text: &str) -> ValexpError {
        match Valexp::parse(text) {
            Ok(parsed) => panic!("{text:?} parsed as {parsed:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn empty_text_is_rejected() {
        assert_eq!(parse_error(""), ValexpError::Empty);
    }

    #[test]
    fn invalid_character_names_first_position() {
        assert_eq!(
            parse_error("a d&"),
            ValexpError::InvalidCharacter {
                position: 1,
                character: ' '
            }
        );
        assert_eq!(
            parse_error("ab&x"),
            ValexpError::InvalidCharacter {
                position: 1,
                character: 'b'
            }
        );
        assert_eq!(
            parse_error("aé"),
            ValexpError::InvalidCharacter {
                position: 1,
                character: 'é'
            }
        );
        assert_eq!(
            parse_error("2"),
            ValexpError::InvalidCharacter {
                position: 0,
                character: '2'
            }
        );
    }

    #[test]
    fn operator_without_operands_is_rejected() {
        let cases = [
            ("&", 0, '&'),
            ("~", 0, '~'),
            ("a&", 1, '&'),
            ("a|", 1, '|'),
            ("ad?", 2, '?'),
            ("ad&?", 3, '?'),
            ("a~&", 2, '&'),
        ];
        for (text, position, operator) in cases {
            assert_eq!(
                parse_error(text),
                ValexpError::MissingOperand { position, operator },
                "{text:?}"
            );
        }
    }

    #[test]
    fn text_before_expression_is_rejected() {
        let cases = [
            ("ad", 0, 'a'),
            ("adc&", 0, 'a'),
            ("a&d", 1, '&'),
            ("10", 0, '1'),
            ("ad&T", 2, '&'),
        ];
        for (text, position, character) in cases {
            assert_eq!(
                parse_error(text),
                ValexpError::TrailingInput {
                    position,
                    character
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn nesting_limit_is_enforced() {
        let deepest = format!("a{}", "~".repeat(MAX_NESTING));
        assert!(Valexp::parse(&deepest).is_ok());

        let too_deep = format!("a{}", "~".repeat(MAX_NESTING + 1));
        assert_eq!(
            parse_error(&too_deep),
            ValexpError::TooDeep {
                position: 1,
                operator: '~',
                limit: MAX_NESTING
            }
        );
    }

    #[test]
    fn parse_keeps_text() {
        let parsed: Valexp = match "ETad&?".parse() {
            Ok(parsed) => parsed,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(parsed.as_str(), "ETad&?");
        assert_eq!(parsed.to_string(), "ETad&?");
    }

    #[test]
    fn evaluate_reads_stack_order() {
        let set = |letters: &str| -> PredicateSet {
            letters.chars().filter_map(Predicate::from_letter).collect()
        };
        let eval = |text: &str, letters: &str| match Valexp::parse(text) {
            Ok(parsed) => parsed.evaluate(set(letters)),
            Err(error) => panic!("{text:?}: {error}"),
        };

        // `e t i ?` is "if i then t else e".
        assert!(eval("ETd?", "dT"));
        assert!(!eval("ETd?", "dE"));
        assert!(eval("ETd?", "E"));
        assert!(!eval("ETd?", "T"));
        assert!(eval("ad&", "ad"));
        assert!(!eval("ad&", "a"));
        assert!(eval("ad|", "d"));
        assert!(!eval("ad|", ""));
        assert!(eval("a~", ""));
        assert!(eval("1", ""));
        assert!(!eval("0", "ad"));
    }
}
