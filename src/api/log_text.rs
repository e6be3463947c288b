//! Request-derived text in log lines. What a request sends (a header, a path,
//! an error that quotes either) is logged through [`LogText`], so that one
//! request writes a bounded line and cannot add fields of its own: tracing's
//! `%` prints a `&str` as it is, spaces and `status="accepted"` included.

use std::fmt;

/// How much of an untrusted value a log line keeps: a delivery id is 36
/// characters, an event name at most 64.
pub const MAX_LOG_CHARS: usize = 64;

/// Logs (`field = %LogText::new(value)`) a short token of plain characters
/// as it is, and anything else quoted and escaped like `{:?}`, cut to its
/// first characters and its length in bytes.
pub struct LogText<'a> {
    text: &'a str,
    max_chars: usize,
}

impl<'a> LogText<'a> {
    /// At most [`MAX_LOG_CHARS`] characters.
    pub fn new(text: &'a str) -> Self {
        LogText { text, max_chars: MAX_LOG_CHARS }
    }

    /// At most `max_chars` characters (for error messages that may quote a request).
    pub fn bounded(text: &'a str, max_chars: usize) -> Self {
        LogText { text, max_chars }
    }
}

/// Characters that cannot start a field, a quote or a line of their own.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '@' | '+')
}

impl fmt::Display for LogText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.text.char_indices().nth(self.max_chars).map(|(at, _)| at);
        match cut {
            None if !self.text.is_empty() && self.text.chars().all(plain) => f.write_str(self.text),
            None => write!(f, "{:?}", self.text),
            Some(at) => write!(f, "{:?}", format!("{}… ({} bytes)", &self.text[..at], self.text.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tokens_are_logged_as_they_are() {
        assert_eq!(LogText::new("0b8d6a9c-3f7e-4a55").to_string(), "0b8d6a9c-3f7e-4a55");
        assert_eq!(LogText::new("issue_comment").to_string(), "issue_comment");
    }

    #[test]
    fn anything_else_is_quoted_escaped_and_cut() {
        assert_eq!(LogText::new(r#"abc status="accepted" x"#).to_string(), r#""abc status=\"accepted\" x""#);
        assert_eq!(LogText::new("a\nb\u{1b}[31m").to_string(), r#""a\nb\u{1b}[31m""#);
        assert_eq!(LogText::new("").to_string(), r#""""#);
        let long = "x".repeat(200_000);
        let logged = LogText::new(&long).to_string();
        assert_eq!(logged, format!("\"{}… (200000 bytes)\"", "x".repeat(MAX_LOG_CHARS)));
        assert_eq!(LogText::bounded("é".repeat(10).as_str(), 3).to_string(), "\"ééé… (20 bytes)\"");
    }
}
