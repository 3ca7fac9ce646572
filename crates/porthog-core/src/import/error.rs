//! Import errors: what was wrong, where (file and line), what was expected, and what to do.

use std::borrow::Cow;

use thiserror::Error;

use super::Format;
use super::cursor::Line;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImportError {
    /// A row of a recognised format that does not parse.
    #[error(
        "{file}:{line}: {format} row: expected {expected}, found {found:?}; fix the line, or use --lenient to skip bad rows"
    )]
    Malformed { file: String, line: usize, format: Format, expected: String, found: String },
    /// Nothing in the input was recognised.
    #[error(
        "{file}: no known format recognised (tried {tried}); it starts with:\n{head}\nuse --format NAME to force one, or see docs/CAPTURING.md for what to capture"
    )]
    Unrecognized { file: String, tried: String, head: String },
    /// A problem with the input as a whole.
    #[error("{file}: {message}")]
    Whole { file: String, message: String },
}

impl ImportError {
    /// `file` is binary (an executable, an archive), not captured text: nothing of it is shown.
    pub fn binary(file: &str) -> ImportError {
        ImportError::whole(
            file,
            "binary file, not a capture; give the text a command printed (see docs/CAPTURING.md)",
        )
    }

    pub fn malformed(file: &str, line: Line<'_>, format: Format, expected: &str) -> ImportError {
        let mut found: String = line.text.trim().chars().take(120).collect();
        if line.text.trim().chars().count() > 120 {
            found.push('…');
        }
        ImportError::Malformed {
            file: printable(file).into_owned(),
            line: line.no,
            format,
            expected: expected.to_owned(),
            found,
        }
    }

    pub fn unrecognized(file: &str, text: &str, forced: Option<Format>) -> ImportError {
        let tried = match forced {
            Some(f) => f.as_str().to_owned(),
            None => Format::ALL.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
        };
        let head: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(5)
            .map(|l| format!("  | {}", printable(&l.chars().take(100).collect::<String>())))
            .collect();
        let head = if head.is_empty() { "  | (no text)".to_owned() } else { head.join("\n") };
        ImportError::Unrecognized { file: printable(file).into_owned(), tried, head }
    }

    pub fn whole(file: &str, message: &str) -> ImportError {
        ImportError::Whole {
            file: printable(file).into_owned(),
            message: printable(message).into_owned(),
        }
    }
}

/// `s` with every control character but tab escaped (`\u{1b}`), so that no message prints a
/// terminal escape or a NUL from its input (issue 8). The text is otherwise unchanged.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::cursor::Line;

    #[test]
    fn no_message_carries_a_control_character() {
        let nasty = "a\x1b[2Jb\0c\u{9b}d\x07";
        let errors = [
            ImportError::malformed(nasty, Line { no: 1, text: nasty }, Format::Netstat, "x"),
            ImportError::unrecognized(nasty, nasty, None),
            ImportError::whole(nasty, nasty),
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(!msg.chars().any(|c| c.is_control() && c != '\n'), "{msg:?}");
            assert!(msg.contains("a\\u{1b}[2Jb"), "{msg}");
        }
    }
}
