//! Amazon Bedrock: Claude models through InvokeModel (Anthropic's own Messages API, passed
//! through), every other model through Converse (translated).
//!
//! Each key carries Bifrost's `bedrock_key_config`: `access_key` and `secret_key` (and
//! `session_token` for temporary credentials) sign requests with SigV4; without them the key's
//! `value` is a Bedrock API key, sent as `Authorization: Bearer`. `region` (default
//! `us-east-1`) picks the host; `deployments` maps a model name to a model id or inference
//! profile; `arn`, when set, is the inference-profile ARN prefix the id is appended to
//! (`{arn}/{id}`), as Bifrost does. Any of these may be `env.VAR`. A key with neither
//! credentials nor a value takes `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN` from the environment at start, the first link of AWS's default chain;
//! the rest of that chain (instance and container roles, SSO, STS AssumeRole) is not read, so
//! temporary credentials from the environment are not renewed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use heimdall_protocol::dialect::UpstreamDialect;
use heimdall_protocol::dialect::anthropic::cloud_body;
use heimdall_protocol::dialect::bedrock::{ANTHROPIC_VERSION, ClaudeInvoke, Converse};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::betas::BetaPlatform;
use crate::provider::anthropic_betas;
use crate::client::ProviderError;
use crate::provider::{
    Credential, Operation, PreparedRequest, Provider, ProviderFactory, ProviderSettings,
    SettingsError, header_auth, json_request, percent_encode, url,
};

pub const FACTORIES: &[ProviderFactory] = &[ProviderFactory {
    name: "bedrock",
    // The variable AWS's own tools read a Bedrock API key from.
    env_var: "AWS_BEARER_TOKEN_BEDROCK",
    // No global host: the key's region picks it.
    default_base_url: "",
    key_required: true,
    config_fields: &["bedrock_key_config"],
    build,
}];

pub const DEFAULT_REGION: &str = "us-east-1";
/// The SigV4 signing name of the Bedrock runtime.
const SIGNING_NAME: &str = "bedrock";

#[derive(Debug, Default, Deserialize)]
struct RawKeyConfig {
    access_key: Option<String>,
    secret_key: Option<String>,
    session_token: Option<String>,
    region: Option<String>,
    arn: Option<String>,
    #[serde(default)]
    deployments: BTreeMap<String, String>,
    /// Bifrost's STS AssumeRole settings; refused rather than ignored, since requests would
    /// then go out with the wrong identity.
    role_arn: Option<String>,
}

/// Static AWS credentials.
struct AwsKeys {
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
}

struct KeyConfig {
    /// `None`: the key's `value` is a Bedrock API key.
    aws: Option<AwsKeys>,
    region: String,
    arn: Option<String>,
    deployments: BTreeMap<String, String>,
}

impl Default for KeyConfig {
    fn default() -> Self {
        Self {
            aws: None,
            region: DEFAULT_REGION.to_owned(),
            arn: None,
            deployments: BTreeMap::new(),
        }
    }
}

impl KeyConfig {
    /// The model id or inference profile the URL names for `model`.
    fn target(&self, model: &str) -> String {
        let id = self.deployments.get(model).map_or(model, String::as_str);
        match self.arn.as_deref() {
            Some(arn) if !id.starts_with("arn:") => format!("{}/{id}", arn.trim_end_matches('/')),
            _ => id.to_owned(),
        }
    }
}

struct Bedrock {
    settings: ProviderSettings,
    /// By key index.
    keys: Vec<KeyConfig>,
    /// For a key without a section entry (a zero-config start from the environment, where
    /// `AWS_REGION` picks the region as it does for AWS's own tools).
    default_key: KeyConfig,
}

fn build(settings: ProviderSettings) -> Result<Arc<dyn Provider>, SettingsError> {
    build_with_env(settings, &|var| std::env::var(var).ok())
}

fn build_with_env(
    settings: ProviderSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Provider>, SettingsError> {
    let raw_keys = settings
        .section
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut keys = Vec::with_capacity(raw_keys.len());
    for (i, k) in raw_keys.iter().enumerate() {
        let base = format!("keys[{i}].bedrock_key_config");
        let raw = match k.get("bedrock_key_config") {
            Some(v) => RawKeyConfig::deserialize(v).map_err(|e| SettingsError {
                path: base.clone(),
                message: e.to_string(),
            })?,
            None => RawKeyConfig::default(),
        };
        let has_value = k
            .get("value")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|v| !v.trim().is_empty());
        keys.push(key_config(raw, &base, has_value, env)?);
    }
    let region = env("AWS_REGION")
        .map(|r| r.trim().to_owned())
        .filter(|r| is_region(r))
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    Ok(Arc::new(Bedrock {
        settings,
        keys,
        default_key: KeyConfig {
            region,
            ..KeyConfig::default()
        },
    }))
}

fn key_config(
    raw: RawKeyConfig,
    base: &str,
    has_value: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<KeyConfig, SettingsError> {
    let err = |field: &str, message: &str| SettingsError {
        path: format!("{base}.{field}"),
        message: message.to_owned(),
    };
    // `env.VAR` reads the variable; an empty value counts as absent.
    let resolve = |field: &str, v: Option<String>| -> Result<Option<String>, SettingsError> {
        let Some(v) = v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        match v.strip_prefix("env.") {
            Some(var) => env(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(Some)
                .ok_or_else(|| err(field, &format!("environment variable {var} is not set"))),
            None => Ok(Some(v)),
        }
    };
    if raw.role_arn.is_some() {
        return Err(err(
            "role_arn",
            "STS AssumeRole is not supported; configure access_key and secret_key",
        ));
    }
    let access_key = resolve("access_key", raw.access_key)?;
    let secret_key = resolve("secret_key", raw.secret_key)?;
    let aws = match (access_key, secret_key) {
        (Some(access_key), Some(secret_key)) => Some(AwsKeys {
            access_key,
            secret_key,
            session_token: resolve("session_token", raw.session_token)?,
        }),
        (Some(_), None) => return Err(err("secret_key", "required with access_key")),
        (None, Some(_)) => return Err(err("access_key", "required with secret_key")),
        (None, None) if has_value => None,
        // Neither: the standard AWS variables, as AWS's own tools read them first.
        (None, None) => match (
            env("AWS_ACCESS_KEY_ID").filter(|v| !v.trim().is_empty()),
            env("AWS_SECRET_ACCESS_KEY").filter(|v| !v.trim().is_empty()),
        ) {
            (Some(access_key), Some(secret_key)) => Some(AwsKeys {
                access_key: access_key.trim().to_owned(),
                secret_key: secret_key.trim().to_owned(),
                session_token: env("AWS_SESSION_TOKEN")
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty()),
            }),
            _ => {
                return Err(err(
                    "access_key",
                    "required: access_key and secret_key, a Bedrock API key in the key's value, \
                     or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
                ));
            }
        },
    };
    let region = resolve("region", raw.region)?.unwrap_or_else(|| DEFAULT_REGION.to_owned());
    if !is_region(&region) {
        return Err(err("region", "not an AWS region name (like us-east-1)"));
    }
    Ok(KeyConfig {
        aws,
        region,
        arn: resolve("arn", raw.arn)?,
        deployments: raw.deployments,
    })
}

/// CountTokens for Claude: the InvokeModel body it would get, base64 in `input.invokeModel`.
/// A count request carries no `max_tokens`, which an InvokeModel body requires; it does not
/// change the input count, so a placeholder goes in.
fn count_tokens_body(
    anthropic_body: &[u8],
    betas: &[&str],
) -> Result<Bytes, heimdall_protocol::dialect::TranslateError> {
    use base64::Engine as _;
    let invoke = cloud_body(anthropic_body, ANTHROPIC_VERSION, betas)?;
    let mut invoke: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&invoke)
        .map_err(|e| heimdall_protocol::dialect::TranslateError::Internal(e.to_string()))?;
    invoke.entry("max_tokens").or_insert(1.into());
    let invoke = serde_json::to_vec(&invoke)
        .map_err(|e| heimdall_protocol::dialect::TranslateError::Internal(e.to_string()))?;
    let body = serde_json::json!({"input": {"invokeModel": {
        "body": base64::engine::general_purpose::STANDARD.encode(invoke)
    }}});
    Ok(Bytes::from(body.to_string()))
}

/// The region becomes part of the host name: lowercase letters, digits and hyphens only.
fn is_region(region: &str) -> bool {
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Claude speaks its own Messages API on Bedrock (`anthropic.claude-…`, cross-region
/// profiles such as `us.anthropic.claude-…`, or a name starting with `claude`).
fn is_claude(id: &str) -> bool {
    let id = id.to_ascii_lowercase();
    id.contains("anthropic.claude") || id.starts_with("claude")
}

impl Bedrock {
    fn key(&self, index: usize) -> &KeyConfig {
        self.keys.get(index).unwrap_or(&self.default_key)
    }

    /// A model is Claude when its name says so or when any key deploys it to a Claude id;
    /// the dialect is chosen before a key is.
    fn serves_claude(&self, model: &str) -> bool {
        is_claude(model)
            || self
                .keys
                .iter()
                .any(|k| k.deployments.get(model).is_some_and(|id| is_claude(id)))
    }

    fn host(&self, key: &KeyConfig) -> String {
        if self.settings.base_url.is_empty() {
            format!("https://bedrock-runtime.{}.amazonaws.com", key.region)
        } else {
            self.settings.base_url.clone()
        }
    }
}

impl Provider for Bedrock {
    fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// A configured key's AWS credentials sign instead of its value, so a client's key could
    /// not replace them reliably: Bedrock always uses its configured keys.
    fn direct_key_header(&self, _model: &str) -> Option<crate::DirectKeyHeader> {
        None
    }

    fn dialect(&self, model: &str) -> &'static dyn UpstreamDialect {
        if self.serves_claude(model) {
            &ClaudeInvoke
        } else {
            &Converse
        }
    }

    fn claude_platform(&self) -> BetaPlatform {
        BetaPlatform::Bedrock
    }

    /// Claude's tokens are counted by Bedrock's CountTokens; Converse requests are estimated
    /// by the gateway.
    fn counts_tokens(&self, model: &str) -> bool {
        self.serves_claude(model)
    }

    fn prepare(
        &self,
        op: Operation,
        model: &str,
        stream: bool,
        body: Option<Bytes>,
        client_headers: &HeaderMap,
        key: &Credential<'_>,
    ) -> Result<PreparedRequest, ProviderError> {
        let config = self.key(key.index);
        let claude = self.serves_claude(model);
        if op == Operation::CountTokens && claude {
            let body = body
                .map(|b| count_tokens_body(&b, &anthropic_betas(client_headers)))
                .transpose()
                .map_err(|e| ProviderError::Invalid {
                    provider: self.name().to_owned(),
                    message: e.message(),
                })?;
            let path = format!(
                "/model/{}/count-tokens",
                percent_encode(&config.target(model))
            );
            return Ok(json_request(
                url(&self.host(config), &path),
                HeaderMap::new(),
                body,
            ));
        }
        if op != Operation::Messages {
            return Err(ProviderError::Unsupported {
                provider: self.name().to_owned(),
            });
        }
        let action = match (claude, stream) {
            (true, false) => "invoke",
            (true, true) => "invoke-with-response-stream",
            (false, false) => "converse",
            (false, true) => "converse-stream",
        };
        let body = match body {
            // InvokeModel takes betas in the body.
            Some(b) if claude => Some(Bytes::from(
                cloud_body(&b, ANTHROPIC_VERSION, &anthropic_betas(client_headers)).map_err(
                    |e| ProviderError::Invalid {
                        provider: self.name().to_owned(),
                        message: e.message(),
                    },
                )?,
            )),
            other => other,
        };
        let path = format!("/model/{}/{action}", percent_encode(&config.target(model)));
        Ok(json_request(
            url(&self.host(config), &path),
            HeaderMap::new(),
            body,
        ))
    }

    fn authorize<'a>(
        &'a self,
        request: &'a mut PreparedRequest,
        key: &'a Credential<'a>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        let config = self.key(key.index);
        let Some(aws) = &config.aws else {
            return header_auth(
                request,
                http::header::AUTHORIZATION,
                &format!("Bearer {}", key.value),
                self.name(),
            );
        };
        let result = sign_v4(request, aws, &config.region, SystemTime::now(), self.name());
        Box::pin(std::future::ready(result))
    }
}

/// Adds SigV4 headers (`authorization`, `x-amz-date`, and `x-amz-security-token` for session
/// credentials) for the request as it will be sent: method, URL, current headers and the
/// final body.
fn sign_v4(
    request: &mut PreparedRequest,
    aws: &AwsKeys,
    region: &str,
    now: SystemTime,
    provider: &str,
) -> Result<(), ProviderError> {
    let invalid = || ProviderError::InvalidKey {
        provider: provider.to_owned(),
    };
    let identity = Credentials::new(
        &aws.access_key,
        &aws.secret_key,
        aws.session_token.clone(),
        None,
        "heimdall-config",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| invalid())?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let body = request.body.as_deref().unwrap_or_default();
    let signable = SignableRequest::new(
        request.method.as_str(),
        request.url.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| invalid())?;
    let (instructions, _signature) = sign(signable, &params).map_err(|_| invalid())?.into_parts();
    let (headers, _query) = instructions.into_parts();
    for h in headers {
        let name = HeaderName::from_bytes(h.name().as_bytes()).map_err(|_| invalid())?;
        let mut value = HeaderValue::from_str(h.value()).map_err(|_| invalid())?;
        value.set_sensitive(h.sensitive() || name == http::header::AUTHORIZATION);
        request.headers.insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bedrock(section: serde_json::Value, base_url: &str) -> Arc<dyn Provider> {
        build_with_env(
            ProviderSettings {
                name: "bedrock".into(),
                family: "bedrock",
                base_url: base_url.into(),
                section,
            },
            &|var| (var == "AKID_VAR").then(|| "AKIDFROMENV".to_owned()),
        )
        .unwrap()
    }

    fn prepare(p: &dyn Provider, model: &str, stream: bool) -> PreparedRequest {
        p.prepare(
            Operation::Messages,
            model,
            stream,
            Some(Bytes::from_static(
                br#"{"model":"x","max_tokens":5,"stream":true,"messages":[]}"#,
            )),
            &HeaderMap::new(),
            &Credential {
                index: 0,
                value: "",
            },
        )
        .unwrap()
    }

    #[test]
    fn urls_dialects_and_bodies() {
        let p = bedrock(
            json!({"keys": [{"value": "", "bedrock_key_config": {
                "access_key": "env.AKID_VAR", "secret_key": "s", "region": "eu-west-3",
                "deployments": {"sonnet": "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
                                "nova": "arn:aws:bedrock:eu-west-3:1:application-inference-profile/x"}}}]}),
            "",
        );
        let r = prepare(&*p, "amazon.nova-pro-v1:0", false);
        assert_eq!(
            r.url,
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse"
        );
        assert!(r.body.unwrap().starts_with(br#"{"model":"x""#));
        assert_eq!(p.dialect("amazon.nova-pro-v1:0").id().0, "bedrock_converse");

        let r = prepare(&*p, "sonnet", true);
        assert_eq!(
            r.url,
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/eu.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
        );
        assert_eq!(
            r.body.unwrap(),
            Bytes::from_static(
                br#"{"max_tokens":5,"messages":[],"anthropic_version":"bedrock-2023-05-31"}"#
            )
        );
        assert_eq!(p.dialect("sonnet").id().0, "anthropic");
        assert_eq!(p.dialect("anthropic.claude-3-haiku").id().0, "anthropic");
        let r = prepare(&*p, "nova", true);
        assert!(r.url.ends_with(
            "/model/arn%3Aaws%3Abedrock%3Aeu-west-3%3A1%3Aapplication-inference-profile%2Fx/converse-stream"
        ));
        assert!(p.counts_tokens("sonnet") && !p.counts_tokens("nova"));
        let count = p
            .prepare(
                Operation::CountTokens,
                "sonnet",
                false,
                Some(Bytes::from_static(
                    br#"{"model":"bedrock/sonnet","messages":[{"role":"user","content":"hi"}]}"#,
                )),
                &HeaderMap::new(),
                &Credential { index: 0, value: "" },
            )
            .unwrap();
        assert!(count.url.ends_with("/count-tokens"), "{}", count.url);
        let body: serde_json::Value = serde_json::from_slice(&count.body.unwrap()).unwrap();
        use base64::Engine as _;
        let invoke = base64::engine::general_purpose::STANDARD
            .decode(body["input"]["invokeModel"]["body"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&invoke).unwrap(),
            json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1,
                   "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn zero_config_keys_use_aws_region() {
        let p = build_with_env(
            ProviderSettings {
                name: "bedrock".into(),
                family: "bedrock",
                base_url: String::new(),
                section: serde_json::Value::Null,
            },
            &|var| (var == "AWS_REGION").then(|| "ap-south-1".to_owned()),
        )
        .unwrap();
        let r = prepare(&*p, "amazon.nova-lite-v1:0", false);
        assert!(
            r.url
                .starts_with("https://bedrock-runtime.ap-south-1.amazonaws.com/"),
            "{}",
            r.url
        );
    }

    #[test]
    fn arn_prefix_and_base_url() {
        let p = bedrock(
            json!({"keys": [{"value": "api-key", "bedrock_key_config": {
                "arn": "arn:aws:bedrock:us-east-1:123:inference-profile"}}]}),
            "http://127.0.0.1:9",
        );
        let r = prepare(&*p, "us.meta.llama3-3-70b-instruct-v1:0", false);
        assert_eq!(
            r.url,
            "http://127.0.0.1:9/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.meta.llama3-3-70b-instruct-v1%3A0/converse"
        );
    }

    #[tokio::test]
    async fn sigv4_or_bearer() {
        let p = bedrock(
            json!({"keys": [
                {"value": "", "bedrock_key_config": {"access_key": "AKID", "secret_key": "SECRET", "session_token": "TOKEN"}},
                {"value": "brk-key"}]}),
            "",
        );
        let mut r = prepare(&*p, "amazon.nova-pro-v1:0", false);
        p.authorize(&mut r, &Credential { index: 0, value: "" })
            .await
            .unwrap();
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"),
            "{auth}"
        );
        assert!(auth.contains("/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="), "{auth}");
        assert!(r.headers["authorization"].is_sensitive());
        assert_eq!(r.headers["x-amz-security-token"], "TOKEN");
        assert!(r.headers.contains_key("x-amz-date"));

        let key = Credential {
            index: 1,
            value: "brk-key",
        };
        let mut r = prepare(&*p, "amazon.nova-pro-v1:0", false);
        p.authorize(&mut r, &key).await.unwrap();
        assert_eq!(r.headers["authorization"], "Bearer brk-key");
    }

    #[tokio::test]
    async fn a_key_without_credentials_takes_aws_variables_from_the_environment() {
        let env = |var: &str| match var {
            "AWS_ACCESS_KEY_ID" => Some("AKIDENV".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("SECRETENV".to_owned()),
            "AWS_SESSION_TOKEN" => Some("TOKENENV".to_owned()),
            _ => None,
        };
        let p = build_with_env(
            ProviderSettings {
                name: "bedrock".into(),
                family: "bedrock",
                base_url: "http://127.0.0.1:9".into(),
                section: json!({"keys": [{"value": "", "bedrock_key_config": {"region": "eu-west-1"}}]}),
            },
            &env,
        )
        .unwrap();
        let mut r = prepare(&*p, "amazon.nova-pro-v1:0", false);
        p.authorize(&mut r, &Credential { index: 0, value: "" })
            .await
            .unwrap();
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDENV/") && auth.contains("/eu-west-1/"),
            "{auth}"
        );
        assert_eq!(r.headers["x-amz-security-token"], "TOKENENV");
    }

    #[test]
    fn a_fixed_time_gives_a_fixed_signature() {
        let aws = AwsKeys {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let sign_once = |body: &'static [u8]| {
            let mut r = json_request(
                "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse".into(),
                HeaderMap::new(),
                Some(Bytes::from_static(body)),
            );
            sign_v4(&mut r, &aws, "us-east-1", at, "bedrock").unwrap();
            r.headers["authorization"].to_str().unwrap().to_owned()
        };
        assert_eq!(sign_once(b"{}"), sign_once(b"{}"));
        // The signature covers the body.
        assert_ne!(sign_once(b"{}"), sign_once(b"{ }"));
        assert!(sign_once(b"{}").contains("Credential=AKIDEXAMPLE/20231114/us-east-1/bedrock/aws4_request"));
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = |keys: serde_json::Value| {
            build_with_env(
                ProviderSettings {
                    name: "bedrock".into(),
                    family: "bedrock",
                    base_url: String::new(),
                    section: json!({ "keys": keys }),
                },
                &|_| None,
            )
            .err()
            .unwrap()
        };
        let e = err(json!([{"value": "", "bedrock_key_config": {"access_key": "a"}}]));
        assert_eq!(e.path, "keys[0].bedrock_key_config.secret_key");
        let e = err(json!([{"value": "", "bedrock_key_config": {}}]));
        assert_eq!(e.path, "keys[0].bedrock_key_config.access_key");
        let e = err(json!([{"value": "k", "bedrock_key_config": {"region": "us east"}}]));
        assert_eq!(e.path, "keys[0].bedrock_key_config.region");
        let e = err(json!([{"value": "", "bedrock_key_config": {"access_key": "env.NOPE", "secret_key": "s"}}]));
        assert_eq!(e.path, "keys[0].bedrock_key_config.access_key");
        assert!(e.message.contains("NOPE"));
        let e = err(json!([{"value": "k", "bedrock_key_config": {"role_arn": "arn:x"}}]));
        assert_eq!(e.path, "keys[0].bedrock_key_config.role_arn");
        let e = err(json!([{"value": "k", "bedrock_key_config": {"deployments": []}}]));
        assert_eq!(e.path, "keys[0].bedrock_key_config");
    }
}
