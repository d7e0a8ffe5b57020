//! The web UI: hand-written HTML, CSS and ES modules from `crates/heimdall-server/ui/`, built
//! into the binary, served at `/ui/` (and `/` sends there). There is no build step: what is in
//! the folder is what the browser runs, so `cargo run` on a fresh clone serves the UI.
//!
//! Everything the UI shows comes from the admin API (`crate::openapi`), which alone holds
//! data; the assets themselves are public (they hold nothing but code), so they are served
//! without `client.admin_auth`, and the pages send a browser that the API refuses to the
//! login page (`session`).
//!
//! Every answer carries a strict content security policy: scripts, styles and requests only to
//! this origin, no inline script or style, no framing.

pub mod session;
pub mod timeseries;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::App;

/// Only this origin for everything; no inline code (so an injected string cannot run), no
/// plugins, no `<base>` rewriting, no framing (clickjacking). Charts are SVG built through the
/// DOM, which this allows.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// A hash of the contents, computed at compile time: a new binary with changed assets
    /// gives new tags, so a revalidating browser never keeps stale code.
    etag: &'static str,
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../ui/", $path)),
            etag: {
                const BODY: &[u8] = include_bytes!(concat!("../ui/", $path));
                const TAG: [u8; 18] = etag_of(BODY);
                // Hex digits and quotes only: valid UTF-8 by construction.
                match std::str::from_utf8(&TAG) {
                    Ok(s) => s,
                    Err(_) => "\"0\"",
                }
            },
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("charts.js", JS),
    asset!("dom.js", JS),
    asset!("pages/dashboard.js", JS),
    asset!("pages/logs.js", JS),
    asset!("pages/providers.js", JS),
    asset!("pages/keys.js", JS),
    asset!("pages/settings.js", JS),
    asset!("pages/cache.js", JS),
    asset!("pages/login.js", JS),
];

/// `"` + 16 hex digits of the FNV-1a hash + `"`: not a cryptographic hash, only a cache tag.
const fn etag_of(body: &[u8]) -> [u8; 18] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < body.len() {
        hash ^= body[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    let digits = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut d = 0;
    while d < 16 {
        out[1 + d] = digits[((hash >> (60 - 4 * d)) & 0xf) as usize];
        d += 1;
    }
    out
}

/// `/` and `/ui` send to `/ui/`; `/ui/…` serves the assets.
pub fn router() -> Router<App> {
    Router::new()
        .route("/", get(to_ui))
        .route("/ui", get(to_ui))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(asset))
}

async fn to_ui() -> Response {
    with_policy(Redirect::to("/ui/").into_response())
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        let res = (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file in the web UI\n",
        );
        return with_policy(res.into_response());
    };
    let etag = HeaderValue::from_static(asset.etag);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = Response::new(Body::from(asset.body));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        res
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, etag);
    // Revalidated on every load (a cheap 304): the files' names do not change between
    // versions, so a cached copy must never outlive the binary that served it.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_policy(res)
}

/// The security headers of every UI answer.
fn with_policy(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_with_a_distinct_tag() {
        let mut tags: Vec<_> = ASSETS.iter().map(|a| a.etag).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.path);
            assert_eq!(a.etag.len(), 18, "{}", a.path);
        }
    }

    /// Each module the pages import is served: a missing one would only show in a browser.
    #[test]
    fn every_imported_module_is_served() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap_or_default();
            let dir = a.path.rsplit_once('/').map_or("", |(d, _)| d);
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['\'', '"']).nth(1) else {
                    continue;
                };
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(
                    ASSETS.iter().any(|x| x.path == target),
                    "{} imports {spec} ({target}), which is not embedded",
                    a.path
                );
            }
        }
    }
}
