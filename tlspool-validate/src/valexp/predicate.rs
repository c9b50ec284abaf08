//! The 30 predicate letters of validation expressions, their bit numbers, and a set type over
//! them that iterates in bit order.
//!
//! Bit numbers follow the string `LlIiFfAaTtDdRrEeOoGgPpUuSsCcQq` (L=0 … q=29). Every ordering
//! in the engine (printed letters, `start` and `stop` events) is bit order.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign, Sub, SubAssign};

/// Predicate letters in bit order: the letter at index `n` has bit number `n`.
const LETTERS: &[u8; Predicate::COUNT] = b"LlIiFfAaTtDdRrEeOoGgPpUuSsCcQq";

/// One predicate of a validation expression, such as `T` (chain to a trusted anchor) or `d`
/// (DANE, authenticated denial accepted).
///
/// A predicate is identified by its letter; its bit number orders predicates everywhere.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Predicate(u8);

impl Predicate {
    /// Number of predicates.
    pub const COUNT: usize = 30;

    /// Returns the predicate written as `letter`, or `None` for any other character.
    pub fn from_letter(letter: char) -> Option<Self> {
        let byte = u8::try_from(letter).ok()?;
        let bit = LETTERS.iter().position(|&candidate| candidate == byte)?;
        Self::from_bit(bit)
    }

    /// Returns the predicate with bit number `bit`, or `None` when `bit` is 30 or more.
    pub fn from_bit(bit: usize) -> Option<Self> {
        if bit < Self::COUNT {
            u8::try_from(bit).ok().map(Self)
        } else {
            None
        }
    }

    /// Iterates over all 30 predicates in bit order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..Self::COUNT).filter_map(Self::from_bit)
    }

    /// Returns the letter of this predicate.
    pub fn letter(self) -> char {
        char::from(LETTERS[usize::from(self.0)])
    }

    /// Returns the bit number of this predicate (0 to 29).
    pub fn bit(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

impl fmt::Debug for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Predicate({})", self.letter())
    }
}

/// A set of predicates, stored as a bit mask and iterated in bit order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PredicateSet(u32);

impl PredicateSet {
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// Returns the set that contains only `predicate`.
    pub fn single(predicate: Predicate) -> Self {
        Self(1 << predicate.0)
    }

    /// Returns whether the set contains no predicate.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Returns the number of predicates in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Returns whether `predicate` is in the set.
    pub fn contains(self, predicate: Predicate) -> bool {
        self.0 & Self::single(predicate).0 != 0
    }

    /// Adds `predicate` to the set.
    pub fn insert(&mut self, predicate: Predicate) {
        self.0 |= Self::single(predicate).0;
    }

    /// Removes `predicate` from the set.
    pub fn remove(&mut self, predicate: Predicate) {
        self.0 &= !Self::single(predicate).0;
    }

    /// Iterates over the predicates of the set in bit order.
    pub fn iter(self) -> PredicateSetIter {
        PredicateSetIter(self.0)
    }
}

impl BitOr for PredicateSet {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl BitOrAssign for PredicateSet {
    fn bitor_assign(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

impl BitAnd for PredicateSet {
    type Output = Self;

    fn bitand(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
}

/// Set difference: the predicates of `self` that are not in `other`.
impl Sub for PredicateSet {
    type Output = Self;

    fn sub(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl SubAssign for PredicateSet {
    fn sub_assign(&mut self, other: Self) {
        self.0 &= !other.0;
    }
}

impl FromIterator<Predicate> for PredicateSet {
    fn from_iter<I: IntoIterator<Item = Predicate>>(predicates: I) -> Self {
        let mut set = Self::EMPTY;
        for predicate in predicates {
            set.insert(predicate);
        }
        set
    }
}

impl IntoIterator for PredicateSet {
    type Item = Predicate;
    type IntoIter = PredicateSetIter;

    fn into_iter(self) -> PredicateSetIter {
        self.iter()
    }
}

/// Writes the letters in bit order, with nothing for the empty set.
impl fmt::Display for PredicateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.iter()
            .try_for_each(|predicate| write!(f, "{predicate}"))
    }
}

impl fmt::Debug for PredicateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PredicateSet({self})")
    }
}

/// Iterator over the predicates of a [`PredicateSet`] in bit order.
#[derive(Clone, Debug)]
pub struct PredicateSetIter(u32);

impl Iterator for PredicateSetIter {
    type Item = Predicate;

    fn next(&mut self) -> Option<Predicate> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Predicate::from_bit(bit as usize)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.0.count_ones() as usize;
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for PredicateSetIter {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_numbers_follow_letter_string() {
        let expected = [
            ('L', 0),
            ('l', 1),
            ('I', 2),
            ('i', 3),
            ('F', 4),
            ('f', 5),
            ('A', 6),
            ('a', 7),
            ('T', 8),
            ('t', 9),
            ('D', 10),
            ('d', 11),
            ('R', 12),
            ('r', 13),
            ('E', 14),
            ('e', 15),
            ('O', 16),
            ('o', 17),
            ('G', 18),
            ('g', 19),
            ('P', 20),
            ('p', 21),
            ('U', 22),
            ('u', 23),
            ('S', 24),
            ('s', 25),
            ('C', 26),
            ('c', 27),
            ('Q', 28),
            ('q', 29),
        ];
        for (letter, bit) in expected {
            let predicate = Predicate::from_letter(letter);
            assert_eq!(predicate.map(Predicate::bit), Some(bit), "letter {letter}");
            assert_eq!(
                Predicate::from_bit(bit).map(Predicate::letter),
                Some(letter)
            );
        }
        assert_eq!(Predicate::all().count(), Predicate::COUNT);
    }

    #[test]
    fn non_letters_are_not_predicates() {
        for character in ['0', '1', '~', '&', '|', '?', 'b', 'B', 'x', ' ', 'é', '\0'] {
            assert_eq!(Predicate::from_letter(character), None, "{character:?}");
        }
        assert_eq!(Predicate::from_bit(30), None);
    }

    #[test]
    fn set_iterates_in_bit_order() {
        let set: PredicateSet = "qcTaL".chars().filter_map(Predicate::from_letter).collect();
        let letters: String = set.iter().map(Predicate::letter).collect();
        assert_eq!(letters, "LaTcq");
        assert_eq!(set.to_string(), "LaTcq");
        assert_eq!(set.len(), 5);
        assert_eq!(set.iter().len(), 5);
    }

    #[test]
    fn set_operations() {
        let a = Predicate::from_letter('a').map(PredicateSet::single);
        let d = Predicate::from_letter('d').map(PredicateSet::single);
        let (Some(a), Some(d)) = (a, d) else {
            panic!("a and d are predicate letters");
        };
        let both = a | d;
        assert_eq!(both.len(), 2);
        assert_eq!(both & a, a);
        assert_eq!(both - a, d);
        assert!((a & d).is_empty());
        let mut set = both;
        set -= d;
        assert_eq!(set, a);
        assert!(PredicateSet::EMPTY.is_empty());
        assert_eq!(PredicateSet::EMPTY.to_string(), "");
    }
}
