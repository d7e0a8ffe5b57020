//! Images and documents given by URL, fetched and inlined for upstreams that take bytes only
//! (their codec says which, see `UpstreamCodec::inline_media`). Runs on the translated path
//! between decoding and encoding, only when the request holds such URLs.
//!
//! A client picks the URL, so the fetch is kept from becoming a way into the gateway's own
//! network: http(s) only; every address a name resolves to is checked, and the connection
//! goes only to a checked one (the resolver filters, so a second lookup cannot answer
//! differently); IP literals and every redirect hop are checked the same way; size and time
//! are bounded. Its own client sends no provider key and no client header.

mod address;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use futures_util::{StreamExt, stream};
use heimdall_protocol::canonical::{InlineMedia, MediaKind, Request, Source};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::MediaFetchConfig;
use crate::error::GatewayError;

/// Fetches of one request in flight at once.
const CONCURRENT_FETCHES: usize = 4;

/// The image types every provider that takes bytes accepts (Anthropic's list).
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
const PDF: &str = "application/pdf";
const TEXT: &str = "text/plain";

pub(crate) struct MediaFetcher {
    http: reqwest::Client,
    rules: Arc<Rules>,
    config: MediaFetchConfig,
}

impl MediaFetcher {
    pub(crate) fn new(config: &MediaFetchConfig) -> Result<Self, reqwest::Error> {
        heimdall_providers::install_tls_crypto();
        let rules = Arc::new(Rules {
            allow_private: config.allow_private_addresses,
            private_hosts: config.allowed_private_hosts.clone(),
        });
        let hops = Arc::clone(&rules);
        let max_redirects = config.max_redirects;
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver(Arc::clone(&rules))))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                // `previous` holds the URLs already requested, the first one included.
                if attempt.previous().len() > max_redirects {
                    return attempt.error(Refusal::TooManyRedirects(max_redirects));
                }
                match hops.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refusal) => attempt.error(refusal),
                }
            }))
            // A proxy would resolve the name itself, past the address check.
            .no_proxy()
            // Sizes are those of the bytes the provider will get, and no compressed bomb
            // expands behind the limit.
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .connect_timeout(config.timeout)
            .user_agent(concat!("heimdall/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            rules,
            config: config.clone(),
        })
    }

    /// Replaces the URL sources of the kinds in `which` by the fetched bytes. The first
    /// failure fails the request with the block's path; the other fetches are dropped.
    pub(crate) async fn inline(
        &self,
        request: &mut Request,
        which: InlineMedia,
    ) -> Result<(), GatewayError> {
        if !self.config.enabled {
            // The encoder refuses the URLs with its own message.
            return Ok(());
        }
        let mut found = request.url_media_mut(which);
        if found.is_empty() {
            return Ok(());
        }
        let max = self.config.max_objects_per_request;
        if let Some(extra) = found.get(max) {
            return Err(GatewayError::invalid_request(format!(
                "{}: more than {max} images and documents given by URL in one request (media_fetch.max_objects_per_request)",
                extra.path
            )));
        }
        let fetched = AtomicUsize::new(0);
        let jobs: Vec<_> = found
            .iter()
            .enumerate()
            .map(|(i, m)| (i, m.url().to_owned(), m.kind))
            .collect();
        let fetched = &fetched;
        let mut fetches = stream::iter(jobs)
            .map(|(i, url, kind)| async move {
                let result = self.fetch(&url, kind, fetched).await;
                (i, url, result)
            })
            .buffer_unordered(CONCURRENT_FETCHES);
        while let Some((i, url, result)) = fetches.next().await {
            match result {
                Ok(source) => *found[i].source = source,
                Err(e) => {
                    return Err(GatewayError::invalid_request(format!(
                        "{}.source: {}: {e}",
                        found[i].path,
                        shown(&url)
                    )));
                }
            }
        }
        Ok(())
    }

    /// One object, within the time limit. `fetched` counts the bytes of the whole request.
    async fn fetch(
        &self,
        url: &str,
        kind: MediaKind,
        fetched: &AtomicUsize,
    ) -> Result<Source, FetchError> {
        let url = Url::parse(url).map_err(|_| FetchError::InvalidUrl)?;
        self.rules.check_url(&url)?;
        let limit = self.config.timeout;
        tokio::time::timeout(limit, self.download(url, kind, fetched))
            .await
            .map_err(|_| FetchError::Timeout(limit.as_secs()))?
    }

    async fn download(
        &self,
        url: Url,
        kind: MediaKind,
        fetched: &AtomicUsize,
    ) -> Result<Source, FetchError> {
        let accept = match kind {
            MediaKind::Image => "image/jpeg, image/png, image/gif, image/webp",
            MediaKind::Document => "application/pdf, text/plain",
        };
        let mut response = self
            .http
            .get(url)
            .header(http::header::ACCEPT, accept)
            .send()
            .await
            .map_err(FetchError::from_reqwest)?;
        let status = response.status();
        if status.is_redirection() {
            // A redirect reqwest could not follow: a location that is not an http(s) URL.
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| response.url().join(v).ok());
            return Err(match location {
                Some(to) if !matches!(to.scheme(), "http" | "https") => {
                    Refusal::Scheme(to.scheme().to_owned()).into()
                }
                _ => FetchError::Status(status.as_u16()),
            });
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let declared = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(essence);
        // A declared type that can never do is refused before any byte of the body is read.
        if let Some(declared) = &declared
            && !(is_generic(declared) || accepted(kind, declared))
        {
            return Err(FetchError::ContentType {
                kind,
                got: declared.clone(),
            });
        }
        let max = self.config.max_object_bytes;
        let declared_len = response.content_length().unwrap_or(0);
        if declared_len > max as u64 {
            return Err(FetchError::TooLarge { limit: max });
        }
        let mut body = Vec::with_capacity(declared_len as usize);
        while let Some(chunk) = response.chunk().await.map_err(FetchError::from_reqwest)? {
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge { limit: max });
            }
            let total = fetched.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
            if total > self.config.max_request_bytes {
                return Err(FetchError::RequestTooLarge {
                    limit: self.config.max_request_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        source(kind, declared.as_deref(), body)
    }
}

/// The fetched bytes as a source the encoders take. The bytes' own signature wins over the
/// declared type: servers mislabel images, and providers refuse a type that does not match.
fn source(kind: MediaKind, declared: Option<&str>, body: Vec<u8>) -> Result<Source, FetchError> {
    let sniffed = sniff(&body);
    let base64 = |media_type: &str, body: &[u8]| Source::Base64 {
        media_type: media_type.to_owned(),
        data: base64::engine::general_purpose::STANDARD.encode(body),
    };
    let refused = || FetchError::ContentType {
        kind,
        got: declared.unwrap_or("none").to_owned(),
    };
    match kind {
        MediaKind::Image => {
            let media_type = sniffed
                .filter(|t| IMAGE_TYPES.contains(t))
                .or(declared.filter(|t| IMAGE_TYPES.contains(t)))
                .ok_or_else(refused)?;
            Ok(base64(media_type, &body))
        }
        MediaKind::Document if sniffed == Some(PDF) || declared == Some(PDF) => {
            Ok(base64(PDF, &body))
        }
        MediaKind::Document if declared == Some(TEXT) => {
            let data = String::from_utf8(body).map_err(|_| FetchError::NotUtf8)?;
            Ok(Source::Text {
                media_type: Some(TEXT.to_owned()),
                data,
            })
        }
        MediaKind::Document => Err(refused()),
    }
}

/// The media type a file's first bytes show, for the types fetched here.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.starts_with(b"%PDF-") {
        Some(PDF)
    } else {
        None
    }
}

/// `Image/PNG; charset=x` → `image/png`; the common misspelling `image/jpg` → `image/jpeg`.
fn essence(content_type: &str) -> String {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "image/jpg" {
        "image/jpeg".to_owned()
    } else {
        essence
    }
}

/// Says nothing about the content; the bytes decide.
fn is_generic(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/octet-stream" | "binary/octet-stream" | ""
    )
}

fn accepted(kind: MediaKind, media_type: &str) -> bool {
    match kind {
        MediaKind::Image => IMAGE_TYPES.contains(&media_type),
        MediaKind::Document => media_type == PDF || media_type == TEXT,
    }
}

/// A URL as error messages show it: without credentials, query or fragment (signed URLs
/// carry their secrets there; messages are logged), and not unbounded.
fn shown(url: &str) -> String {
    const MAX_CHARS: usize = 200;
    let Ok(mut url) = Url::parse(url) else {
        return "the URL".to_owned();
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let text = url.as_str();
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Which hosts and addresses a fetch may reach; applied to the first URL, to every redirect
/// hop and to every address a name resolves to.
struct Rules {
    allow_private: bool,
    /// Lowercase, without brackets or a trailing dot.
    private_hosts: Vec<String>,
}

impl Rules {
    fn private_allowed(&self, host: &str) -> bool {
        let host = bare_host(host);
        self.allow_private
            || self
                .private_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
    }

    /// The scheme, and the address of an IP-literal host (names are checked when resolved).
    fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Scheme(url.scheme().to_owned()));
        }
        let Some(host) = url.host_str() else {
            return Err(Refusal::NoHost);
        };
        if let Ok(ip) = bare_host(host).parse::<IpAddr>() {
            self.check_address(host, ip, false)?;
        }
        Ok(())
    }

    /// `resolved`: `ip` is what the name `host` resolved to (else `host` is `ip` written out).
    fn check_address(&self, host: &str, ip: IpAddr, resolved: bool) -> Result<(), Refusal> {
        match address::non_public(ip) {
            Some(why) if !self.private_allowed(host) => Err(Refusal::Address {
                name: resolved.then(|| bare_host(host).to_owned()),
                ip,
                why,
            }),
            _ => Ok(()),
        }
    }
}

/// `[::1]` → `::1`, `example.com.` → `example.com`.
fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
}

/// Resolves names like the system does, then keeps only the addresses the rules allow: the
/// connection can only go to an address that was checked.
struct CheckedResolver(Arc<Rules>);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rules = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let mut refused = None;
            let allowed: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| match rules.check_address(&host, addr.ip(), true) {
                    Ok(()) => true,
                    Err(refusal) => {
                        refused.get_or_insert(refusal);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(refused.unwrap_or(Refusal::NoAddress(host)).into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// A URL or address the rules do not allow.
#[derive(Debug, Clone, thiserror::Error)]
enum Refusal {
    #[error("only http and https URLs are fetched, not `{0}:`")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("`{0}` has no address")]
    NoAddress(String),
    #[error(
        "{} not a public address ({why}); such addresses are not fetched unless media_fetch allows them",
        match name { Some(name) => format!("`{name}` resolves to {ip},"), None => format!("{ip} is") }
    )]
    Address {
        /// The name that resolved to `ip`; `None` when the URL gave the address itself.
        name: Option<String>,
        ip: IpAddr,
        why: &'static str,
    },
    #[error("more than {0} redirects (media_fetch.max_redirects)")]
    TooManyRedirects(usize),
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("not a valid URL")]
    InvalidUrl,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("no complete answer within {0} s (media_fetch.timeout_seconds)")]
    Timeout(u64),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("larger than {} (media_fetch.max_object_size_mb)", mib(*limit))]
    TooLarge { limit: usize },
    #[error(
        "the media of this request together are larger than {} (media_fetch.max_request_size_mb)",
        mib(*limit)
    )]
    RequestTooLarge { limit: usize },
    #[error("{}", content_type_message(*kind, got))]
    ContentType { kind: MediaKind, got: String },
    #[error("the text/plain document is not UTF-8")]
    NotUtf8,
    #[error("the download failed: {0}")]
    Transport(String),
}

impl FetchError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cause {
            if let Some(refusal) = err.downcast_ref::<Refusal>() {
                return Self::Refused(refusal.clone());
            }
            cause = err.source();
        }
        Self::Transport(heimdall_providers::error_chain(&e.without_url()))
    }
}

fn content_type_message(kind: MediaKind, got: &str) -> String {
    match kind {
        MediaKind::Image => format!(
            "content-type `{got}` is not an image type providers take (image/jpeg, image/png, image/gif, image/webp)"
        ),
        MediaKind::Document => format!(
            "content-type `{got}` is not a document type providers take (application/pdf, text/plain)"
        ),
    }
}

fn mib(bytes: usize) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow_private: bool, private_hosts: &[&str]) -> Rules {
        Rules {
            allow_private,
            private_hosts: private_hosts.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    fn check(r: &Rules, url: &str) -> Result<(), String> {
        r.check_url(&Url::parse(url).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn urls_are_checked_for_scheme_and_literal_addresses() {
        let strict = rules(false, &[]);
        assert!(check(&strict, "https://example.com/a.png").is_ok());
        assert!(check(&strict, "http://8.8.8.8/a.png").is_ok());
        for (url, want) in [
            ("file:///etc/passwd", "not `file:`"),
            ("ftp://example.com/a.png", "not `ftp:`"),
            ("gopher://example.com/", "not `gopher:`"),
            (
                "http://127.0.0.1:8080/a.png",
                "127.0.0.1 is not a public address (loopback)",
            ),
            (
                "http://[::1]/a.png",
                "::1 is not a public address (loopback)",
            ),
            ("http://[::ffff:10.0.0.1]/", "(private)"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            // The URL parser normalises other spellings of an IPv4 address.
            (
                "http://2130706433/",
                "127.0.0.1 is not a public address (loopback)",
            ),
            (
                "http://0x7f.1/",
                "127.0.0.1 is not a public address (loopback)",
            ),
            ("http://0/", "0.0.0.0 is not a public address (unspecified"),
        ] {
            let got = check(&strict, url).unwrap_err();
            assert!(got.contains(want), "{url}: {got}");
        }
        assert!(check(&rules(true, &[]), "http://127.0.0.1/a.png").is_ok());
        let one = rules(false, &["127.0.0.1", "images.internal"]);
        assert!(check(&one, "http://127.0.0.1:9/a.png").is_ok());
        assert!(check(&one, "http://127.0.0.2/a.png").is_err());
        assert!(check(&one, "file:///a.png").is_err());
        let private = [10, 0, 0, 1].into();
        assert!(one.check_address("Images.Internal.", private, true).is_ok());
        let err = one
            .check_address("other.internal", private, true)
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "`other.internal` resolves to 10.0.0.1, not a public address (private)"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_resolver_keeps_only_allowed_addresses() {
        let strict = CheckedResolver(Arc::new(rules(false, &[])));
        let err = strict
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("`localhost` resolves to"), "{err}");
        let open = CheckedResolver(Arc::new(rules(false, &["localhost"])));
        let addrs: Vec<_> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[test]
    fn the_bytes_decide_the_media_type() {
        let png = b"\x89PNG\r\n\x1a\n rest".to_vec();
        let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
        let media_type = |s: Source| match s {
            Source::Base64 { media_type, .. } => media_type,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            media_type(source(MediaKind::Image, Some("image/jpeg"), png.clone()).unwrap()),
            "image/png"
        );
        assert_eq!(
            media_type(source(MediaKind::Image, None, jpeg).unwrap()),
            "image/jpeg"
        );
        assert_eq!(
            media_type(source(MediaKind::Image, Some("image/webp"), b"??".to_vec()).unwrap()),
            "image/webp"
        );
        let err = source(
            MediaKind::Image,
            Some("application/octet-stream"),
            b"<html>".to_vec(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`application/octet-stream`"),
            "{err}"
        );
        assert_eq!(
            media_type(source(MediaKind::Document, None, b"%PDF-1.7".to_vec()).unwrap()),
            PDF
        );
        assert_eq!(
            source(MediaKind::Document, Some(TEXT), b"hello".to_vec()).unwrap(),
            Source::Text {
                media_type: Some(TEXT.to_owned()),
                data: "hello".to_owned()
            }
        );
        assert!(matches!(
            source(MediaKind::Document, Some(TEXT), vec![0xFF, 0xFE]),
            Err(FetchError::NotUtf8)
        ));
        assert!(source(MediaKind::Document, Some("text/html"), b"x".to_vec()).is_err());
    }

    #[test]
    fn shown_urls_leave_out_credentials_and_queries() {
        assert_eq!(
            shown("https://user:pw@example.com/a.png?X-Amz-Signature=s#f"),
            "https://example.com/a.png"
        );
        assert_eq!(shown("not a url"), "the URL");
        let long = format!("https://example.com/{}", "a".repeat(500));
        assert_eq!(shown(&long).chars().count(), 201);
        assert_eq!(essence("Image/JPG; q=1"), "image/jpeg");
    }
}
