//! A fast, conservative look at a payload's raw JSON before parsing it:
//! most deliveries cannot concern a handler (a comment that mentions no one,
//! an issue that is not a pull request), and finding that out in the raw
//! bytes costs a fraction of a full parse.

use memchr::{memchr2_iter, memmem};

/// Whether the JSON text `json` may contain `text` (ASCII case-insensitive)
/// anywhere once its strings are unescaped. `false` only when it certainly
/// does not; `true` whenever it cannot tell cheaply.
///
/// Sound because JSON writes every character of `text` either as itself or
/// as a `\uXXXX` escape: `text`s that hold characters with other escapes
/// (`"`, `\`, `/`, control characters) or beyond ASCII are never ruled out,
/// and a body with a `\u` escape of one of `text`'s letters is not either.
pub fn may_contain(json: &[u8], text: &str) -> bool {
    let needle = text.as_bytes();
    let Some(&first) = needle.first() else {
        return true;
    };
    if !needle.iter().all(|&b| b.is_ascii() && !b.is_ascii_control() && !matches!(b, b'"' | b'\\' | b'/')) {
        return true;
    }
    let escaped_letter = memmem::find_iter(json, b"\\u").any(|at| {
        let code = json.get(at + 2..at + 6).and_then(|hex| std::str::from_utf8(hex).ok());
        match code.and_then(|hex| u32::from_str_radix(hex, 16).ok()) {
            Some(code) => u8::try_from(code).is_ok_and(|c| needle.iter().any(|n| n.eq_ignore_ascii_case(&c))),
            None => true,
        }
    });
    if escaped_letter {
        return true;
    }
    memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), json)
        .any(|at| json.get(at..at + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle)))
}

#[cfg(test)]
mod tests {
    use super::may_contain;

    #[test]
    fn finds_the_text_in_any_case() {
        assert!(may_contain(br#"{"body":"hey @OpenHands, fix it"}"#, "@openhands"));
        assert!(may_contain(br#"{"issue":{"pull_request":{}}}"#, "pull_request"));
        assert!(may_contain(br#"{"body":"ends with @openhands"}"#, "@openhands"));
    }

    #[test]
    fn rules_out_what_is_not_there() {
        assert!(!may_contain(br#"{"body":"hey @openhand"}"#, "@openhands"));
        assert!(!may_contain(br#"{"issue":{"number":1}}"#, "pull_request"));
        assert!(!may_contain(br#"{"body":"a \u003cb\u003e tag"}"#, "@openhands"));
        assert!(!may_contain(b"", "@openhands"));
    }

    #[test]
    fn an_escaped_letter_of_the_text_is_not_ruled_out() {
        // `\u0040` is `@`, `\u004F` is `O`: the unescaped body mentions the handle.
        assert!(may_contain(br#"{"body":"\u0040openhands"}"#, "@openhands"));
        assert!(may_contain(br#"{"body":"@\u004Fpenhands"}"#, "@openhands"));
        assert!(may_contain(br#"{"body":"\u00zz"}"#, "@openhands"));
    }

    #[test]
    fn texts_with_other_escapes_are_never_ruled_out() {
        assert!(may_contain(b"{}", "a/b"));
        assert!(may_contain(b"{}", "say \"hi\""));
        assert!(may_contain(b"{}", "caf\u{e9}"));
        assert!(may_contain(b"{}", ""));
    }
}
