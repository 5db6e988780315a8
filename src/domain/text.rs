use std::fmt;

/// Comment text that passed the rules of the contract (`docs/protocol.md`, section 2): not
/// empty, not only whitespace, no control characters, at most `max_chars` Unicode scalar
/// values. Characters that render nothing (zero-width spaces and joiners, the byte-order
/// mark, variation selectors: Unicode's `Default_Ignorable_Code_Point`) count as whitespace
/// for "blank": a comment of only those would show as an empty line.
#[derive(Clone, PartialEq, Eq)]
pub struct CommentText(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TextError {
    #[error("comment text is empty or only whitespace")]
    Blank,
    #[error("comment text contains control characters")]
    ControlCharacters,
    #[error("comment text is longer than {max} characters")]
    TooLong { max: usize },
}

impl CommentText {
    pub fn parse(text: String, max_chars: usize) -> Result<Self, TextError> {
        if text.chars().all(renders_nothing) {
            return Err(TextError::Blank);
        }
        if text.chars().any(char::is_control) {
            return Err(TextError::ControlCharacters);
        }
        // Count characters, not bytes: 200 Japanese characters are 600 bytes of UTF-8.
        if text.chars().count() > max_chars {
            return Err(TextError::TooLong { max: max_chars });
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Whitespace, or a character that is never drawn (U+200B, U+200D, U+2060, U+FEFF, …).
fn renders_nothing(c: char) -> bool {
    use icu_properties::{CodePointSetData, props::DefaultIgnorableCodePoint};
    c.is_whitespace() || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

impl fmt::Debug for CommentText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_not_bytes() {
        let kana = "あ".repeat(200);
        assert_eq!(kana.len(), 600);
        assert!(CommentText::parse(kana, 200).is_ok());
        let emoji = "🎉".repeat(201);
        assert_eq!(
            CommentText::parse(emoji, 200),
            Err(TextError::TooLong { max: 200 })
        );
    }

    #[test]
    fn refuses_blank_text() {
        for blank in ["", " ", "\u{3000}", "   \u{00a0} "] {
            assert_eq!(
                CommentText::parse(blank.into(), 200),
                Err(TextError::Blank),
                "{blank:?}"
            );
        }
    }

    #[test]
    fn refuses_text_of_only_invisible_characters() {
        for blank in [
            "\u{200b}",
            "\u{200b}\u{200c}\u{200d}",
            " \u{2060} \u{feff}",
            "\u{00ad}\u{180e}\u{fe0f}",
            "\u{e0041}\u{3164}",
        ] {
            assert_eq!(
                CommentText::parse(blank.into(), 200),
                Err(TextError::Blank),
                "{blank:?}"
            );
        }
        // Joiners inside visible text are part of it (an emoji family, a soft hyphen).
        for kept in ["👨\u{200d}👩\u{200d}👧", "hy\u{00ad}phen", "a\u{200b}"] {
            assert_eq!(CommentText::parse(kept.into(), 200).unwrap().as_str(), kept);
        }
    }

    #[test]
    fn refuses_control_characters() {
        for bad in [
            "a\nb",
            "bell\u{7}",
            "esc\u{1b}[31m",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            assert_eq!(
                CommentText::parse(bad.into(), 200),
                Err(TextError::ControlCharacters),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keeps_ordinary_text_as_is() {
        let t = CommentText::parse("  hello 世界 👋 ".into(), 200).unwrap();
        assert_eq!(t.as_str(), "  hello 世界 👋 ");
    }
}
