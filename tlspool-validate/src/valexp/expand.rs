//! The normal form of validation expressions: the expansion `X(e, inv)` into an ordered
//! disjunction of cases, and the AND of expressions from several sources.
//!
//! The case order is part of the contract because the printed form and the evaluation events
//! depend on it:
//!
//! - `1` (or `0` under inversion) is one empty case; `0` (or `1` under inversion) is no case.
//! - A predicate is one case with the predicate positive (negative under inversion).
//! - `e~` is `X(e, !inv)`.
//! - OR is a sum and AND a product, and under inversion they swap roles (De Morgan). The sum
//!   is `X(b) ++ X(a)`, with the right operand `b` (written last) first. The product loops over
//!   the cases of the left operand `a` outside and over those of `b` inside, and ORs the bit
//!   sets of each pair.
//! - `e t i ?` is `I+ × T ++ I- × E ++ T × E`, with `I+ = X(i, false)` and `I- = X(i, true)`
//!   (an outer `~` never reaches the condition), `T = X(t, inv)` and `E = X(e, inv)`. Each
//!   `×` is the product above with its left side as the outer loop. The last block is the
//!   redundant consensus term "t and e".
//!
//! No case is simplified or removed, so duplicates and contradictory cases stay.

use std::fmt;

use crate::ValexpError;
use crate::valexp::parse::{Node, NodeKind};
use crate::valexp::print::{printed_form, write_case};
use crate::valexp::{Predicate, PredicateSet, Valexp};

/// Maximum number of cases in a normal form, for each operator's expansion and for the AND
/// of several expressions.
///
/// Each predicate result walks every live case of a registration, and products multiply case
/// counts, so an unbounded expansion would let one expression take unbounded memory and time.
/// Expressions written for real handshakes expand to a few dozen cases.
pub const MAX_CASES: usize = 4096;

/// One case of a normal form: a conjunction of predicates that must be true (`positive`) and
/// predicates that must be false (`negative`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Case {
    positive: PredicateSet,
    negative: PredicateSet,
}

/// An expanded validation expression: an ordered disjunction of [`Case`]s.
///
/// `Display` writes the printed form of the TLS Pool version 2 protocol: the cases separated
/// by `" | "`, `0` for no case, cut to [`PRINTED_FORM_MAX`](crate::valexp::PRINTED_FORM_MAX)
/// characters.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct NormalForm {
    cases: Vec<Case>,
}

impl Case {
    /// The empty case, which is true.
    pub const TRUE: Self = Self {
        positive: PredicateSet::EMPTY,
        negative: PredicateSet::EMPTY,
    };

    /// Returns the case that requires `positive` true and `negative` false.
    pub fn new(positive: PredicateSet, negative: PredicateSet) -> Self {
        Self { positive, negative }
    }

    /// Returns the predicates that must be true.
    pub fn positive(&self) -> PredicateSet {
        self.positive
    }

    /// Returns the predicates that must be false.
    pub fn negative(&self) -> PredicateSet {
        self.negative
    }

    /// Evaluates the case with the predicates in `true_predicates` true and all others false.
    pub fn evaluate(&self, true_predicates: PredicateSet) -> bool {
        self.positive - true_predicates == PredicateSet::EMPTY
            && (self.negative & true_predicates).is_empty()
    }

    pub(crate) fn positive_mut(&mut self) -> &mut PredicateSet {
        &mut self.positive
    }

    pub(crate) fn negative_mut(&mut self) -> &mut PredicateSet {
        &mut self.negative
    }

    /// Returns the conjunction of both cases.
    fn and(self, other: Self) -> Self {
        Self {
            positive: self.positive | other.positive,
            negative: self.negative | other.negative,
        }
    }
}

/// Writes the case as in the printed form: positive letters, then `~` and the negative
/// letters, or `1` for the empty case.
impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_case(f, self)
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Case({self})")
    }
}

impl NormalForm {
    /// Parses `text` and expands it.
    ///
    /// # Errors
    ///
    /// The syntax errors of [`Valexp::parse`] and the limit error of [`Valexp::expand`].
    pub fn parse(text: &str) -> Result<Self, ValexpError> {
        Valexp::parse(text)?.expand()
    }

    /// Returns the normal form with one empty case, which is true.
    pub fn always() -> Self {
        Self {
            cases: vec![Case::TRUE],
        }
    }

    /// Returns the normal form with no case, which is false.
    pub fn never() -> Self {
        Self { cases: Vec::new() }
    }

    /// Combines the expressions of several sources (say the trust anchor's and the local
    /// identity's) with AND, in the order given.
    ///
    /// The result is the expansion of `s0 s1 & s2 & …`, so the earlier source is the outer
    /// loop. With no source at all the result is `when_empty`, the caller's default, which has
    /// to be given explicitly so that an empty list never accepts by accident.
    ///
    /// # Errors
    ///
    /// [`ValexpError::TooManyCombinedCases`] when a step exceeds [`MAX_CASES`].
    pub fn all_of(sources: &[Self], when_empty: &Self) -> Result<Self, ValexpError> {
        let Some((first, rest)) = sources.split_first() else {
            return Ok(when_empty.clone());
        };
        let mut combined = first.cases.clone();
        for (index, source) in rest.iter().enumerate() {
            let cases = product_count(&combined, &source.cases);
            if cases > MAX_CASES as u64 {
                return Err(ValexpError::TooManyCombinedCases {
                    sources: index + 2,
                    cases,
                    limit: MAX_CASES,
                });
            }
            combined = product(&combined, &source.cases);
        }
        Ok(Self { cases: combined })
    }

    /// Returns the cases in order.
    pub fn cases(&self) -> &[Case] {
        &self.cases
    }

    /// Evaluates the disjunction with the predicates in `true_predicates` true and all others
    /// false.
    pub fn evaluate(&self, true_predicates: PredicateSet) -> bool {
        self.cases.iter().any(|case| case.evaluate(true_predicates))
    }

    /// Returns the predicates that occur in any case.
    pub fn predicates(&self) -> PredicateSet {
        self.cases.iter().fold(PredicateSet::EMPTY, |all, case| {
            all | case.positive | case.negative
        })
    }

    pub(crate) fn into_cases(self) -> Vec<Case> {
        self.cases
    }
}

impl fmt::Display for NormalForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&printed_form(&self.cases))
    }
}

impl fmt::Debug for NormalForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NormalForm({self})")
    }
}

impl Valexp {
    /// Expands the expression into its normal form.
    ///
    /// # Errors
    ///
    /// [`ValexpError::TooManyCases`] when an operator's expansion exceeds [`MAX_CASES`], even
    /// if an enclosing operator would shrink it again (as an AND with `0` does).
    pub fn expand(&self) -> Result<NormalForm, ValexpError> {
        let cases = expand_node(self.root(), false)?;
        Ok(NormalForm { cases })
    }
}

/// Computes `X(node, inverted)`.
fn expand_node(node: &Node, inverted: bool) -> Result<Vec<Case>, ValexpError> {
    match &node.kind {
        NodeKind::Constant(value) => Ok(if *value != inverted {
            vec![Case::TRUE]
        } else {
            Vec::new()
        }),
        NodeKind::Predicate(predicate) => Ok(vec![predicate_case(*predicate, inverted)]),
        NodeKind::Not(operand) => expand_node(operand, !inverted),
        NodeKind::And(left, right) | NodeKind::Or(left, right) => {
            let left = expand_node(left, inverted)?;
            let right = expand_node(right, inverted)?;
            join(node, left, right, is_sum(node, inverted))
        }
        NodeKind::IfThenElse {
            condition,
            then,
            otherwise,
        } => {
            let (condition_true, condition_false) = expand_both(condition)?;
            let then = expand_node(then, inverted)?;
            let otherwise = expand_node(otherwise, inverted)?;
            if_then_else(node, &condition_true, &condition_false, &then, &otherwise)
        }
    }
}

/// Computes `(X(node, false), X(node, true))` for the condition of an if-then-else, which
/// needs both.
///
/// Each node below is expanded once per polarity, so conditions nested in conditions cost
/// linear time, where calling [`expand_node`] twice per level would cost exponential time.
fn expand_both(node: &Node) -> Result<(Vec<Case>, Vec<Case>), ValexpError> {
    match &node.kind {
        NodeKind::Constant(_) | NodeKind::Predicate(_) => {
            Ok((expand_node(node, false)?, expand_node(node, true)?))
        }
        NodeKind::Not(operand) => {
            let (plain, inverted) = expand_both(operand)?;
            Ok((inverted, plain))
        }
        NodeKind::And(left, right) | NodeKind::Or(left, right) => {
            let (left_plain, left_inverted) = expand_both(left)?;
            let (right_plain, right_inverted) = expand_both(right)?;
            Ok((
                join(node, left_plain, right_plain, is_sum(node, false))?,
                join(node, left_inverted, right_inverted, is_sum(node, true))?,
            ))
        }
        NodeKind::IfThenElse {
            condition,
            then,
            otherwise,
        } => {
            let (condition_true, condition_false) = expand_both(condition)?;
            let (then_plain, then_inverted) = expand_both(then)?;
            let (otherwise_plain, otherwise_inverted) = expand_both(otherwise)?;
            Ok((
                if_then_else(
                    node,
                    &condition_true,
                    &condition_false,
                    &then_plain,
                    &otherwise_plain,
                )?,
                if_then_else(
                    node,
                    &condition_true,
                    &condition_false,
                    &then_inverted,
                    &otherwise_inverted,
                )?,
            ))
        }
    }
}

/// Returns whether the binary operator `node` acts as a sum: OR does, and under inversion AND
/// does instead (De Morgan).
fn is_sum(node: &Node, inverted: bool) -> bool {
    matches!(node.kind, NodeKind::Or(..)) != inverted
}

/// Joins the expanded operands of a binary operator as the sum `right ++ left` or as the
/// product with `left` as the outer loop.
fn join(
    node: &Node,
    left: Vec<Case>,
    right: Vec<Case>,
    is_sum: bool,
) -> Result<Vec<Case>, ValexpError> {
    let operator = if matches!(node.kind, NodeKind::And(..)) {
        '&'
    } else {
        '|'
    };
    if is_sum {
        check_case_count(node, operator, left.len() as u64 + right.len() as u64)?;
        let mut sum = right;
        sum.extend(left);
        Ok(sum)
    } else {
        check_case_count(node, operator, product_count(&left, &right))?;
        Ok(product(&left, &right))
    }
}

/// Returns `I+ × T ++ I- × E ++ T × E`.
fn if_then_else(
    node: &Node,
    condition_true: &[Case],
    condition_false: &[Case],
    then: &[Case],
    otherwise: &[Case],
) -> Result<Vec<Case>, ValexpError> {
    let cases = product_count(condition_true, then)
        + product_count(condition_false, otherwise)
        + product_count(then, otherwise);
    check_case_count(node, '?', cases)?;

    let mut result = product(condition_true, then);
    result.extend(product(condition_false, otherwise));
    result.extend(product(then, otherwise));
    Ok(result)
}

fn predicate_case(predicate: Predicate, inverted: bool) -> Case {
    let only = PredicateSet::single(predicate);
    if inverted {
        Case::new(PredicateSet::EMPTY, only)
    } else {
        Case::new(only, PredicateSet::EMPTY)
    }
}

/// Returns every `inner ∪ outer` pair, with `outer` as the outer loop.
fn product(outer: &[Case], inner: &[Case]) -> Vec<Case> {
    let mut result = Vec::with_capacity(outer.len() * inner.len());
    for outer_case in outer {
        for inner_case in inner {
            result.push(inner_case.and(*outer_case));
        }
    }
    result
}

fn product_count(outer: &[Case], inner: &[Case]) -> u64 {
    outer.len() as u64 * inner.len() as u64
}

fn check_case_count(node: &Node, operator: char, cases: u64) -> Result<(), ValexpError> {
    if cases > MAX_CASES as u64 {
        return Err(ValexpError::TooManyCases {
            position: node.position,
            operator,
            cases,
            limit: MAX_CASES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(text: &str) -> String {
        match NormalForm::parse(text) {
            Ok(form) => form.to_string(),
            Err(error) => panic!("{text:?}: {error}"),
        }
    }

    fn form(text: &str) -> NormalForm {
        match NormalForm::parse(text) {
            Ok(form) => form,
            Err(error) => panic!("{text:?}: {error}"),
        }
    }

    #[test]
    fn protocol_examples_expand_in_order() {
        assert_eq!(printed("ac|d&"), "dc | ad");
        assert_eq!(printed("PF|FA|&"), "FA | F | AP | FP");
        assert_eq!(printed("ac&d|~"), "~dc | ~ad");
        assert_eq!(printed("ETad&?"), "aTd | E~d | E~a | TE");
        assert_eq!(printed("e1i?"), "i | e~i | e");
    }

    #[test]
    fn constants_and_predicates() {
        assert_eq!(printed("1"), "1");
        assert_eq!(printed("0"), "0");
        assert_eq!(printed("1~"), "0");
        assert_eq!(printed("0~"), "1");
        assert_eq!(printed("0~~"), "0");
        assert_eq!(printed("a"), "a");
        assert_eq!(printed("a~"), "~a");
        assert_eq!(printed("a~~"), "a");
        assert_eq!(form("1").cases(), [Case::TRUE]);
        assert!(form("0").cases().is_empty());
    }

    #[test]
    fn sum_puts_right_operand_first() {
        assert_eq!(printed("ad|"), "d | a");
        assert_eq!(printed("da|"), "a | d");
        assert_eq!(printed("ad|T|"), "T | d | a");
        assert_eq!(printed("adT||"), "T | d | a");
        assert_eq!(printed("a0|"), "a");
        assert_eq!(printed("a1|"), "1 | a");
    }

    #[test]
    fn product_loops_over_left_operand_outside() {
        assert_eq!(printed("ad&"), "ad");
        assert_eq!(printed("ad|Tc|&"), "dc | Td | ac | aT");
        assert_eq!(printed("a1&"), "a");
        assert_eq!(printed("a0&"), "0");
        // A predicate required both ways stays as a contradictory case.
        assert_eq!(printed("aa~&"), "a~a");
    }

    #[test]
    fn nested_products_of_multi_case_operands() {
        let expected = "dEc | Fdc | TdE | FTd | aEc | Fac | aTE | FaT";
        assert_eq!(printed("ad|Tc|&FE|&"), expected);
        assert_eq!(printed("ad|Tc|FE|&&"), expected);
        assert_eq!(form("ad|Tc|&FE|&").cases().len(), 8);

        // Sixteen cases from four two-case sums.
        let sixteen = form("ad|Tc|&FE|&Ll|&");
        assert_eq!(sixteen.cases().len(), 16);
        assert_eq!(sixteen.cases()[0].to_string(), "ldEc");
        assert_eq!(sixteen.cases()[1].to_string(), "LdEc");
        assert_eq!(sixteen.cases()[15].to_string(), "LFaT");
    }

    #[test]
    fn inversion_applies_de_morgan() {
        assert_eq!(printed("ad&~"), "~d | ~a");
        assert_eq!(printed("ad|~"), "~ad");
        assert_eq!(printed("ad~&~"), "d | ~a");
        assert_eq!(printed("ad|Tc|&~"), "~Tc | ~ad");
        assert_eq!(printed("ad&Tc&|~"), "~dc | ~Td | ~ac | ~aT");
    }

    #[test]
    fn if_then_else_has_three_blocks() {
        // if d then a else c
        assert_eq!(printed("cad?"), "ad | c~d | ac");
        // An outer inversion reaches the branches but not the condition.
        assert_eq!(printed("cad?~"), "d~a | ~dc | ~ac");
        assert_eq!(printed("cad~?"), "a~d | dc | ac");
    }

    #[test]
    fn if_then_else_with_multi_case_branches() {
        assert_eq!(
            printed("ad|Tc|F?"),
            "Fc | FT | d~F | a~F | dc | ac | Td | aT"
        );
        assert_eq!(printed("EaFd|?"), "ad | Fa | E~Fd | aE");
        // Under inversion both branches become single products.
        assert_eq!(printed("ad|Tc|F?~"), "F~Tc | ~Fad | ~aTdc");
        assert_eq!(printed("c0d?"), "c~d");
        assert_eq!(printed("0ad?"), "ad");
    }

    #[test]
    fn nested_conditions_expand_quickly() {
        // Each condition is itself an if-then-else, as deep as the nesting limit allows.
        let depth = crate::valexp::MAX_NESTING;
        let text = format!("{}a{}", "00".repeat(depth), "?".repeat(depth));
        assert_eq!(printed(&text), "0");

        // "if c then 0 else 1" is NOT c, applied an even number of times.
        let text = format!("{}a{}", "10".repeat(depth), "?".repeat(depth));
        assert_eq!(printed(&text), "a");
    }

    #[test]
    fn case_limit_is_enforced() {
        // Each `ad|` doubles the cases: 2^12 fits the limit, 2^13 does not.
        let at_limit = format!("ad|{}", "ad|&".repeat(11));
        assert_eq!(form(&at_limit).cases().len(), MAX_CASES);

        let over_limit = format!("ad|{}", "ad|&".repeat(12));
        assert_eq!(
            NormalForm::parse(&over_limit),
            Err(ValexpError::TooManyCases {
                position: over_limit.len() - 1,
                operator: '&',
                cases: 8192,
                limit: MAX_CASES,
            })
        );
    }

    #[test]
    fn all_of_equals_and_of_sources() {
        let sources = [form("ad|"), form("Tc|"), form("FE|")];
        let combined = NormalForm::all_of(&sources, &NormalForm::never());
        assert_eq!(combined, Ok(form("ad|Tc|&FE|&")));

        let single = NormalForm::all_of(&sources[..1], &NormalForm::never());
        assert_eq!(single, Ok(form("ad|")));

        let with_false = NormalForm::all_of(&[form("ad|"), form("0")], &NormalForm::always());
        assert_eq!(with_false, Ok(NormalForm::never()));
    }

    #[test]
    fn all_of_nothing_is_callers_default() {
        assert_eq!(
            NormalForm::all_of(&[], &NormalForm::never()),
            Ok(NormalForm::never())
        );
        assert_eq!(NormalForm::all_of(&[], &form("Td|")), Ok(form("Td|")));
    }

    #[test]
    fn all_of_enforces_case_limit() {
        let large = form(&format!("ad|{}", "ad|&".repeat(10)));
        assert_eq!(large.cases().len(), 2048);
        let result = NormalForm::all_of(
            &[large.clone(), form("Tc|"), form("FE|")],
            &NormalForm::never(),
        );
        assert_eq!(
            result,
            Err(ValexpError::TooManyCombinedCases {
                sources: 3,
                cases: 8192,
                limit: MAX_CASES,
            })
        );
    }

    #[test]
    fn predicates_lists_every_case() {
        let letters: String = form("ETad&?")
            .predicates()
            .iter()
            .map(Predicate::letter)
            .collect();
        assert_eq!(letters, "aTdE");
    }
}
