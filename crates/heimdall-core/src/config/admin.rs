//! `client.admin_auth`: the credentials the admin API (`/api/*`, `/metrics`) asks for.
//!
//! Read by hand from the JSON value rather than through serde, so that no error message can
//! quote a credential (serde's type errors show the value they met).

use serde_json::{Map, Value};

use super::{ConfigError, Secret};

/// What a caller of the admin API must present; no `AdminAuth` leaves the API open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAuth {
    /// HTTP Basic (RFC 7617).
    Basic { username: Secret, password: Secret },
    /// `Authorization: Bearer <token>` (RFC 6750).
    Bearer { token: Secret },
}

const PATH: &str = "client.admin_auth";

/// Reads the section: `{"type": "basic", "username", "password"}` or `{"type": "bearer",
/// "token"}`, each value literal or `env.VAR`. An unset variable is an error, not a skipped
/// setting: the API must not open because a secret went missing.
pub(super) fn parse(
    section: Option<Value>,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Option<AdminAuth>, ConfigError> {
    let Some(section) = section.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Value::Object(fields) = section else {
        return Err(error(PATH, "expected an object with a `type`"));
    };
    let (auth, known): (AdminAuth, &[&str]) = match fields.get("type").and_then(Value::as_str) {
        Some("basic") => {
            let username = secret(&fields, "username", env)?;
            if username.expose().contains(':') {
                // Basic auth sends `username:password`: the first colon ends the name.
                return Err(error(
                    &format!("{PATH}.username"),
                    "must not contain a colon",
                ));
            }
            let password = secret(&fields, "password", env)?;
            (
                AdminAuth::Basic { username, password },
                &["type", "username", "password"],
            )
        }
        Some("bearer") => {
            let token = secret(&fields, "token", env)?;
            // What a client can send after `Bearer ` in a header, and nothing it would
            // have to quote or escape.
            if !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
                return Err(error(
                    &format!("{PATH}.token"),
                    "must be printable ASCII without spaces",
                ));
            }
            (AdminAuth::Bearer { token }, &["type", "token"])
        }
        _ => {
            return Err(error(
                &format!("{PATH}.type"),
                "expected `basic` or `bearer`",
            ));
        }
    };
    for name in fields.keys().filter(|k| !known.contains(&k.as_str())) {
        warnings.push(format!("{PATH}.{name}: unknown field, ignored"));
    }
    Ok(Some(auth))
}

/// A non-empty string field, resolved when it is `env.VAR`.
fn secret(
    fields: &Map<String, Value>,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let path = format!("{PATH}.{name}");
    let Some(Value::String(value)) = fields.get(name) else {
        return Err(error(&path, "expected a string"));
    };
    let value = super::observability::resolve(&path, value, env)?;
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(error(
            &path,
            "must not be empty or contain control characters",
        ));
    }
    Ok(Secret::new(value))
}

fn error(path: &str, message: &str) -> ConfigError {
    ConfigError {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(var: &str) -> Option<String> {
        (var == "ADMIN_TOKEN").then(|| "tok-from-env".to_owned())
    }

    fn read(v: Value) -> Result<Option<AdminAuth>, ConfigError> {
        parse(Some(v), &env, &mut Vec::new())
    }

    #[test]
    fn reads_both_forms_and_env_values() {
        assert_eq!(parse(None, &env, &mut Vec::new()), Ok(None));
        assert_eq!(
            read(json!({"type": "basic", "username": "admin", "password": "p:w d"})),
            Ok(Some(AdminAuth::Basic {
                username: Secret::new("admin"),
                password: Secret::new("p:w d"),
            }))
        );
        let mut warnings = Vec::new();
        let auth = parse(
            Some(json!({"type": "bearer", "token": "env.ADMIN_TOKEN", "realm": "x"})),
            &env,
            &mut warnings,
        );
        assert_eq!(
            auth,
            Ok(Some(AdminAuth::Bearer {
                token: Secret::new("tok-from-env")
            }))
        );
        assert_eq!(
            warnings,
            ["client.admin_auth.realm: unknown field, ignored"]
        );
    }

    #[test]
    fn refuses_what_would_open_or_break_the_api_without_echoing_secrets() {
        let cases = [
            (json!("secret-value"), "client.admin_auth"),
            (json!({"type": "digest"}), "client.admin_auth.type"),
            (json!({"type": "bearer"}), "client.admin_auth.token"),
            (
                json!({"type": "bearer", "token": 12345}),
                "client.admin_auth.token",
            ),
            (
                json!({"type": "bearer", "token": ""}),
                "client.admin_auth.token",
            ),
            (
                json!({"type": "bearer", "token": "env.UNSET"}),
                "client.admin_auth.token",
            ),
            (
                json!({"type": "bearer", "token": "two words"}),
                "client.admin_auth.token",
            ),
            (
                json!({"type": "basic", "username": "a:b", "password": "secret-value"}),
                "client.admin_auth.username",
            ),
            (
                json!({"type": "basic", "username": "admin", "password": "new\nline"}),
                "client.admin_auth.password",
            ),
        ];
        for (section, path) in cases {
            let err = read(section.clone()).expect_err(&section.to_string());
            assert_eq!(err.path, path, "{section}");
            for shown in ["secret-value", "12345", "two words", "new"] {
                assert!(!err.to_string().contains(shown), "{err}");
            }
        }
    }
}
