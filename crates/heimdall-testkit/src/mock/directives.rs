//! Parser for the `[[mock:...]]` directives that script the mock's behaviour.
//!
//! Clients of the gateway can only control message content, so tests script the mock upstream
//! through directives embedded in the text of the last user message (string content or text
//! blocks/parts). The parser returns the directives and the text with every directive removed
//! (and trimmed). A malformed or unknown directive makes the mock answer HTTP 400, so typos fail
//! loudly.
//!
//! | directive | effect |
//! |---|---|
//! | `tool NAME [{json}]` | reply with a tool call (input `{}` if omitted); repeat for parallel calls |
//! | `tool_whole NAME [{json}]` | same, but the OpenAI stream sends the call in one fragment |
//! | `error STATUS [retry_after=N] [retry_after_ms=N] [type=T]` | HTTP error in the dialect's error shape; `retry-after` / `retry-after-ms` headers |
//! | `fail_first N STATUS KEY [retry_after=N] [retry_after_ms=N] [type=T]` | first N requests per KEY (process-wide) fail |
//! | `key_error KEY STATUS [retry_after=N] [retry_after_ms=N] [type=T]` | a request authenticated with the API key KEY fails as `error` would (ahead of `fail_first` and `error`, and uncounted by `fail_first`); other keys get the normal answer; one per KEY, as many keys as wanted |
//! | `delay MS` | sleep before answering (before any scripted error too) |
//! | `cut` | stream: 200 + first events, then the connection is aborted; non-stream: half a JSON body, then abort |
//! | `stall MS` | stream: first events, then a pause of MS; non-stream: same as `delay` |
//! | `stream_error` | stream: in-band error after the first content (ignored without streaming) |
//! | `finish REASON` | OpenAI `finish_reason` / Anthropic `stop_reason` / Gemini `finishReason`, mapped across dialects |
//! | `reasoning TEXT` | OpenAI `reasoning_content` / Anthropic signed thinking block / Gemini `thought` parts, before the text |
//! | `cached N` | N prompt tokens reported as cached (clamped to the prompt size) |
//! | `text TEXT` | reply with exactly TEXT (instead of the echo; alongside tool calls if any) |
//! | `words N` | reply with N lorem-ipsum words (long outputs for benchmarks) |
//! | `body html` | 200 `text/html` page instead of the answer (streaming or not) |
//! | `body truncated` | 200 `application/json` cut in half, framed by its own `content-length` |
//! | `body json` | the non-streaming JSON answer, also to a streaming request |
//! | `body sse` | the SSE stream, also to a non-streaming request |
//! | `body no_content` | `204 No Content` (streaming or not) |
//! | `body no_data` | the SSE stream with every `data:` line removed (an event left empty gets an `id: N` line) |
//! | `huge N` | the reply text is N MiB, generated piecewise: one JSON body framed by `content-length`, or one SSE event; with `error` / `fail_first`, the error message is N MiB |
//! | `gzip` | the answer (JSON, SSE or error) is gzip-compressed, with `content-encoding: gzip`; a stream is flushed per event |
//! | `garbage` | stream: a line of non-UTF-8 bytes and a non-SSE line after the first content, then the rest (ignored without streaming) |
//! | `eof after_content` | stream: clean end right before the finish frame (OpenAI: no `finish_reason`, usage or `[DONE]`; Anthropic: no `message_delta` / `message_stop`) (ignored without streaming) |
//! | `eof after_finish` | stream: clean end right after the finish frame (OpenAI: no usage chunk, no `[DONE]`; Anthropic: no `message_stop`) (ignored without streaming) |
//! | `hold_open MS` | stream: after the last event, the body stays open MS before it ends (ignored without streaming) |
//! | `status CODE [location=URL]` | raw front only: `HTTP/1.1 CODE` (100..=999, even 101 or 600) written as is, then close (see below) |
//! | `close_idle MS` | raw front only: the answer with keep-alive, then the connection closes unless the next request arrives within MS |
//! | `hangup` | raw front only: the connection closes right after the request is read; not one byte is written |
//!
//! The last three are connection-level faults that hyper cannot produce, so only the raw front
//! (`MockServer::start_raw`, `heimdall-mock --raw-http`) honours them; the hyper mock answers
//! them with 400. The request is still recorded and validated (a bad key or body is answered as
//! usual), then answered by the handler (`delay`, `error` and `fail_first` included) before the
//! raw front bends the connection: `status` and `hangup` replace that answer, `close_idle`
//! follows it. `status`
//! writes, for 1xx, `HTTP/1.1 CODE REASON\r\n` (101 adds `connection: upgrade` and
//! `upgrade: mock`) and a blank line; otherwise the status line, `location` if given,
//! `content-type: application/json`, `content-length`, `connection: close` and the body
//! `{"mock_status":CODE}`. REASON is the standard phrase, or `Mock Status` for codes without one.

use std::time::Duration;

use serde_json::Value;

const OPEN: &str = "[[mock:";
const CLOSE: &str = "]]";

/// One scripted tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDirective {
    pub name: String,
    pub input: Value,
    /// `tool_whole`: the OpenAI stream sends the call in a single fragment.
    pub whole: bool,
}

/// A scripted HTTP error (`error`, or the failing phase of `fail_first`).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorDirective {
    pub status: u16,
    pub retry_after: Option<u64>,
    /// `retry-after-ms`, the millisecond hint OpenAI and Anthropic SDKs prefer to `retry-after`.
    pub retry_after_ms: Option<u64>,
    pub error_type: Option<String>,
}

/// `fail_first N STATUS KEY`: the first N requests with this KEY fail.
#[derive(Debug, Clone, PartialEq)]
pub struct FailFirst {
    pub count: u64,
    pub key: String,
    pub error: ErrorDirective,
}

/// `key_error KEY STATUS`: requests authenticated with the API key KEY fail.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    /// The key as the route reads it (`x-api-key`, bearer token, `api-key`, `x-goog-api-key`,
    /// `?key=`, or a SigV4 access key id).
    pub key: String,
    pub error: ErrorDirective,
}

/// `eof`: where a stream ends cleanly but too early.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EarlyEof {
    /// After the content, before the finish frame.
    AfterContent,
    /// After the finish frame (OpenAI `finish_reason` chunk / Anthropic `message_delta`).
    AfterFinish,
}

/// `body`: a 2xx answer that is not what the request asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BodyFault {
    Html,
    Truncated,
    Json,
    Sse,
    NoContent,
    NoData,
}

/// A fault only the raw front can produce: what happens to the connection instead of, or after,
/// the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionFault {
    /// `status CODE [location=URL]`: that status line instead of the answer, then close.
    Status { code: u16, location: Option<String> },
    /// `close_idle MS`: the answer with keep-alive, then close if no request arrives within MS.
    CloseIdle(Duration),
    /// `hangup`: close after reading the request, without writing a byte.
    Hangup,
}

/// Everything the directives of one message asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directives {
    pub tools: Vec<ToolDirective>,
    pub error: Option<ErrorDirective>,
    pub fail_first: Option<FailFirst>,
    pub key_errors: Vec<KeyError>,
    pub delay: Option<Duration>,
    pub cut: bool,
    pub stall: Option<Duration>,
    pub stream_error: bool,
    pub finish: Option<String>,
    pub reasoning: Option<String>,
    pub cached: Option<u64>,
    pub text: Option<String>,
    pub words: Option<usize>,
    pub garbage: bool,
    pub eof: Option<EarlyEof>,
    pub hold_open: Option<Duration>,
    pub body: Option<BodyFault>,
    /// `huge N`: MiB of reply text (or error message).
    pub huge: Option<u64>,
    pub gzip: bool,
    pub connection: Option<ConnectionFault>,
}

/// A malformed directive; the mock answers it with HTTP 400 so typos in tests are loud.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectiveError(pub String);

impl std::fmt::Display for DirectiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad mock directive: {}", self.0)
    }
}

impl std::error::Error for DirectiveError {}

/// Parses all directives in `text`. Returns them and the text with the directives removed,
/// trimmed.
pub fn parse(text: &str) -> Result<(Directives, String), DirectiveError> {
    let mut out = Directives::default();
    if !text.contains(OPEN) {
        return Ok((out, text.trim().to_owned()));
    }
    let mut rest_text = String::with_capacity(text.len());
    let mut cursor = 0;
    while let Some(rel) = text[cursor..].find(OPEN) {
        let start = cursor + rel;
        rest_text.push_str(&text[cursor..start]);
        let body_start = start + OPEN.len();
        let consumed = parse_one(&text[body_start..], &mut out)?;
        cursor = body_start + consumed;
    }
    rest_text.push_str(&text[cursor..]);
    Ok((out, rest_text.trim().to_owned()))
}

/// Parses one directive body (the text after `[[mock:`). Returns the number of bytes consumed,
/// including the closing `]]`.
fn parse_one(s: &str, out: &mut Directives) -> Result<usize, DirectiveError> {
    let kind_len = s
        .find(|c: char| c.is_whitespace() || c == ']')
        .unwrap_or(s.len());
    let kind = &s[..kind_len];
    if kind == "tool" || kind == "tool_whole" {
        return parse_tool(s, kind_len, kind == "tool_whole", out);
    }
    let close = s[kind_len..]
        .find(CLOSE)
        .ok_or_else(|| DirectiveError(format!("`{kind}` is missing its closing ]]")))?;
    let args_str = s[kind_len..kind_len + close].trim();
    let consumed = kind_len + close + CLOSE.len();
    let args: Vec<&str> = args_str.split_whitespace().collect();
    match kind {
        "error" => {
            let (positional, opts) = split_opts(&args);
            let [status] = positional.as_slice() else {
                return Err(DirectiveError(
                    "usage: error STATUS [retry_after=N] [retry_after_ms=N] [type=T]".into(),
                ));
            };
            out.error = Some(error_directive(status, &opts)?);
        }
        "fail_first" => {
            let (positional, opts) = split_opts(&args);
            let [count, status, key] = positional.as_slice() else {
                return Err(DirectiveError(
                    "usage: fail_first N STATUS KEY [retry_after=N] [retry_after_ms=N] [type=T]"
                        .into(),
                ));
            };
            out.fail_first = Some(FailFirst {
                count: number(count, "fail_first N")?,
                key: (*key).to_owned(),
                error: error_directive(status, &opts)?,
            });
        }
        "key_error" => {
            let (positional, opts) = split_opts(&args);
            let [key, status] = positional.as_slice() else {
                return Err(DirectiveError(
                    "usage: key_error KEY STATUS [retry_after=N] [retry_after_ms=N] [type=T]"
                        .into(),
                ));
            };
            // A second one for the same key would silently lose to the first.
            if out.key_errors.iter().any(|k| k.key == *key) {
                return Err(DirectiveError(format!("key_error {key} given twice")));
            }
            out.key_errors.push(KeyError {
                key: (*key).to_owned(),
                error: error_directive(status, &opts)?,
            });
        }
        "delay" => out.delay = Some(Duration::from_millis(single_number(&args, "delay MS")?)),
        "stall" => out.stall = Some(Duration::from_millis(single_number(&args, "stall MS")?)),
        "cached" => out.cached = Some(single_number(&args, "cached N")?),
        "words" => {
            let n = single_number(&args, "words N")?;
            out.words = Some(usize::try_from(n).map_err(|_| DirectiveError("words N".into()))?);
        }
        "hold_open" => {
            out.hold_open = Some(Duration::from_millis(single_number(&args, "hold_open MS")?));
        }
        "huge" => {
            let mib = single_number(&args, "huge N")?;
            if mib == 0 {
                return Err(DirectiveError("huge N: N must be at least 1".into()));
            }
            out.huge = Some(mib);
        }
        "cut" | "stream_error" | "garbage" | "gzip" | "hangup" => {
            if !args.is_empty() {
                return Err(DirectiveError(format!("`{kind}` takes no arguments")));
            }
            match kind {
                "cut" => out.cut = true,
                "stream_error" => out.stream_error = true,
                "garbage" => out.garbage = true,
                "gzip" => out.gzip = true,
                _ => out.connection = Some(ConnectionFault::Hangup),
            }
        }
        "status" => out.connection = Some(status_fault(&args)?),
        "close_idle" => {
            let ms = single_number(&args, "close_idle MS")?;
            out.connection = Some(ConnectionFault::CloseIdle(Duration::from_millis(ms)));
        }
        "body" => {
            out.body = Some(match args.as_slice() {
                ["html"] => BodyFault::Html,
                ["truncated"] => BodyFault::Truncated,
                ["json"] => BodyFault::Json,
                ["sse"] => BodyFault::Sse,
                ["no_content"] => BodyFault::NoContent,
                ["no_data"] => BodyFault::NoData,
                _ => {
                    return Err(DirectiveError(
                        "usage: body html|truncated|json|sse|no_content|no_data".into(),
                    ));
                }
            });
        }
        "eof" => {
            out.eof = Some(match args.as_slice() {
                ["after_content"] => EarlyEof::AfterContent,
                ["after_finish"] => EarlyEof::AfterFinish,
                _ => {
                    return Err(DirectiveError(
                        "usage: eof after_content|after_finish".into(),
                    ));
                }
            });
        }
        "finish" => {
            let [reason] = args.as_slice() else {
                return Err(DirectiveError("usage: finish REASON".into()));
            };
            out.finish = Some((*reason).to_owned());
        }
        "reasoning" => out.reasoning = Some(non_empty(args_str, "reasoning TEXT")?),
        "text" => out.text = Some(non_empty(args_str, "text TEXT")?),
        other => return Err(DirectiveError(format!("unknown directive `{other}`"))),
    }
    Ok(consumed)
}

fn parse_tool(
    s: &str,
    kind_len: usize,
    whole: bool,
    out: &mut Directives,
) -> Result<usize, DirectiveError> {
    let usage = || DirectiveError("usage: tool NAME [{json object}]".into());
    let after_kind = &s[kind_len..];
    let name_start = kind_len + (after_kind.len() - after_kind.trim_start().len());
    let name_rest = &s[name_start..];
    let name_len = name_rest
        .find(|c: char| c.is_whitespace() || c == ']' || c == '{')
        .unwrap_or(name_rest.len());
    if name_len == 0 {
        return Err(usage());
    }
    let name = &name_rest[..name_len];
    let mut pos = name_start + name_len;
    let rest = &s[pos..];
    pos += rest.len() - rest.trim_start().len();
    let input = if s[pos..].starts_with(CLOSE) {
        Value::Object(serde_json::Map::new())
    } else {
        let mut stream = serde_json::Deserializer::from_str(&s[pos..]).into_iter::<Value>();
        let value = match stream.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(DirectiveError(format!("tool {name}: bad JSON: {e}"))),
            None => return Err(usage()),
        };
        if !value.is_object() {
            return Err(DirectiveError(format!(
                "tool {name}: input must be a JSON object"
            )));
        }
        pos += stream.byte_offset();
        let rest = &s[pos..];
        pos += rest.len() - rest.trim_start().len();
        value
    };
    if !s[pos..].starts_with(CLOSE) {
        return Err(DirectiveError(format!(
            "tool {name}: expected ]] after the input"
        )));
    }
    out.tools.push(ToolDirective {
        name: name.to_owned(),
        input,
        whole,
    });
    Ok(pos + CLOSE.len())
}

fn split_opts<'a>(args: &[&'a str]) -> (Vec<&'a str>, Vec<(&'a str, &'a str)>) {
    let mut positional = Vec::new();
    let mut opts = Vec::new();
    for arg in args {
        match arg.split_once('=') {
            Some((k, v)) => opts.push((k, v)),
            None => positional.push(*arg),
        }
    }
    (positional, opts)
}

fn error_directive(status: &str, opts: &[(&str, &str)]) -> Result<ErrorDirective, DirectiveError> {
    let status = number(status, "STATUS")?;
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (400..=599).contains(s))
        .ok_or_else(|| DirectiveError(format!("status {status} must be 400..=599")))?;
    let mut error = ErrorDirective {
        status,
        retry_after: None,
        retry_after_ms: None,
        error_type: None,
    };
    for (k, v) in opts {
        match *k {
            "retry_after" => error.retry_after = Some(number(v, "retry_after=N")?),
            "retry_after_ms" => error.retry_after_ms = Some(number(v, "retry_after_ms=N")?),
            "type" => error.error_type = Some((*v).to_owned()),
            other => return Err(DirectiveError(format!("unknown option `{other}`"))),
        }
    }
    Ok(error)
}

fn status_fault(args: &[&str]) -> Result<ConnectionFault, DirectiveError> {
    let (positional, opts) = split_opts(args);
    let [code] = positional.as_slice() else {
        return Err(DirectiveError("usage: status CODE [location=URL]".into()));
    };
    let code = number(code, "status CODE")?;
    let code = u16::try_from(code)
        .ok()
        .filter(|c| (100..=999).contains(c))
        .ok_or_else(|| DirectiveError(format!("status {code} must be 100..=999")))?;
    let mut location = None;
    for (k, v) in opts {
        match k {
            "location" => location = Some(v.to_owned()),
            other => return Err(DirectiveError(format!("unknown option `{other}`"))),
        }
    }
    Ok(ConnectionFault::Status { code, location })
}

fn number(s: &str, what: &str) -> Result<u64, DirectiveError> {
    s.parse()
        .map_err(|_| DirectiveError(format!("{what}: `{s}` is not a number")))
}

fn single_number(args: &[&str], usage: &str) -> Result<u64, DirectiveError> {
    match args {
        [n] => number(n, usage),
        _ => Err(DirectiveError(format!("usage: {usage}"))),
    }
}

fn non_empty(s: &str, usage: &str) -> Result<String, DirectiveError> {
    if s.is_empty() {
        Err(DirectiveError(format!("usage: {usage}")))
    } else {
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_text_has_no_directives() {
        let (d, text) = parse("  hello world \n").unwrap();
        assert_eq!(d, Directives::default());
        assert_eq!(text, "hello world");
    }

    #[test]
    fn directives_are_removed_and_text_trimmed() {
        let (d, text) =
            parse("[[mock:delay 250]] hello [[mock:cut]] world [[mock:stall 10]]").unwrap();
        assert_eq!(d.delay, Some(Duration::from_millis(250)));
        assert!(d.cut);
        assert_eq!(d.stall, Some(Duration::from_millis(10)));
        assert_eq!(text, "hello  world");
    }

    #[test]
    fn tool_directives_in_order_with_nested_brackets() {
        let (d, text) = parse(
            r#"go [[mock:tool get_weather {"city":"Paris","xs":[[1],[2]]}]][[mock:tool_whole  now ]] [[mock:tool t2{"a":"]]"} ]]"#,
        )
        .unwrap();
        assert_eq!(text, "go");
        assert_eq!(d.tools.len(), 3);
        assert_eq!(d.tools[0].name, "get_weather");
        assert_eq!(d.tools[0].input, json!({"city":"Paris","xs":[[1],[2]]}));
        assert!(!d.tools[0].whole);
        assert_eq!(d.tools[1].name, "now");
        assert_eq!(d.tools[1].input, json!({}));
        assert!(d.tools[1].whole);
        assert_eq!(d.tools[2].name, "t2");
        assert_eq!(d.tools[2].input, json!({"a":"]]"}));
    }

    #[test]
    fn errors_and_fail_first() {
        let (d, _) = parse("[[mock:error 429 retry_after=3 type=rate_limit_error]]").unwrap();
        assert_eq!(
            d.error,
            Some(ErrorDirective {
                status: 429,
                retry_after: Some(3),
                retry_after_ms: None,
                error_type: Some("rate_limit_error".into())
            })
        );
        let (d, _) = parse("x [[mock:fail_first 2 529 k-1]]").unwrap();
        let ff = d.fail_first.unwrap();
        assert_eq!(ff.count, 2);
        assert_eq!(ff.key, "k-1");
        assert_eq!(ff.error.status, 529);
        assert_eq!(ff.error.retry_after, None);
        let (d, _) = parse("[[mock:fail_first 1 503 k-2 retry_after_ms=1500]]").unwrap();
        assert_eq!(d.fail_first.unwrap().error.retry_after_ms, Some(1500));
        assert!(parse("[[mock:error 503 retry_after_ms=soon]]").is_err());
    }

    #[test]
    fn key_errors_one_per_key() {
        let (d, text) = parse(
            "hi [[mock:key_error sk-a 429 retry_after=2]] [[mock:key_error sk-b 401 type=auth]]",
        )
        .unwrap();
        assert_eq!(text, "hi");
        assert_eq!(
            d.key_errors,
            vec![
                KeyError {
                    key: "sk-a".into(),
                    error: ErrorDirective {
                        status: 429,
                        retry_after: Some(2),
                        retry_after_ms: None,
                        error_type: None,
                    },
                },
                KeyError {
                    key: "sk-b".into(),
                    error: ErrorDirective {
                        status: 401,
                        retry_after: None,
                        retry_after_ms: None,
                        error_type: Some("auth".into()),
                    },
                },
            ]
        );
    }

    #[test]
    fn text_valued_directives() {
        let (d, text) = parse(
            "[[mock:reasoning Let me think: a [b] c]] q [[mock:finish length]] [[mock:cached 5]] [[mock:stream_error]] [[mock:text exact reply]] [[mock:words 7]]",
        )
        .unwrap();
        assert_eq!(d.reasoning.as_deref(), Some("Let me think: a [b] c"));
        assert_eq!(d.finish.as_deref(), Some("length"));
        assert_eq!(d.cached, Some(5));
        assert!(d.stream_error);
        assert_eq!(d.text.as_deref(), Some("exact reply"));
        assert_eq!(d.words, Some(7));
        assert_eq!(text, "q");
    }

    #[test]
    fn stream_fault_directives() {
        let (d, text) =
            parse("x [[mock:garbage]] [[mock:eof after_finish]] [[mock:hold_open 40]]").unwrap();
        assert!(d.garbage);
        assert_eq!(d.eof, Some(EarlyEof::AfterFinish));
        assert_eq!(d.hold_open, Some(Duration::from_millis(40)));
        assert_eq!(text, "x");
        let (d, _) = parse("[[mock:eof after_content]]").unwrap();
        assert_eq!(d.eof, Some(EarlyEof::AfterContent));
        for (arg, kind) in [
            ("html", BodyFault::Html),
            ("truncated", BodyFault::Truncated),
            ("json", BodyFault::Json),
            ("sse", BodyFault::Sse),
            ("no_content", BodyFault::NoContent),
            ("no_data", BodyFault::NoData),
        ] {
            let (d, _) = parse(&format!("[[mock:body {arg}]]")).unwrap();
            assert_eq!(d.body, Some(kind));
        }
        let (d, _) = parse("[[mock:huge 3]] [[mock:gzip]]").unwrap();
        assert_eq!(d.huge, Some(3));
        assert!(d.gzip);
    }

    #[test]
    fn connection_fault_directives() {
        let (d, _) = parse("[[mock:status 302 location=http://127.0.0.1:9/x?a=b]]").unwrap();
        assert_eq!(
            d.connection,
            Some(ConnectionFault::Status {
                code: 302,
                location: Some("http://127.0.0.1:9/x?a=b".into())
            })
        );
        let (d, _) = parse("[[mock:status 600]]").unwrap();
        assert_eq!(
            d.connection,
            Some(ConnectionFault::Status {
                code: 600,
                location: None
            })
        );
        let (d, _) = parse("[[mock:close_idle 50]]").unwrap();
        assert_eq!(
            d.connection,
            Some(ConnectionFault::CloseIdle(Duration::from_millis(50)))
        );
        let (d, _) = parse("[[mock:hangup]]").unwrap();
        assert_eq!(d.connection, Some(ConnectionFault::Hangup));
    }

    #[test]
    fn malformed_directives_are_errors() {
        for bad in [
            "[[mock:nope]]",
            "[[mock:delay]]",
            "[[mock:delay abc]]",
            "[[mock:error 200]]",
            "[[mock:error 500 colour=red]]",
            "[[mock:fail_first 1 500]]",
            "[[mock:key_error 429]]",
            "[[mock:key_error k 200]]",
            "[[mock:key_error k 429 extra]]",
            "[[mock:key_error k 429 wait=1]]",
            "[[mock:key_error k 429]] [[mock:key_error k 401]]",
            "[[mock:tool]]",
            "[[mock:tool f {bad json}]]",
            "[[mock:tool f [1]]]",
            "[[mock:tool f {} extra]]",
            "[[mock:cut now]]",
            "[[mock:delay 5",
            "[[mock:finish]]",
            "[[mock:reasoning ]]",
            "[[mock:garbage 3]]",
            "[[mock:eof]]",
            "[[mock:eof soon]]",
            "[[mock:hold_open]]",
            "[[mock:body]]",
            "[[mock:body xml]]",
            "[[mock:huge]]",
            "[[mock:huge 0]]",
            "[[mock:gzip 9]]",
            "[[mock:status]]",
            "[[mock:status 99]]",
            "[[mock:status 1000]]",
            "[[mock:status 302 where=x]]",
            "[[mock:close_idle]]",
            "[[mock:hangup now]]",
        ] {
            assert!(parse(bad).is_err(), "{bad} should not parse");
        }
    }
}
