//! `DANMAKU_BLOCKED_TERMS_FILE`: the blocked terms of every stream, read at start-up. A line
//! the file cannot be read as stops start-up, naming the variable and the line.

use super::{Config, ConfigError, bad};
use crate::domain::{BlockedTerm, Term, TermAction};

/// Most terms the file may hold: ten times a stream's own list.
const MAX_FILE_TERMS: usize = 10_000;

impl Config {
    /// The file's terms (none without the setting).
    pub fn blocked_terms(&self) -> Result<Vec<BlockedTerm>, ConfigError> {
        let variable = "DANMAKU_BLOCKED_TERMS_FILE";
        let Some(path) = &self.blocked_terms_file else {
            return Ok(Vec::new());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(variable, format!("cannot read {}: {e}", path.display())))?;
        let terms = parse(&text).map_err(|message| bad(variable, message))?;
        if terms.len() > MAX_FILE_TERMS {
            return Err(bad(variable, format!("at most {MAX_FILE_TERMS} terms")));
        }
        Ok(terms)
    }
}

/// Lines `action<TAB>term`; blank lines and `#` comments skipped.
fn parse(text: &str) -> Result<Vec<BlockedTerm>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(i, line)| {
            let at = i + 1;
            let (action, term) = line
                .split_once('\t')
                .ok_or_else(|| format!("line {at}: expected action<TAB>term"))?;
            let action = TermAction::parse(action.trim())
                .ok_or_else(|| format!("line {at}: the action is refuse, hold or shadow"))?;
            let term = Term::parse(term).map_err(|e| format!("line {at}: {e}"))?;
            Ok(BlockedTerm { term, action })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_action_tab_term_lines() {
        let terms = parse("# the usual\nrefuse\tslur\n\nhold\thttp://\nshadow\tspoiler\n").unwrap();
        let read: Vec<(&str, TermAction)> =
            terms.iter().map(|t| (t.term.as_str(), t.action)).collect();
        assert_eq!(
            read,
            [
                ("slur", TermAction::Refuse),
                ("http://", TermAction::Hold),
                ("spoiler", TermAction::Shadow)
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        assert_eq!(
            parse("refuse slur").unwrap_err(),
            "line 1: expected action<TAB>term"
        );
        assert!(parse("ok\n\nban\tx").unwrap_err().starts_with("line 1"));
        assert!(
            parse("refuse\tok\nban\tx")
                .unwrap_err()
                .starts_with("line 2: the action")
        );
        assert!(parse("hold\t").unwrap_err().starts_with("line 1: a term"));
    }
}
