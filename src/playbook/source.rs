//! A playbook's text, where it came from, and positions in it.
//!
//! Every value the loader keeps carries a [`Loc`] so that a semantic error
//! found long after parsing (an unknown `needs`, a cycle, a template that
//! reads a step it does not need) still points at `file:line:col`.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A position in a playbook: 1-based line and column (in characters), and
/// the length of the value there (in characters, for the caret underline).
/// `line == 0` means unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Loc {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub col: u32,
    /// Length in characters of the value at this position (0: unknown).
    pub len: u32,
}

impl Loc {
    /// A position with no length.
    pub fn at(line: u32, col: u32) -> Loc {
        Loc { line, col, len: 0 }
    }

    /// Whether the position is known.
    pub fn is_known(self) -> bool {
        self.line > 0
    }

    /// The same position with another underline length.
    #[must_use]
    pub fn with_len(self, len: u32) -> Loc {
        Loc { len, ..self }
    }

    /// A position `chars` characters further on the same line (for pointing
    /// inside a string, e.g. at one `{{...}}` of a template). Only valid for
    /// plain (unquoted or single-line quoted) scalars; callers pass the
    /// offset including the opening quote when there is one.
    #[must_use]
    pub fn shifted(self, chars: u32, len: u32) -> Loc {
        Loc {
            line: self.line,
            col: self.col + chars,
            len,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A playbook file as read: its display name, text and SHA-256.
#[derive(Debug)]
pub struct Source {
    name: String,
    text: String,
    sha256: String,
    line_starts: Vec<usize>,
}

impl Source {
    /// Wraps `text` read from a file shown as `name` (usually the path as given).
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let sha256 = sha256_hex(text.as_bytes());
        Source {
            name: name.into(),
            text,
            sha256,
            line_starts,
        }
    }

    /// The name shown in diagnostics (the path as given on the command line).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// SHA-256 (lower-case hex) of the text's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Line `line` (1-based) without its line break, if it exists.
    pub fn line(&self, line: u32) -> Option<&str> {
        let idx = usize::try_from(line).ok()?.checked_sub(1)?;
        let start = *self.line_starts.get(idx)?;
        let end = self
            .line_starts
            .get(idx + 1)
            .map_or(self.text.len(), |&e| e);
        Some(self.text[start..end].trim_end_matches(['\n', '\r']))
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        use fmt::Write as _;
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based_without_breaks() {
        let s = Source::new("x.yaml", "a: 1\r\nb: 2\n\nc: 3");
        assert_eq!(s.line(1), Some("a: 1"));
        assert_eq!(s.line(2), Some("b: 2"));
        assert_eq!(s.line(3), Some(""));
        assert_eq!(s.line(4), Some("c: 3"));
        assert_eq!(s.line(5), None);
        assert_eq!(s.line(0), None);
    }

    #[test]
    fn sha256_of_known_text() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
