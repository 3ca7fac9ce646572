//! Import errors: what was wrong, where (file and line), what was expected, and what to do.

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
    pub fn malformed(file: &str, line: Line<'_>, format: Format, expected: &str) -> ImportError {
        let mut found: String = line.text.trim().chars().take(120).collect();
        if line.text.trim().chars().count() > 120 {
            found.push('…');
        }
        ImportError::Malformed {
            file: file.to_owned(),
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
            .map(|l| format!("  | {}", l.chars().take(100).collect::<String>()))
            .collect();
        let head = if head.is_empty() { "  | (no text)".to_owned() } else { head.join("\n") };
        ImportError::Unrecognized { file: file.to_owned(), tried, head }
    }

    pub fn whole(file: &str, message: &str) -> ImportError {
        ImportError::Whole { file: file.to_owned(), message: message.to_owned() }
    }
}
