//! Tells when streamed tool-call arguments have become one whole JSON value, in time linear
//! in their total length. Re-parsing everything received on every fragment was quadratic: a
//! 256 KB call in 16-byte fragments cost most of a second of CPU.
//!
//! The scanner tracks nesting and strings byte by byte. The first time the top-level value
//! closes it asks serde once whether the text is valid JSON; the verdict is final, because no
//! suffix can repair an invalid first value and any non-blank suffix spoils a valid one.

/// Longest top-level scalar (`123`, `true`) that is parsed to decide completeness; scalars have
/// no closing delimiter, so each fragment would need a parse. Arguments are objects in
/// practice; a longer scalar is treated as never complete.
const MAX_SCALAR: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Nothing but whitespace yet.
    #[default]
    Empty,
    /// Inside the top-level object, array or string.
    Open,
    /// A top-level number or literal, complete whenever it parses.
    Scalar,
    /// The top-level value closed; serde has not been asked yet.
    Closed,
    Valid,
    Invalid,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct JsonScan {
    state: State,
    depth: u32,
    in_string: bool,
    escaped: bool,
    len: usize,
    /// Length of the text up to and including the top-level value's closing byte.
    end: Option<usize>,
}

impl JsonScan {
    /// Scans `fragment`, which the caller appends to the text scanned so far.
    pub(crate) fn feed(&mut self, fragment: &str) {
        let start = self.len;
        self.len += fragment.len();
        for (i, &b) in fragment.as_bytes().iter().enumerate() {
            match self.state {
                State::Invalid => return,
                State::Closed | State::Valid => {
                    if !b.is_ascii_whitespace() {
                        self.state = State::Invalid;
                    }
                }
                State::Scalar => {
                    if b.is_ascii_whitespace() {
                        continue;
                    }
                    if matches!(b, b'{' | b'[' | b'"' | b'}' | b']') {
                        self.state = State::Invalid;
                    }
                }
                State::Empty | State::Open => {
                    self.byte(b);
                    if self.state == State::Closed {
                        self.end = Some(start + i + 1);
                    }
                }
            }
        }
    }

    /// Where the top-level object, array or string ended, once it has.
    pub(crate) fn end(&self) -> Option<usize> {
        self.end
    }

    fn byte(&mut self, b: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.depth == 0 {
                    self.state = State::Closed;
                }
            }
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                self.state = State::Open;
            }
            b'{' | b'[' => {
                self.depth += 1;
                self.state = State::Open;
            }
            b'}' | b']' => match self.depth {
                0 => self.state = State::Invalid,
                1 => {
                    self.depth = 0;
                    self.state = State::Closed;
                }
                _ => self.depth -= 1,
            },
            _ if b.is_ascii_whitespace() => {}
            _ if self.state == State::Empty => self.state = State::Scalar,
            _ => {}
        }
    }

    /// True when `text` (everything fed so far) is one whole JSON value.
    pub(crate) fn is_complete(&mut self, text: &str) -> bool {
        match self.state {
            State::Valid => true,
            State::Empty | State::Open | State::Invalid => false,
            State::Closed => {
                self.state = if parses(text) {
                    State::Valid
                } else {
                    State::Invalid
                };
                self.state == State::Valid
            }
            State::Scalar => self.len <= MAX_SCALAR && parses(text),
        }
    }
}

fn parses(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a full parse says, with the scanner's one documented difference: a long
    /// top-level scalar never counts as complete.
    fn expected(text: &str) -> bool {
        let t = text.trim_start();
        let scalar = !t.is_empty() && !t.starts_with(['{', '[', '"']);
        parses(text) && !(scalar && text.len() > MAX_SCALAR)
    }

    /// Feeds `text` in pieces of about `n` bytes (on char boundaries) and checks the verdict
    /// after each piece against a full parse.
    fn agrees_with_serde(text: &str, n: usize) {
        let mut scan = JsonScan::default();
        let mut so_far = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = n.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (piece, tail) = rest.split_at(cut);
            scan.feed(piece);
            so_far.push_str(piece);
            assert_eq!(scan.is_complete(&so_far), expected(&so_far), "{so_far:?}");
            rest = tail;
        }
    }

    #[test]
    fn matches_a_full_parse_at_every_step() {
        let long_number = "1".repeat(MAX_SCALAR + 1);
        for text in [
            r#"{"a":1}"#,
            r#"  {"s":"}{\"\\","n":[1,{"x":[]}]}  "#,
            r#"{"a":1} {"#,
            r#"{"a" "b"}"#,
            r#"}{"#,
            r#""just a string""#,
            "123",
            "true",
            "[1,2,3]",
            r#"{"é":"ünïcødé"}"#,
            "   ",
            &long_number,
        ] {
            for n in [1, 2, 3, 7, 100] {
                agrees_with_serde(text, n);
            }
        }
    }
}
