//! Text that reaches a terminal: control characters made visible.
//!
//! Params, playbooks and API answers are not trusted to be printable. A raw
//! ESC (or the one-byte CSI, U+009B) in a node name or an error message from
//! the service could move the cursor, rewrite lines a reviewer is reading,
//! or set the terminal's title. Every control character other than a line
//! feed and a tab (C0, DEL and C1) is therefore written as `\u00XX`: visible,
//! unambiguous, and still valid inside a JSON string, so the same rule serves
//! the JSON lines of `--output json` (where serde already escapes C0 but
//! leaves DEL and C1 raw).
//!
//! [`escape`] is for one value (a live-view message); [`SafeWriter`] wraps
//! stdout or stderr so that nothing written through it can carry a raw
//! control character, wherever the text came from.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Whether `c` is shown escaped.
fn hidden(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `s` with every control character but `\n` and `\t` written as `\u00XX`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A writer that escapes control characters (see [`escape`]) in all it
/// passes on. Bytes that are not UTF-8 are written as U+FFFD; a character
/// split across two writes is held until its end arrives.
pub struct SafeWriter<W: Write> {
    inner: W,
    /// The start of a character whose remaining bytes have not come yet.
    pending: Vec<u8>,
}

impl<W: Write> SafeWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> SafeWriter<W> {
        SafeWriter {
            inner,
            pending: Vec::new(),
        }
    }
}

impl<W: Write> Write for SafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(buf);
        let mut rest: &[u8] = &bytes;
        let mut text = String::with_capacity(rest.len());
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    text.push_str(s);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid_up_to` bytes are UTF-8 by the error's contract.
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: wait for the rest.
                        None => {
                            self.pending = after.to_vec();
                            break;
                        }
                        Some(n) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        self.inner.write_all(escape(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for SafeWriter<W> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let _ = self
                .inner
                .write_all(char::REPLACEMENT_CHARACTER.to_string().as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every control character of every class, alone and in ESC sequences.
    fn hostile() -> String {
        let mut s = String::new();
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            s.push('a');
            s.push(c);
        }
        s.push_str("\x1b[2J\x1b]0;title\x07\u{9b}31m ok");
        s
    }

    #[test]
    fn no_control_character_but_newline_and_tab_survives() {
        let out = escape(&hostile()).into_owned();
        assert!(
            !out.chars().any(hidden),
            "raw control characters left in {out:?}"
        );
        assert!(out.contains("\\u001b[2J") && out.contains("\\u009b31m"));
        assert!(out.contains('\n') && out.contains('\t'));
        assert_eq!(escape("plain text: ✓ 日本"), "plain text: ✓ 日本");
    }

    #[test]
    fn escaped_text_is_still_a_valid_json_string() {
        let value = serde_json::json!({ "s": hostile() });
        let line = serde_json::to_string(&value).unwrap();
        let safe = escape(&line);
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn the_writer_escapes_across_any_split_of_the_bytes() {
        let text = format!("{}é€😀", hostile());
        let bytes = text.as_bytes();
        let want = escape(&text).into_owned();
        for split in 0..=bytes.len() {
            let mut out = Vec::new();
            {
                let mut w = SafeWriter::new(&mut out);
                w.write_all(&bytes[..split]).unwrap();
                w.write_all(&bytes[split..]).unwrap();
            }
            assert_eq!(String::from_utf8(out).unwrap(), want, "split at {split}");
        }
    }
}
