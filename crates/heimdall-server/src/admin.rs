//! The admin API's gate: with `client.admin_auth` set, the admin routes (`crate::openapi`)
//! answer only callers that present its credentials, and `401` otherwise. The setting is read
//! from the running configuration on every request, so a reload that sets, changes or removes
//! it applies to the next request.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use heimdall_core::config::AdminAuth;
use subtle::ConstantTimeEq;

use crate::App;
use crate::api::{ApiErrorKind, api_error};

pub async fn require(State(app): State<App>, req: Request, next: Next) -> Response {
    // Logging in is how a browser gets credentials: the handler checks them itself.
    if req.method() == Method::POST && req.uri().path() == "/api/session" {
        return next.run(req).await;
    }
    let refused = {
        let config = app.gateway.config();
        config
            .admin_auth
            .as_ref()
            .filter(|auth| {
                !authorized(auth, req.headers().get(header::AUTHORIZATION))
                    && !ui_session(auth, req.headers())
            })
            .map(challenge)
    };
    match refused {
        None => next.run(req).await,
        // The answer names neither what was sent nor what was expected.
        Some(challenge) => {
            let mut res = api_error(
                StatusCode::UNAUTHORIZED,
                ApiErrorKind::Authentication,
                "the admin API needs valid credentials (client.admin_auth)",
            );
            // A browser answers a `Basic` challenge with its own password dialog, even to
            // a script's request: the web UI (which says so in `UI_HEADER`) gets the scheme
            // in a header of its own instead, and shows its login page.
            let (name, value) = if req.headers().contains_key(UI_HEADER) {
                let scheme = challenge.split(' ').next().unwrap_or(challenge);
                (HeaderName::from_static(UI_AUTH_HEADER), scheme)
            } else {
                (header::WWW_AUTHENTICATE, challenge)
            };
            res.headers_mut()
                .insert(name, HeaderValue::from_static(value));
            res
        }
    }
}

/// Whether the request is the web UI's with a live session. The cookie counts only beside
/// `UI_HEADER`: a page of another origin cannot add a custom header without the browser
/// asking this server first (CORS), which it never allows, so no other page, not even one of
/// the same site (another port of `127.0.0.1`, where `SameSite` does not apply), can act with
/// the browser's session.
fn ui_session(auth: &AdminAuth, headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(UI_HEADER) && crate::ui::session::valid(auth, headers)
}

/// Sent by the web UI's requests.
pub const UI_HEADER: &str = "x-heimdall-ui";
/// The scheme of a refusal answered to the web UI (`Basic` or `Bearer`).
pub const UI_AUTH_HEADER: &str = "x-heimdall-auth";

fn challenge(auth: &AdminAuth) -> &'static str {
    match auth {
        AdminAuth::Basic { .. } => r#"Basic realm="heimdall""#,
        AdminAuth::Bearer { .. } => "Bearer",
    }
}

/// Whether `given` (the `Authorization` header) carries `auth`'s credentials. Secrets are
/// compared in constant time, so the time taken does not tell how much of a guess was right
/// (only a wrong length shows).
fn authorized(auth: &AdminAuth, given: Option<&HeaderValue>) -> bool {
    let Some((scheme, credentials)) = given
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
    else {
        return false;
    };
    let credentials = credentials.trim_start();
    match auth {
        AdminAuth::Basic { username, password } => {
            if !scheme.eq_ignore_ascii_case("basic") {
                return false;
            }
            let Ok(decoded) = STANDARD.decode(credentials) else {
                return false;
            };
            let Some(colon) = decoded.iter().position(|&b| b == b':') else {
                return false;
            };
            let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
            // Both compared whatever the first gave, so the time does not tell which was wrong.
            let user_ok = user.ct_eq(username.expose().as_bytes());
            let pass_ok = pass.ct_eq(password.expose().as_bytes());
            (user_ok & pass_ok).into()
        }
        AdminAuth::Bearer { token } => {
            scheme.eq_ignore_ascii_case("bearer")
                && bool::from(credentials.as_bytes().ct_eq(token.expose().as_bytes()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heimdall_core::config::Secret;

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    #[test]
    fn basic_takes_exactly_its_user_and_password() {
        let auth = AdminAuth::Basic {
            username: Secret::new("admin"),
            password: Secret::new("pa:ss wörd"),
        };
        let basic = |user_pass: &str| format!("Basic {}", STANDARD.encode(user_pass));
        assert!(authorized(&auth, Some(&header(&basic("admin:pa:ss wörd")))));
        assert!(authorized(
            &auth,
            Some(&header(
                &basic("admin:pa:ss wörd").replace("Basic", "basic")
            ))
        ));
        for wrong in [
            basic("admin:pa:ss"),
            basic("Admin:pa:ss wörd"),
            basic("admin"),
            basic(":pa:ss wörd"),
            "Basic not-base64!".to_owned(),
            "Bearer pa:ss wörd".to_owned(),
            "Basic".to_owned(),
            String::new(),
        ] {
            assert!(!authorized(&auth, Some(&header(&wrong))), "{wrong}");
        }
        assert!(!authorized(&auth, None));
    }

    #[test]
    fn bearer_takes_exactly_its_token() {
        let auth = AdminAuth::Bearer {
            token: Secret::new("tok-123"),
        };
        assert!(authorized(&auth, Some(&header("Bearer tok-123"))));
        assert!(authorized(&auth, Some(&header("bearer  tok-123 "))));
        for wrong in [
            "Bearer tok-12",
            "Bearer tok-1234",
            "Basic tok-123",
            "tok-123",
        ] {
            assert!(!authorized(&auth, Some(&header(wrong))), "{wrong}");
        }
    }
}
