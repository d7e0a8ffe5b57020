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

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
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

struct Session {
    expires: Instant,
    /// Of the `client.admin_auth` that opened it.
    credentials: String,
}

static SESSIONS: LazyLock<Mutex<HashMap<String, Session>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

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
    ))]
pub async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
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
    if !matches(&auth, &login) {
        return api_error(
            StatusCode::UNAUTHORIZED,
            ApiErrorKind::Authentication,
            "wrong credentials",
        );
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
