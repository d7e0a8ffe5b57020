//! Log output that client-supplied strings (a request's `model`, an upstream's error text)
//! cannot forge or recolour: control characters in field values and messages are escaped.
//! The JSON format is our own so that lists are JSON arrays (see [`JsonList`]).

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::io;

use serde::Serialize;
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

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

thread_local! {
    /// Set by [`JsonList`] when it writes itself: tracing hands a `?` value over as a bare
    /// `&dyn Debug`, and this is how the JSON format knows an array came from a `JsonList`
    /// rather than from a string that merely looks like one (a client's `model`, say).
    static LIST_WRITTEN: Cell<bool> = const { Cell::new(false) };
}

/// A list for a log field, `providers = ?JsonList(&names)`: the JSON format writes it as a
/// JSON array (tracing's values are scalars, so a plain `?vec` would be the string of one);
/// the pretty format shows the same text, `["a","b"]`.
pub(crate) struct JsonList<'a, T>(pub(crate) &'a [T]);

impl<T: Serialize> fmt::Debug for JsonList<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self.0).map_err(|_| fmt::Error)?;
        LIST_WRITTEN.set(true);
        f.write_str(&text)
    }
}

/// The JSON format's records, shaped like tracing-subscriber's `json()` ones (which log
/// consumers and our tests read): `timestamp`, `level`, `fields` (in the order recorded),
/// `target`, and inside a span `span` (the innermost) and `spans` (from the root). Except: a
/// [`JsonList`] field is an array, and a recorded error carries its causes like the pretty
/// format's. Span fields are tracing-subscriber's [`JsonFields`]. One record is one line;
/// [`JsonStderr`] escapes what JSON leaves raw.
pub(crate) struct JsonEvents;

#[derive(Serialize)]
struct Record<'a> {
    timestamp: String,
    level: &'static str,
    fields: Fields<'a>,
    target: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    span: Option<&'a Value>,
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    spans: &'a [Value],
}

/// An event's fields in the order they were recorded.
struct Fields<'a>(&'a [(&'static str, Value)]);

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut fields = JsonVisitor {
            fields: Vec::new(),
            log_target: None,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        let spans: Vec<Value> = ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
            .map(|span| {
                let mut object: serde_json::Map<String, Value> = span
                    .extensions()
                    .get::<FormattedFields<JsonFields>>()
                    .and_then(|f| serde_json::from_str(&f.fields).ok())
                    .unwrap_or_default();
                object.insert("name".into(), span.name().into());
                Value::Object(object)
            })
            .collect();
        let meta = event.metadata();
        let record = Record {
            timestamp,
            level: meta.level().as_str(),
            fields: Fields(&fields.fields),
            // A `log` crate record arrives with target `log`; its own is a field.
            target: fields.log_target.as_deref().unwrap_or(meta.target()),
            span: spans.last(),
            spans: &spans,
        };
        let line = serde_json::to_string(&record).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

struct JsonVisitor {
    fields: Vec<(&'static str, Value)>,
    log_target: Option<String>,
    result: fmt::Result,
}

impl Visit for JsonVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.log_target = Some(value.to_owned());
        }
        self.fields.push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name(), value.into()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name(), value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities become `null`, as in tracing-subscriber's format.
        self.fields.push((field.name(), value.into()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let text = ErrorChain(value).to_string();
        self.fields.push((field.name(), text.into()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        LIST_WRITTEN.set(false);
        let mut text = String::new();
        if let Err(e) = write!(text, "{value:?}") {
            self.result = Err(e);
            return;
        }
        // Only the whole value written by a `JsonList` is an array: `Some([..])` is not JSON,
        // and a message stays a string whatever it says.
        let array = if LIST_WRITTEN.replace(false) && field.name() != "message" {
            serde_json::from_str(&text).ok().filter(Value::is_array)
        } else {
            None
        };
        self.fields
            .push((field.name(), array.unwrap_or_else(|| text.into())));
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

    /// What `log` writes through the subscriber `make` builds around a capturing writer.
    fn captured<S>(make: impl FnOnce(Capture) -> S, log: impl FnOnce()) -> Vec<u8>
    where
        S: Subscriber + Send + Sync + 'static,
    {
        let out = Capture::default();
        tracing::subscriber::with_default(make(out.clone()), log);
        out.0.lock().unwrap().clone()
    }

    fn pretty(log: impl FnOnce()) -> String {
        let out = captured(
            |sink| {
                tracing_subscriber::fmt()
                    .fmt_fields(EscapedFields)
                    .with_ansi(false)
                    .with_writer(move || sink.clone())
                    .finish()
            },
            log,
        );
        String::from_utf8(out).unwrap()
    }

    /// The JSON format's text as `JsonStderr` writes it, and each line parsed.
    fn json(log: impl FnOnce()) -> (String, Vec<Value>) {
        let out = captured(
            |sink| {
                tracing_subscriber::fmt()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonEvents)
                    .with_writer(move || sink.clone())
                    .finish()
            },
            log,
        );
        let mut escaped = Vec::new();
        escape_json_controls(&out, &mut escaped).unwrap();
        let text = String::from_utf8(escaped).unwrap();
        let records = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (text, records)
    }

    #[test]
    fn pretty_fields_and_message_cannot_forge_lines_or_escape_codes() {
        let evil = "x\r\nINFO forged line\u{1b}[31m\u{9b}2J\u{202e}";
        let text = pretty(|| {
            tracing::info!(model = %evil, quoted = evil, "asked for {evil}");
        });
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

    #[test]
    fn json_lists_are_arrays_and_other_values_keep_their_types() {
        let evil = "a\"b\\\r\n{\"forged\":1}\u{1b}[31m\u{9b}\u{7f}\u{202e}";
        let names = ["openai", evil];
        let (text, records) = json(|| {
            tracing::info!(
                providers = ?JsonList(&names),
                none = ?JsonList::<&str>(&[]),
                count = 3u64,
                delta = -2i64,
                ratio = 0.5,
                ok = true,
                model = evil,
                debug_vec = ?vec!["x"],
                looks_like_a_list = %r#"["x"]"#,
                wrapped = ?Some(JsonList(&names)),
                "listed {:?}",
                JsonList(&names)
            );
        });
        assert_eq!(records.len(), 1, "{text}");
        assert!(
            !text.trim_end_matches('\n').chars().any(char::is_control),
            "{text:?}"
        );
        let f = &records[0]["fields"];
        assert_eq!(
            f["providers"],
            serde_json::json!(["openai", evil]),
            "{text}"
        );
        assert_eq!(f["none"], serde_json::json!([]), "{text}");
        assert_eq!(f["count"], 3, "{text}");
        assert_eq!(f["delta"], -2, "{text}");
        assert_eq!(f["ratio"], 0.5, "{text}");
        assert_eq!(f["ok"], true, "{text}");
        assert_eq!(f["model"], evil);
        // Only a `JsonList` makes an array: not a Debug list, not a client string, not a
        // value around one, not the message.
        assert_eq!(f["debug_vec"], r#"["x"]"#);
        assert_eq!(f["looks_like_a_list"], r#"["x"]"#);
        assert!(
            f["wrapped"]
                .as_str()
                .is_some_and(|s| s.starts_with("Some([")),
            "{text}"
        );
        assert!(
            f["message"]
                .as_str()
                .is_some_and(|s| s.starts_with("listed [")),
            "{text}"
        );
    }

    #[test]
    fn json_records_are_shaped_like_tracing_subscribers() {
        let log = || {
            tracing::info!(n = 1u64, "outside");
            let outer = tracing::info_span!("outer", id = 7u64, kind = "x");
            let _entered = outer.enter();
            tracing::warn!(status = 502u64, error = %"up\nstream", "request failed");
            tracing::info_span!("inner").in_scope(|| tracing::error!(flag = false, "inside"));
        };
        let (text, mut ours) = json(log);
        let theirs = captured(
            |sink| {
                tracing_subscriber::fmt()
                    .json()
                    .with_writer(move || sink.clone())
                    .finish()
            },
            log,
        );
        let mut theirs: Vec<Value> = String::from_utf8(theirs)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(ours.len(), 3, "{text}");
        for (a, b) in ours.iter_mut().zip(&mut theirs) {
            let (a_time, b_time) = (a["timestamp"].take(), b["timestamp"].take());
            assert_eq!(a_time.as_str().map(str::len), b_time.as_str().map(str::len));
        }
        assert_eq!(ours, theirs);
        assert_eq!(ours[2]["spans"][1]["name"], "inner", "{text}");
    }

    #[test]
    fn pretty_shows_a_list_as_its_json() {
        let text = pretty(|| tracing::info!(providers = ?JsonList(&["openai", "x\ny"]), "loaded"));
        assert!(text.contains(r#"providers=["openai","x\ny"]"#), "{text}");
    }
}
