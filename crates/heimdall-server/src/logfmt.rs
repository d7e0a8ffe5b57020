//! Log output that client-supplied strings (a request's `model`, an upstream's error text)
//! cannot forge or recolour: control characters in field values and messages are escaped.

use std::fmt::{self, Write as _};
use std::io;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// The pretty format's field formatter: `message k=v k2=v2`, like tracing-subscriber's default
/// one, but with CR, LF, ESC and every other C0/C1 control (and Unicode line separators and
/// bidi overrides) written as escapes. The formatter's own colours (level, field names) are
/// unaffected; they are on only when stderr is a terminal.
pub(crate) struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        self.result = self.write_field(field, value);
    }

    fn write_field(&mut self, field: &Field, value: fmt::Arguments<'_>) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        let name = field.name();
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            if self.writer.has_ansi_escapes() {
                write!(self.writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
            } else {
                write!(self.writer, "{name}=")?;
            }
        }
        write!(Escaping(&mut self.writer), "{value}")
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Quoted like the default formatter does, except the message.
        if field.name() == "message" {
            self.field(field, format_args!("{value}"));
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, format_args!("{}", ErrorChain(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// `error: source: source…`, so recorded errors keep their causes.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Writes through to `W`, escaping characters that could end a log line or steer a terminal.
struct Escaping<'a, W: fmt::Write>(&'a mut W);

fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(must_escape) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// stderr for the JSON format. JSON already escapes C0 controls (ESC, CR, LF); this also
/// escapes DEL and the C1 controls (U+0080–U+009F, which some terminals obey as escape
/// sequences). Both can only occur inside JSON strings, where `\u00XX` means the same.
pub(crate) struct JsonStderr;

impl<'a> MakeWriter<'a> for JsonStderr {
    type Writer = JsonStderr;

    fn make_writer(&'a self) -> JsonStderr {
        JsonStderr
    }
}

impl io::Write for JsonStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // One event arrives as one buffer; escaping needs it whole.
        escape_json_controls(buf, &mut io::stderr().lock())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

fn escape_json_controls(buf: &[u8], out: &mut impl io::Write) -> io::Result<()> {
    let mut start = 0;
    let mut i = 0;
    while i < buf.len() {
        // In UTF-8, U+0080–U+009F are 0xC2 0x80–0x9F; 0xC2 is never a continuation byte.
        let code = match (buf[i], buf.get(i + 1)) {
            (0x7f, _) => Some((0x7f, 1)),
            (0xc2, Some(&b)) if (0x80..=0x9f).contains(&b) => Some((b, 2)),
            _ => None,
        };
        match code {
            Some((code, len)) => {
                out.write_all(&buf[start..i])?;
                write!(out, "\\u{code:04x}")?;
                i += len;
                start = i;
            }
            None => i += 1,
        }
    }
    out.write_all(&buf[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn pretty_fields_and_message_cannot_forge_lines_or_escape_codes() {
        let out = Capture::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let evil = "x\r\nINFO forged line\u{1b}[31m\u{9b}2J\u{202e}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(model = %evil, quoted = evil, "asked for {evil}");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            !text.chars().any(|c| c != '\n' && must_escape(c)),
            "{text:?}"
        );
        assert!(
            text.contains(r"model=x\r\nINFO forged line\u{1b}[31m\u{9b}2J\u{202e}"),
            "{text}"
        );
        assert!(
            text.contains(r#"quoted="x\r\nINFO forged line\u{1b}[31m\u{9b}2J\u{202e}""#),
            "{text}"
        );
        assert!(text.contains(r"asked for x\r\nINFO"), "{text}");
    }

    #[test]
    fn json_output_escapes_del_and_c1_and_stays_json() {
        let line =
            serde_json::to_vec(&serde_json::json!({"m": "a\u{7f}b\u{9b}c\u{e9}\u{85}"})).unwrap();
        let mut out = Vec::new();
        escape_json_controls(&line, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, r#"{"m":"a\u007fb\u009bcé\u0085"}"#);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["m"], "a\u{7f}b\u{9b}c\u{e9}\u{85}");
    }
}
