//! `GET /v1/models`: the configured providers' models in Anthropic's list format with its
//! cursor pagination. Ids are what a client puts in `model`: `openai/gpt-4o-mini`, and bare
//! `claude-…` for Anthropic (no prefix means Anthropic), so Anthropic-native clients see the ids
//! they know.

use bytes::Bytes;
use futures_util::future::join_all;
use heimdall_providers::{Operation, ProviderKind};
use serde::{Deserialize, Serialize};

use crate::attempt::{self, Call};
use crate::config::{ModelFilter, ProviderConfig};
use crate::error::GatewayError;
use crate::gateway::{DEFAULT_ANTHROPIC_VERSION, Gateway};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelsQuery {
    pub limit: Option<u32>,
    pub after_id: Option<String>,
    pub before_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModelInfo {
    #[serde(rename = "type")]
    kind: &'static str,
    pub id: String,
    pub display_name: String,
    pub created_at: String,
}

#[derive(Serialize)]
struct Page<'a> {
    data: &'a [ModelInfo],
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 1000;

impl Gateway {
    pub async fn list_models(&self, q: &ModelsQuery) -> Result<Bytes, GatewayError> {
        let all = self.catalog().await;
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(GatewayError::invalid_request(format!(
                "limit: Input should be between 1 and {MAX_LIMIT}"
            )));
        }
        let (data, has_more) = paginate(&all, q, limit as usize)?;
        let page = Page {
            data,
            has_more,
            first_id: data.first().map(|m| m.id.as_str()),
            last_id: data.last().map(|m| m.id.as_str()),
        };
        to_json(&page)
    }

    /// One model, answered under the id the client asked for (`anthropic/claude-x` and
    /// `claude-x` name the same model).
    pub async fn get_model(&self, id: &str) -> Result<Bytes, GatewayError> {
        let (kind, name) = crate::route::split_model(id)?;
        let wanted = client_id(kind, name);
        let all = self.catalog().await;
        let mut found = all
            .into_iter()
            .find(|m| m.id == wanted)
            .ok_or_else(|| GatewayError::not_found(format!("model `{id}` not found")))?;
        found.id = id.to_owned();
        to_json(&found)
    }

    async fn catalog(&self) -> Vec<ModelInfo> {
        let config = self.config();
        let lists = join_all(config.providers.iter().map(|p| self.provider_models(p))).await;
        lists.into_iter().flatten().collect()
    }

    async fn provider_models(&self, p: &ProviderConfig) -> Vec<ModelInfo> {
        let explicit = explicit_models(p);
        // Keys that all name their models say everything there is to list.
        if p.keys
            .iter()
            .all(|k| matches!(k.models, ModelFilter::Only(_)))
        {
            return explicit;
        }
        match self.upstream_models(p).await {
            Ok(mut list) => {
                for m in explicit {
                    if !list.iter().any(|x| x.id == m.id) {
                        list.push(m);
                    }
                }
                list
            }
            Err(e) => {
                tracing::warn!(provider = p.kind.name(), error = %e.message, "could not list upstream models");
                explicit
            }
        }
    }

    async fn upstream_models(&self, p: &ProviderConfig) -> Result<Vec<ModelInfo>, GatewayError> {
        let mut headers = http::HeaderMap::new();
        if p.kind == ProviderKind::Anthropic {
            headers.insert(
                "anthropic-version",
                http::HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
            );
        }
        let answer = attempt::send(
            self.client(),
            Call::new(p, None, Operation::ListModels, headers, None),
        )
        .await?;
        let body = answer
            .response
            .bytes()
            .await
            .map_err(|e| GatewayError::from_provider(&e, answer.key.value.expose()))?;
        parse_upstream_list(p.kind, &body).ok_or_else(|| {
            GatewayError::invalid_request(format!(
                "{} returned an unreadable model list",
                p.kind.name()
            ))
        })
    }
}

fn explicit_models(p: &ProviderConfig) -> Vec<ModelInfo> {
    let mut out: Vec<ModelInfo> = Vec::new();
    for k in &p.keys {
        if let ModelFilter::Only(list) = &k.models {
            for m in list {
                let id = client_id(p.kind, m);
                if !out.iter().any(|x| x.id == id) {
                    out.push(info(id, m.clone(), 0));
                }
            }
        }
    }
    out
}

/// The id a client uses to route to `model` on `kind`.
fn client_id(kind: ProviderKind, model: &str) -> String {
    if kind == ProviderKind::Anthropic {
        model.to_owned()
    } else {
        format!("{}/{model}", kind.name())
    }
}

fn info(id: String, display_name: String, created_unix: i64) -> ModelInfo {
    ModelInfo {
        kind: "model",
        id,
        display_name,
        created_at: rfc3339(created_unix),
    }
}

fn parse_upstream_list(kind: ProviderKind, body: &[u8]) -> Option<Vec<ModelInfo>> {
    #[derive(Deserialize)]
    struct List {
        data: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        id: String,
        display_name: Option<String>,
        created_at: Option<String>,
        created: Option<i64>,
    }
    let list: List = serde_json::from_slice(body).ok()?;
    Some(
        list.data
            .into_iter()
            .map(|m| {
                let mut i = info(
                    client_id(kind, &m.id),
                    m.display_name.unwrap_or_else(|| m.id.clone()),
                    m.created.unwrap_or(0),
                );
                if let Some(c) = m.created_at {
                    i.created_at = c;
                }
                i
            })
            .collect(),
    )
}

fn paginate<'a>(
    all: &'a [ModelInfo],
    q: &ModelsQuery,
    limit: usize,
) -> Result<(&'a [ModelInfo], bool), GatewayError> {
    let position = |id: &str| {
        all.iter().position(|m| m.id == id).ok_or_else(|| {
            GatewayError::invalid_request(format!("unknown model id `{id}` in cursor"))
        })
    };
    if let Some(before) = &q.before_id {
        let end = position(before)?;
        let start = end.saturating_sub(limit);
        return Ok((&all[start..end], start > 0));
    }
    let start = match &q.after_id {
        Some(after) => position(after)? + 1,
        None => 0,
    };
    let end = (start + limit).min(all.len());
    Ok((&all[start..end], end < all.len()))
}

fn to_json<T: Serialize>(v: &T) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| GatewayError::invalid_request(e.to_string()))
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_730_000_000), "2024-10-27T03:33:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn pages_by_cursor() {
        let all: Vec<_> = (0..5)
            .map(|i| info(format!("p/m{i}"), String::new(), 0))
            .collect();
        let q = |a: Option<&str>, b: Option<&str>| ModelsQuery {
            limit: None,
            after_id: a.map(str::to_owned),
            before_id: b.map(str::to_owned),
        };
        let (d, more) = paginate(&all, &q(None, None), 2).unwrap();
        assert_eq!((d[0].id.as_str(), d.len(), more), ("p/m0", 2, true));
        let (d, more) = paginate(&all, &q(Some("p/m2"), None), 2).unwrap();
        assert_eq!((d[0].id.as_str(), d.len(), more), ("p/m3", 2, false));
        let (d, more) = paginate(&all, &q(None, Some("p/m2")), 1).unwrap();
        assert_eq!((d[0].id.as_str(), more), ("p/m1", true));
        assert!(paginate(&all, &q(Some("zzz"), None), 2).is_err());
    }
}
