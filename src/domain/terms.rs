//! Blocked terms (the contract's section 9): a stream's list and the instance-wide file's,
//! and the one match that decides what happens to a comment.
//!
//! A term matches as a substring of the comment's text once both are **folded**: invisible
//! characters (Unicode's `Default_Ignorable_Code_Point`: zero-width spaces and joiners, the
//! byte-order mark, …) removed, NFKC applied (full-width `ＢＡＤ` is `BAD`, the ligature `ﬁ`
//! is `fi`), case folded (`BaD` and `bad`, `ß` and `ss`), NFKC again (folding can undo it).
//! The terms of one stream are matched in one pass (Aho–Corasick), once per comment, never
//! per viewer. If several match, the strictest action wins: refuse, then hold, then shadow.

use std::borrow::Cow;
use std::fmt;

use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};

/// Most terms on one stream's list (the file's are besides these).
pub const MAX_TERMS: usize = 1_000;
/// Longest term, in characters.
pub const MAX_TERM_CHARS: usize = 64;

/// What a matching term does to a comment.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TermAction {
    /// Published as a shadow-banned user's comment: its author and moderators see it.
    Shadow,
    /// Not published: held for a moderator to approve or reject.
    Hold,
    /// Refused with `blocked`.
    Refuse,
}

impl TermAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "refuse" => Some(Self::Refuse),
            "hold" => Some(Self::Hold),
            "shadow" => Some(Self::Shadow),
            _ => None,
        }
    }
}

/// A term as a moderator wrote it: 1 to [`MAX_TERM_CHARS`] characters, no control
/// characters, and something left once folded.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Term(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "a term is 1 to {MAX_TERM_CHARS} characters without control characters, and not only invisible ones"
)]
pub struct ParseTermError;

impl Term {
    pub fn parse(s: &str) -> Result<Self, ParseTermError> {
        let chars = s.chars().count();
        let valid = (1..=MAX_TERM_CHARS).contains(&chars)
            && !s.chars().any(char::is_control)
            && !fold(s).trim().is_empty();
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseTermError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

serde_via_parse!(Term);

/// One entry of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockedTerm {
    pub term: Term,
    pub action: TermAction,
}

/// A stream's list: at most [`MAX_TERMS`] entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<BlockedTerm>")]
pub struct BlockedTerms(Vec<BlockedTerm>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("at most {MAX_TERMS} terms")]
pub struct TooManyTerms;

impl BlockedTerms {
    pub fn new(terms: Vec<BlockedTerm>) -> Result<Self, TooManyTerms> {
        if terms.len() > MAX_TERMS {
            return Err(TooManyTerms);
        }
        Ok(Self(terms))
    }

    pub fn as_slice(&self) -> &[BlockedTerm] {
        &self.0
    }
}

impl TryFrom<Vec<BlockedTerm>> for BlockedTerms {
    type Error = TooManyTerms;

    fn try_from(terms: Vec<BlockedTerm>) -> Result<Self, TooManyTerms> {
        Self::new(terms)
    }
}

/// The terms of a stream and of the file, ready to match comments against.
pub struct TermMatcher {
    automaton: Option<AhoCorasick>,
    /// The action of each pattern, by pattern index.
    actions: Vec<TermAction>,
}

impl TermMatcher {
    pub fn new<'a>(terms: impl IntoIterator<Item = &'a BlockedTerm>) -> Self {
        let (patterns, actions): (Vec<String>, Vec<TermAction>) = terms
            .into_iter()
            .map(|t| (fold(t.term.as_str()).into_owned(), t.action))
            .unzip();
        let automaton = (!patterns.is_empty())
            .then(|| AhoCorasick::new(&patterns).expect("terms of at most 64 characters build"));
        Self { automaton, actions }
    }

    /// The strictest action among the terms `text` contains, if any.
    pub fn check(&self, text: &str) -> Option<TermAction> {
        let automaton = self.automaton.as_ref()?;
        let folded = fold(text);
        automaton
            .find_overlapping_iter(folded.as_ref())
            .map(|m| self.actions[m.pattern().as_usize()])
            .max()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

impl fmt::Debug for TermMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TermMatcher({} terms)", self.actions.len())
    }
}

/// Text as terms are matched against it: default-ignorable code points removed, NFKC, case
/// folded, NFKC again.
pub fn fold(text: &str) -> Cow<'_, str> {
    use icu_casemap::CaseMapper;
    use icu_normalizer::ComposingNormalizerBorrowed;
    use icu_properties::{CodePointSetData, props::DefaultIgnorableCodePoint};
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let visible: Cow<'_, str> = if text.chars().any(|c| ignorable.contains(c)) {
        Cow::Owned(text.chars().filter(|&c| !ignorable.contains(c)).collect())
    } else {
        Cow::Borrowed(text)
    };
    let composed = nfkc.normalize(&visible).into_owned();
    let folded = CaseMapper::new().fold_string(&composed).into_owned();
    Cow::Owned(nfkc.normalize(&folded).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(term: &str, action: TermAction) -> BlockedTerm {
        BlockedTerm {
            term: Term::parse(term).unwrap(),
            action,
        }
    }

    #[test]
    fn confusables_fold_to_the_same_text() {
        for text in ["ＢＡＤ", "b\u{200b}ad", "BaD", "bad", "B\u{feff}A\u{2060}D"] {
            assert_eq!(fold(text), "bad", "{text:?}");
        }
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("ﬁne"), "fine");
    }

    #[test]
    fn a_term_matches_as_a_substring_of_the_folded_text() {
        let matcher = TermMatcher::new(&[entry("bad", TermAction::Refuse)]);
        for text in ["so ＢＡＤ!", "b\u{200b}ad", "BaDly", "x bad x"] {
            assert_eq!(matcher.check(text), Some(TermAction::Refuse), "{text:?}");
        }
        assert_eq!(matcher.check("b a d"), None);
        assert_eq!(matcher.check("good"), None);
    }

    #[test]
    fn the_strictest_matching_action_wins() {
        let matcher = TermMatcher::new(&[
            entry("spoiler", TermAction::Shadow),
            entry("link", TermAction::Hold),
            entry("slur", TermAction::Refuse),
        ]);
        assert_eq!(matcher.check("a spoiler"), Some(TermAction::Shadow));
        assert_eq!(matcher.check("spoiler link"), Some(TermAction::Hold));
        assert_eq!(matcher.check("link slur spoiler"), Some(TermAction::Refuse));
        assert!(TermMatcher::new(&[]).check("anything").is_none());
    }

    #[test]
    fn terms_are_bounded() {
        assert!(Term::parse(&"x".repeat(64)).is_ok());
        for bad in ["", "\u{200b}", "a\nb", &"x".repeat(65), "   "] {
            assert_eq!(Term::parse(bad), Err(ParseTermError), "{bad:?}");
        }
        let many = vec![entry("a", TermAction::Hold); MAX_TERMS + 1];
        assert_eq!(BlockedTerms::new(many), Err(TooManyTerms));
    }
}
