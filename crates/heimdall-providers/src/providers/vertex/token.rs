//! OAuth2 access tokens for a Google service account: a JWT signed with the account's RSA key
//! (RS256) is exchanged at the account's `token_uri` (RFC 7523 JWT bearer grant), and the token
//! is cached until shortly before it expires. One fetch serves every request in the meantime:
//! concurrent requests wait for the fetch in progress instead of starting their own.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::BytesMut;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::client::ProviderError;

/// What Vertex AI needs.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Lifetime asked for the signed assertion (Google's maximum).
const ASSERTION_LIFETIME_S: u64 = 3600;
/// A token is replaced this long before it expires (or at half its life, if that is sooner),
/// so no request is sent with a token that expires on the way.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Longest a request waits for a token: a fetch in progress, then its own.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a token is kept, whatever lifetime its answer claims.
const MAX_LIFETIME_S: u64 = 24 * 3600;
/// Largest token answer read (a real one is under 2 KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// `grant_type` of the JWT bearer flow, form-encoded.
const GRANT: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";

/// The fields of a service-account key file Heimdall uses.
#[derive(Deserialize)]
pub(super) struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_owned()
}

struct Cached {
    value: String,
    refresh_at: Instant,
}

/// Tokens for one service account.
pub(super) struct TokenSource {
    provider: String,
    client_email: String,
    key_id: Option<String>,
    token_uri: String,
    key: RsaKeyPair,
    rng: SystemRandom,
    /// Held across a fetch, so concurrent callers share it.
    cached: Mutex<Option<Cached>>,
    http: OnceLock<reqwest::Client>,
}

impl TokenSource {
    /// Reads the account's key; the error says what is wrong without showing the key.
    pub(super) fn new(provider: &str, account: ServiceAccount) -> Result<Self, String> {
        let der = pem_body(&account.private_key)
            .ok_or("private_key is not a PEM \"PRIVATE KEY\" block")?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("private_key is not a usable RSA key: {e}"))?;
        if !(account.token_uri.starts_with("https://") || account.token_uri.starts_with("http://"))
        {
            return Err("token_uri is not an http(s) URL".to_owned());
        }
        Ok(Self {
            provider: provider.to_owned(),
            client_email: account.client_email,
            key_id: account.private_key_id,
            token_uri: account.token_uri,
            key,
            rng: SystemRandom::new(),
            cached: Mutex::new(None),
            http: OnceLock::new(),
        })
    }

    /// A valid access token, fetched only when the cached one is missing or near expiry.
    pub(super) async fn token(&self) -> Result<String, ProviderError> {
        self.token_at(Instant::now()).await
    }

    /// [`TokenSource::token`] as seen at `now` (tests move the clock). The whole wait, for a
    /// fetch in progress and for its own, is bounded by `FETCH_TIMEOUT`.
    pub(super) async fn token_at(&self, now: Instant) -> Result<String, ProviderError> {
        tokio::time::timeout(FETCH_TIMEOUT, self.cached_or_fetch(now))
            .await
            .map_err(|_| ProviderError::Timeout {
                provider: self.provider.clone(),
                seconds: FETCH_TIMEOUT.as_secs(),
            })?
    }

    async fn cached_or_fetch(&self, now: Instant) -> Result<String, ProviderError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && now < c.refresh_at
        {
            return Ok(c.value.clone());
        }
        let (value, expires_in) = self.fetch().await?;
        // The answer's lifetime is the token service's word; clamped, so a wild value can
        // neither overflow the clock nor keep a token past a day.
        let lifetime = Duration::from_secs(expires_in.min(MAX_LIFETIME_S));
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *cached = Some(Cached {
            value: value.clone(),
            refresh_at: now + lifetime - margin,
        });
        Ok(value)
    }

    fn http(&self) -> Result<&reqwest::Client, ProviderError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        // The TLS stack needs its process-wide crypto provider (the shared client installs
        // the same one; whichever comes first wins, the other call is a no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| self.transport(e.to_string()))?;
        Ok(self.http.get_or_init(|| client))
    }

    fn transport(&self, message: String) -> ProviderError {
        ProviderError::Transport {
            provider: self.provider.clone(),
            message: format!("access token request failed: {message}"),
        }
    }

    /// One token exchange: `(access_token, expires_in seconds)`.
    async fn fetch(&self) -> Result<(String, u64), ProviderError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let assertion = self.assertion(now)?;
        let mut response = self
            .http()?
            .post(&self.token_uri)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(format!("grant_type={GRANT}&assertion={assertion}"))
            .send()
            .await
            .map_err(|e| self.transport(e.to_string()))?;
        let status = response.status();
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(self.transport("the answer is too large".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let detail = token_error(&body);
            let message = format!("access token request failed: HTTP {status}{detail}");
            // A refused assertion (bad key, unknown account) will not pass on a retry; an
            // overloaded token service may.
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                self.transport(format!("HTTP {status}{detail}"))
            } else {
                ProviderError::Invalid {
                    provider: self.provider.clone(),
                    message,
                }
            });
        }
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| ProviderError::Invalid {
            provider: self.provider.clone(),
            message: format!("unreadable access token answer: {e}"),
        })?;
        // Google's tokens live an hour; an answer without a lifetime is taken to be that.
        Ok((
            answer.access_token,
            answer.expires_in.unwrap_or(ASSERTION_LIFETIME_S),
        ))
    }

    /// The signed JWT: `base64url(header).base64url(claims).base64url(RS256 signature)`.
    fn assertion(&self, now: u64) -> Result<String, ProviderError> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.key_id});
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
        });
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, jwt.as_bytes(), &mut signature)
            .map_err(|_| self.transport("signing the assertion failed".to_owned()))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }
}

/// `: error: error_description` of an OAuth error answer, as far as it has them (never the
/// assertion).
fn token_error(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct OAuthError {
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        error_description: Option<String>,
    }
    match serde_json::from_slice::<OAuthError>(body) {
        Ok(e) => match (e.error, e.error_description) {
            (Some(e), Some(d)) => format!(": {e}: {d}"),
            (None, Some(d)) => format!(": {d}"),
            (Some(e), None) => format!(": {e}"),
            (None, None) => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// The DER bytes of a PEM `PRIVATE KEY` (PKCS#8) block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = pem[start..].find("-----END PRIVATE KEY-----")? + start;
    let b64: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is the failure report

    use super::*;
    use heimdall_testkit::mock::{MockOptions, MockServer};

    fn source(mock: &MockServer) -> TokenSource {
        let mut account: ServiceAccount =
            serde_json::from_str(heimdall_testkit::fixtures::SERVICE_ACCOUNT_JSON).unwrap();
        account.token_uri = format!("{}/token", mock.base_url());
        TokenSource::new("vertex", account).unwrap()
    }

    fn token_fetches(mock: &MockServer) -> usize {
        mock.requests().iter().filter(|r| r.path == "/token").count()
    }

    #[tokio::test]
    async fn one_fetch_serves_many_and_refreshes_before_expiry() {
        let mock = MockServer::start(MockOptions::default()).await.unwrap();
        let source = source(&mock);
        let t0 = Instant::now();
        let (a, b, c) = tokio::join!(source.token_at(t0), source.token_at(t0), source.token_at(t0));
        let first = a.unwrap();
        assert_eq!(b.unwrap(), first);
        assert_eq!(c.unwrap(), first);
        assert_eq!(token_fetches(&mock), 1);
        // The mock's tokens live 3600 s: still good 55 minutes on, replaced 5 minutes before
        // they expire.
        let later = source.token_at(t0 + Duration::from_secs(3290)).await.unwrap();
        assert_eq!(later, first);
        assert_eq!(token_fetches(&mock), 1);
        let fresh = source.token_at(t0 + Duration::from_secs(3310)).await.unwrap();
        assert_ne!(fresh, first);
        assert_eq!(token_fetches(&mock), 2);
        // The mock checked the assertion's signature with the account's public key.
        let form = &mock.requests()[0];
        assert_eq!(form.method, "POST");
    }

    #[tokio::test]
    async fn a_refused_assertion_is_reported_without_the_key() {
        let mock = MockServer::start(MockOptions::default()).await.unwrap();
        let mut account: ServiceAccount =
            serde_json::from_str(heimdall_testkit::fixtures::SERVICE_ACCOUNT_JSON).unwrap();
        account.token_uri = format!("{}/token", mock.base_url());
        // Signed by the right key but claiming another account: the mock refuses it.
        account.client_email = "intruder@example.com".into();
        let source = TokenSource::new("vertex", account).unwrap();
        let err = source.token().await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(text.contains("HTTP 400") && text.contains("invalid_grant"), "{text}");
        assert!(!text.contains("PRIVATE KEY"));
    }

    #[test]
    fn bad_keys_are_refused_at_start() {
        let account = |key: &str| ServiceAccount {
            client_email: "a@b".into(),
            private_key: key.into(),
            private_key_id: None,
            token_uri: default_token_uri(),
        };
        assert!(TokenSource::new("vertex", account("not a key")).is_err());
        assert!(
            TokenSource::new(
                "vertex",
                account("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            )
            .is_err()
        );
    }
}
