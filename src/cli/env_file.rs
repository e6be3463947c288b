//! `serve --env-file FILE` / `HOOKWISE_ENV_FILE`: `KEY=VALUE` lines read into
//! the environment before the configuration is parsed.
//!
//! Deliberately small: blank lines and `#` comment lines, an optional
//! `export ` prefix, a value taken literally after the first `=` (so `=` and
//! `#` may appear in it — secrets often hold both), optionally wrapped in one
//! pair of single or double quotes that are removed. No shell expansion and
//! no escapes: what is between the quotes is the value.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("reading the env file {}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the env file {}, line {line}: {reason}", .path.display())]
    Syntax { path: PathBuf, line: usize, reason: &'static str },
}

/// The `(key, value)` pairs of an env file's text, in order; `Err((line, reason))` on the first bad line.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, &'static str)> {
    let mut pairs = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((index + 1, "expected KEY=VALUE"));
        };
        let key = key.trim();
        let valid_key = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err((index + 1, "the key must be letters, digits and `_`, not starting with a digit"));
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => match value[1..].strip_suffix(quote) {
                Some(inner) => inner,
                None => return Err((index + 1, "a quoted value must end with the same quote")),
            },
            _ => value,
        };
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

/// The pairs of the env file at `path` whose key `is_set` says the real
/// environment does not already have: real variables win over the file.
pub fn read_missing(path: &Path, is_set: impl Fn(&str) -> bool) -> Result<Vec<(String, String)>, EnvFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| EnvFileError::Read { path: path.to_owned(), source })?;
    let pairs = parse(&text).map_err(|(line, reason)| EnvFileError::Syntax { path: path.to_owned(), line, reason })?;
    Ok(pairs.into_iter().filter(|(key, _)| !is_set(key)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).expect("valid env file")
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_owned(), value.to_owned())
    }

    #[test]
    fn skips_comments_and_blank_lines() {
        let text = "# written by hookwise setup\n\n   \nGITHUB_APP_ID=123\n  # indented comment\nB=2\n";
        assert_eq!(pairs(text), vec![pair("GITHUB_APP_ID", "123"), pair("B", "2")]);
    }

    #[test]
    fn a_value_is_everything_after_the_first_equals_sign() {
        assert_eq!(pairs("SECRET=a=b==c#d\n"), vec![pair("SECRET", "a=b==c#d")]);
        assert_eq!(pairs("EMPTY=\n"), vec![pair("EMPTY", "")]);
    }

    #[test]
    fn quotes_are_removed_and_nothing_inside_them_is_expanded() {
        let text = "A=\"two words\"\nB='$HOME and \\n'\nC=\"it's\"\nD=  spaced  \nexport E=1\n";
        assert_eq!(
            pairs(text),
            vec![
                pair("A", "two words"),
                pair("B", "$HOME and \\n"),
                pair("C", "it's"),
                pair("D", "spaced"),
                pair("E", "1")
            ]
        );
        assert_eq!(pairs("HOME_COPY=$HOME\n"), vec![pair("HOME_COPY", "$HOME")]);
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        assert_eq!(parse("A=1\nnot a pair\n"), Err((2, "expected KEY=VALUE")));
        assert!(matches!(parse("1A=x"), Err((1, _))));
        assert!(matches!(parse("MY-KEY=x"), Err((1, _))));
        assert!(matches!(parse("=x"), Err((1, _))));
        assert!(matches!(parse("A=\"unterminated"), Err((1, _))));
        assert!(matches!(parse("A=\""), Err((1, _))));
    }

    #[test]
    fn real_environment_variables_win_over_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hookwise.env");
        std::fs::write(&path, "ALREADY_SET=from-file\nNOT_SET=from-file\n").expect("write");
        let missing = read_missing(&path, |key| key == "ALREADY_SET").expect("read");
        assert_eq!(missing, vec![pair("NOT_SET", "from-file")]);
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let error = read_missing(Path::new("/nonexistent/hookwise.env"), |_| false).expect_err("no file");
        assert!(error.to_string().contains("/nonexistent/hookwise.env"), "{error}");
    }
}
