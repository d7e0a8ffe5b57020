//! Browser sessions of the admin API: `POST /api/session` takes `client.admin_auth`'s
//! credentials (JSON or a form) and answers a cookie holding a random token, which the gate
//! (`crate::admin`) then accepts beside Basic and bearer credentials, on requests that carry
//! the UI's `x-heimdall-ui` header; `DELETE /api/session` ends it. A browser thus never keeps the credentials themselves, and a script cannot read
//! the token (`HttpOnly`) nor another site make the browser send it (`SameSite=Strict`).
//!
//! Sessions live in this process's memory only (a restart logs everyone out), at most
//! [`MAX_SESSIONS`] of them, each for [`LIFETIME`]. Each remembers a fingerprint of the
//! credentials it was opened with, so changing or removing `client.admin_auth` (a reload, the
//! admin API) ends every session opened before.
//!
//! Failed logins are limited ([`LoginLimiter`]): [`FAILURES_PER_CLIENT`] per client address
//! and [`FAILURES_IN_ALL`] from all addresses together within [`WINDOW`]; past either, logins
//! are answered 429 with `retry-after`, their credentials unchecked, until the window ends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use heimdall_core::config::AdminAuth;
use rand::Rng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::App;
use crate::api::{ApiError, ApiErrorKind, api_error};

pub const COOKIE: &str = "heimdall_session";
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
pub const MAX_SESSIONS: usize = 1024;
/// A login body is a few short strings.
const MAX_BODY: usize = 16 * 1024;
/// Failed logins one client address may make within [`WINDOW`].
pub const FAILURES_PER_CLIENT: u32 = 5;
/// Failed logins all addresses together may make within [`WINDOW`]: one address per guess
/// (a botnet, an IPv6 network) must not multiply the rate.
pub const FAILURES_IN_ALL: u32 = 100;
/// The window failures are counted in, from the first failure of a quiet spell.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Client addresses counted at once: the limiter's memory bound (a few hundred KB).
const MAX_CLIENTS: usize = 4096;

struct Session {
    expires: Instant,
    /// Of the `client.admin_auth` that opened it.
    credentials: String,
}

static SESSIONS: LazyLock<Mutex<HashMap<String, Session>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

static LOGINS: LazyLock<LoginLimiter> =
    LazyLock::new(|| LoginLimiter::new(FAILURES_PER_CLIENT, FAILURES_IN_ALL, WINDOW));

/// Failed logins in a fixed window that opens with the first of them.
struct Window {
    start: Instant,
    failures: u32,
}

impl Window {
    /// How long logins stay refused, if `limit` failures were reached in a window still open.
    fn refused_for(&self, now: Instant, window: Duration, limit: u32) -> Option<Duration> {
        let end = self.start + window;
        (self.failures >= limit && end > now).then(|| end - now)
    }

    /// Counts a failure (in a new window when the last one ended); answers the count.
    fn count(&mut self, now: Instant, window: Duration) -> u32 {
        if now >= self.start + window {
            *self = Window {
                start: now,
                failures: 0,
            };
        }
        self.failures = self.failures.saturating_add(1);
        self.failures
    }
}

/// The failed logins per client and in all. A client is its IP address (an IPv6 one by its
/// /64 network, which one host usually has whole); `None` when the connection's address is
/// not known, all such logins then counting as one client's.
pub struct LoginLimiter {
    per_client: u32,
    in_all: u32,
    window: Duration,
    tally: Mutex<Tally>,
}

struct Tally {
    all: Window,
    clients: HashMap<Option<IpAddr>, Window>,
}

impl LoginLimiter {
    pub fn new(per_client: u32, in_all: u32, window: Duration) -> Self {
        Self {
            per_client,
            in_all,
            window,
            tally: Mutex::new(Tally {
                all: Window {
                    start: Instant::now(),
                    failures: 0,
                },
                clients: HashMap::new(),
            }),
        }
    }

    /// A login by `client` at `now`: `Err(wait)` while it (or everyone) is over the limit,
    /// without calling `check`; otherwise what `check` (the credentials' comparison) says, a
    /// `false` counted. One lock around both, so that logins sent at once cannot all pass
    /// the limit before any of them is counted.
    pub fn attempt(
        &self,
        client: Option<IpAddr>,
        now: Instant,
        check: impl FnOnce() -> bool,
    ) -> Result<bool, Duration> {
        let client = client.map(network);
        // The counts stay meaningful whatever a panic elsewhere left them at.
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        let wait = [
            tally.all.refused_for(now, self.window, self.in_all),
            (tally.clients.get(&client))
                .and_then(|w| w.refused_for(now, self.window, self.per_client)),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        if check() {
            return Ok(true);
        }
        if tally.all.count(now, self.window) == self.in_all {
            tracing::warn!(
                failures = self.in_all,
                window_s = self.window.as_secs(),
                "admin login: too many failed logins from all addresses; every login is refused until the window ends"
            );
        }
        let window = self.window;
        if tally.clients.len() >= MAX_CLIENTS && !tally.clients.contains_key(&client) {
            tally.clients.retain(|_, w| now < w.start + window);
        }
        // Still full (more addresses failed within a window than are tracked): this one is
        // bounded by the count in all alone.
        if tally.clients.len() < MAX_CLIENTS || tally.clients.contains_key(&client) {
            let failures = tally
                .clients
                .entry(client)
                .or_insert(Window {
                    start: now,
                    failures: 0,
                })
                .count(now, window);
            if failures == self.per_client {
                let who = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
                tracing::warn!(
                    client = %who,
                    failures,
                    window_s = window.as_secs(),
                    "admin login: too many failed logins from one address; its logins are refused until the window ends"
                );
            }
        }
        Ok(false)
    }
}

/// The address a client is counted by: an IPv4 address, or an IPv6 address's /64 network.
fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// A digest of `auth` (not the secret itself): enough to tell that it changed.
fn fingerprint(auth: &AdminAuth) -> String {
    let text = match auth {
        AdminAuth::Basic { username, password } => {
            format!("basic\0{}\0{}", username.expose(), password.expose())
        }
        AdminAuth::Bearer { token } => format!("bearer\0{}", token.expose()),
    };
    heimdall_core::virtual_key_fingerprint(&text)
}

/// Whether the request's cookie names a live session opened with `auth`.
pub fn valid(auth: &AdminAuth, headers: &HeaderMap) -> bool {
    let Some(token) = cookie_token(headers) else {
        return false;
    };
    let Ok(mut sessions) = SESSIONS.lock() else {
        return false;
    };
    let now = Instant::now();
    match sessions.get(token) {
        Some(s) if s.expires > now => {
            bool::from(s.credentials.as_bytes().ct_eq(fingerprint(auth).as_bytes()))
        }
        Some(_) => {
            sessions.remove(token);
            false
        }
        None => false,
    }
}

/// The session token of the `Cookie` header(s), if any.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// Opens a session; the oldest goes when the table is full, so a flood of logins cannot grow
/// memory (it can only end others' sessions, and needs the credentials to do so).
fn open(auth: &AdminAuth) -> Option<String> {
    let mut rng = rand::rng();
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect();
    let mut sessions = SESSIONS.lock().ok()?;
    let now = Instant::now();
    if sessions.len() >= MAX_SESSIONS {
        sessions.retain(|_, s| s.expires > now);
    }
    if sessions.len() >= MAX_SESSIONS
        && let Some(oldest) = sessions
            .iter()
            .min_by_key(|(_, s)| s.expires)
            .map(|(k, _)| k.clone())
    {
        sessions.remove(&oldest);
    }
    sessions.insert(
        token.clone(),
        Session {
            expires: now + LIFETIME,
            credentials: fingerprint(auth),
        },
    );
    Some(token)
}

fn close(headers: &HeaderMap) {
    if let (Some(token), Ok(mut sessions)) = (cookie_token(headers), SESSIONS.lock()) {
        sessions.remove(token);
    }
}

/// The credentials of a login: `username` and `password` for `basic`, `token` for `bearer`.
#[derive(Deserialize, ToSchema, Default)]
pub struct Login {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// What a login opened.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// The admin API's scheme: `basic`, `bearer`, or `none` when `client.admin_auth` is not
    /// set (then no session is needed and none is opened).
    auth: String,
    /// Seconds the session lasts; 0 with `none`.
    expires_in: u64,
}

/// Logs in: checks the credentials and sets the session cookie.
///
/// Needs no other credentials (it is how a browser gets them). The body is JSON or an HTML
/// form (`application/x-www-form-urlencoded`).
#[utoipa::path(post, path = "/api/session", tag = "session", operation_id = "createSession",
    security(()),
    request_body(description = "`username` and `password` (basic) or `token` (bearer)",
        content(
            (Login = "application/json"),
            (Login = "application/x-www-form-urlencoded"),
        )),
    responses(
        (status = 200, description = "Logged in: `Set-Cookie` carries the session (HttpOnly, \
            SameSite=Strict); with no `client.admin_auth` nothing is set", body = SessionInfo),
        (status = 400, description = "The body is not a login", body = ApiError),
        (status = 415, description = "The body is neither JSON nor a form", body = ApiError),
        (status = 429, description = "Too many failed logins: 5 from this address, or 100 from \
            all, within a minute; logins are refused (not checked) until `retry-after` seconds \
            have passed", body = ApiError,
            headers(("retry-after" = u64, description = "Seconds until a login is taken again"))),
    ))]
pub async fn create(
    State(app): State<App>,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let login = match read_login(&headers, &body) {
        Ok(l) => l,
        Err(res) => return res,
    };
    let auth = app.gateway.config().admin_auth.clone();
    let Some(auth) = auth else {
        return Json(SessionInfo {
            auth: "none".to_owned(),
            expires_in: 0,
        })
        .into_response();
    };
    let client = connection.map(|Extension(ConnectInfo(addr))| addr.ip());
    match LOGINS.attempt(client, Instant::now(), || matches(&auth, &login)) {
        Ok(true) => {}
        Ok(false) => {
            return api_error(
                StatusCode::UNAUTHORIZED,
                ApiErrorKind::Authentication,
                "wrong credentials",
            );
        }
        Err(wait) => return too_many(wait),
    }
    let Some(token) = open(&auth) else {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiErrorKind::Api,
            "could not open a session",
        );
    };
    let scheme = match auth {
        AdminAuth::Basic { .. } => "basic",
        AdminAuth::Bearer { .. } => "bearer",
    };
    let mut res = Json(SessionInfo {
        auth: scheme.to_owned(),
        expires_in: LIFETIME.as_secs(),
    })
    .into_response();
    // The gateway speaks plain HTTP; behind a proxy that ends TLS the cookie must not go
    // out over plain HTTP later (the header only ever adds the restriction).
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The answer to a login refused by the limiter: `retry-after` in whole seconds, rounded up.
fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut res = api_error(
        StatusCode::TOO_MANY_REQUESTS,
        ApiErrorKind::RateLimit,
        &format!("too many failed logins; try again in {seconds} s"),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    res
}

/// Logs out: ends the cookie's session and clears the cookie.
#[utoipa::path(delete, path = "/api/session", tag = "session", operation_id = "deleteSession",
    responses((status = 204, description = "Logged out (also when there was no session)")))]
pub async fn delete(headers: HeaderMap) -> Response {
    close(&headers);
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("heimdall_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

/// The login in the body, or the answer refusing it.
#[allow(clippy::result_large_err)] // The error is the response itself.
fn read_login(headers: &HeaderMap, body: &[u8]) -> Result<Login, Response> {
    let bad = |m: &str| api_error(StatusCode::BAD_REQUEST, ApiErrorKind::InvalidRequest, m);
    if body.len() > MAX_BODY {
        return Err(bad("the login is too large"));
    }
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match kind.as_str() {
        "application/json" => serde_json::from_slice::<Login>(body)
            .map_err(|e| bad(&format!("the login is not valid JSON of its shape: {e}"))),
        "application/x-www-form-urlencoded" => {
            let text = std::str::from_utf8(body).map_err(|_| bad("the form is not UTF-8"))?;
            let mut login = Login::default();
            for pair in text.split('&').filter(|p| !p.is_empty()) {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let value = percent_decode(value).ok_or_else(|| bad("the form is malformed"))?;
                match percent_decode(name).as_deref() {
                    Some("username") => login.username = Some(value),
                    Some("password") => login.password = Some(value),
                    Some("token") => login.token = Some(value),
                    _ => {}
                }
            }
            Ok(login)
        }
        _ => Err(api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiErrorKind::InvalidRequest,
            "send the login as application/json or application/x-www-form-urlencoded",
        )),
    }
}

/// A form value: `+` is a space, `%XY` a byte; `None` when that is not UTF-8 or malformed.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Whether `login` carries `auth`'s credentials, compared in constant time (every part is
/// compared whatever the others gave, so the time does not tell which was wrong).
fn matches(auth: &AdminAuth, login: &Login) -> bool {
    let given = |v: &Option<String>| v.as_deref().unwrap_or_default().as_bytes().to_vec();
    match auth {
        AdminAuth::Basic { username, password } => {
            let user_ok = given(&login.username).ct_eq(username.expose().as_bytes());
            let pass_ok = given(&login.password).ct_eq(password.expose().as_bytes());
            (user_ok & pass_ok).into()
        }
        AdminAuth::Bearer { token } => given(&login.token).ct_eq(token.expose().as_bytes()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heimdall_core::config::Secret;

    fn headers(content_type: &str, cookie: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        if let Some(c) = cookie {
            h.insert(header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn reads_json_and_forms() {
        let json = read_login(
            &headers("application/json", None),
            br#"{"username":"admin","password":"p w"}"#,
        )
        .ok()
        .unwrap();
        assert_eq!(json.username.as_deref(), Some("admin"));
        let form = read_login(
            &headers("application/x-www-form-urlencoded; charset=utf-8", None),
            b"username=ad%6Din&password=p+w%21&other=1",
        )
        .ok()
        .unwrap();
        assert_eq!(form.username.as_deref(), Some("admin"));
        assert_eq!(form.password.as_deref(), Some("p w!"));
        assert!(read_login(&headers("text/plain", None), b"x").is_err());
        assert!(
            read_login(
                &headers("application/x-www-form-urlencoded", None),
                b"a=%zz"
            )
            .is_err()
        );
        assert!(read_login(&headers("application/json", None), b"[1]").is_err());
    }

    #[test]
    fn a_session_is_valid_until_the_credentials_change_or_it_ends() {
        let auth = AdminAuth::Bearer {
            token: Secret::new("tok"),
        };
        let login = |t: &str| Login {
            token: Some(t.to_owned()),
            ..Login::default()
        };
        assert!(matches(&auth, &login("tok")));
        assert!(!matches(&auth, &login("to")));
        assert!(!matches(&auth, &Login::default()));
        let token = open(&auth).unwrap();
        let cookie = format!("theme=dark; {COOKIE}={token}");
        let h = headers("text/plain", Some(&cookie));
        assert!(valid(&auth, &h));
        let other = AdminAuth::Bearer {
            token: Secret::new("new"),
        };
        assert!(!valid(&other, &h), "a changed credential ends the session");
        close(&h);
        assert!(!valid(&auth, &h));
        assert!(!valid(
            &auth,
            &headers("text/plain", Some("heimdall_session=nope"))
        ));
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn failed_logins_are_refused_per_address_until_the_window_ends() {
        let limiter = LoginLimiter::new(5, 100, WINDOW);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for i in 0..5 {
            assert_eq!(limiter.attempt(ip("192.0.2.1"), at(i), || false), Ok(false));
        }
        // Refused without looking at the credentials, the right ones included.
        let refused = limiter.attempt(ip("192.0.2.1"), at(10), || panic!("checked"));
        assert_eq!(refused, Err(Duration::from_secs(50)));
        assert_eq!(
            too_many(Duration::from_millis(50_001)).headers()[header::RETRY_AFTER],
            "51"
        );
        // Another address logs in.
        assert_eq!(limiter.attempt(ip("192.0.2.2"), at(10), || true), Ok(true));
        // After the window, the first address does too, and has its 5 failures again.
        assert_eq!(limiter.attempt(ip("192.0.2.1"), at(60), || true), Ok(true));
        for i in 0..5 {
            assert_eq!(
                limiter.attempt(ip("192.0.2.1"), at(61 + i), || false),
                Ok(false)
            );
        }
        assert!(limiter.attempt(ip("192.0.2.1"), at(70), || true).is_err());
        // Addresses of one IPv6 /64 network count as one client.
        for i in 0..5 {
            let addr = ip(&format!("2001:db8::{i}"));
            assert_eq!(limiter.attempt(addr, at(i), || false), Ok(false));
        }
        assert!(
            limiter
                .attempt(ip("2001:db8::ffff"), at(6), || true)
                .is_err()
        );
        assert_eq!(
            limiter.attempt(ip("2001:db8:0:1::1"), at(6), || true),
            Ok(true)
        );
    }

    #[test]
    fn a_spray_across_addresses_is_bounded_in_all() {
        let limiter = LoginLimiter::new(5, 100, WINDOW);
        let t0 = Instant::now();
        for i in 0..100u32 {
            let addr = Some(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
            assert_eq!(limiter.attempt(addr, t0, || false), Ok(false));
        }
        let fresh = ip("192.0.2.9");
        assert!(limiter.attempt(fresh, t0, || true).is_err());
        let later = t0 + WINDOW;
        assert_eq!(limiter.attempt(fresh, later, || true), Ok(true));
    }

    #[test]
    fn the_limiter_s_memory_is_bounded() {
        let limiter = LoginLimiter::new(5, u32::MAX, WINDOW);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 100) {
            let addr = Some(IpAddr::from(std::net::Ipv4Addr::from(i)));
            assert_eq!(limiter.attempt(addr, t0, || false), Ok(false));
        }
        let tally = limiter.tally.lock().unwrap();
        assert_eq!(tally.clients.len(), MAX_CLIENTS);
        drop(tally);
        // Ended windows make room.
        limiter
            .attempt(ip("192.0.2.1"), t0 + WINDOW, || false)
            .unwrap();
        assert_eq!(limiter.tally.lock().unwrap().clients.len(), 1);
    }

    #[test]
    fn the_table_is_bounded() {
        let auth = AdminAuth::Bearer {
            token: Secret::new("bounded"),
        };
        for _ in 0..MAX_SESSIONS + 10 {
            open(&auth).unwrap();
        }
        assert!(SESSIONS.lock().unwrap().len() <= MAX_SESSIONS);
    }
}
