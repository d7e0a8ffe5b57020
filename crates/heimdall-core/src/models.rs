//! Model listings: the configured providers' models in the front door's list format, with
//! cursor pagination. Ids are what a client puts in `model`: `openai/gpt-4o-mini`, and bare
//! `claude-…` for the default provider, so Anthropic-native clients see the ids they know.
//!
//! Upstream listings are asked concurrently, each bounded by its provider's request timeout;
//! a provider that fails or stalls contributes only the models its keys name. The merged list
//! is cached for `client.models_cache_ttl_seconds` (a list missing a provider for a short
//! while only), and one refresh runs at a time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use heimdall_protocol::dialect::{ModelInfo, ModelPage};
use heimdall_providers::Operation;
use http::HeaderMap;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::attempt::read_body;
use crate::attempt::{self, Call};
use crate::config::{ModelFilter, ProviderConfig};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::exchange::{Gateway, Snapshot};
use crate::route::{DEFAULT_PROVIDER, split_model};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelsQuery {
    pub limit: Option<u32>,
    pub after_id: Option<String>,
    pub before_id: Option<String>,
}

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 1000;
/// How long a listing that lacks a failed provider is reused.
const DEGRADED_TTL: Duration = Duration::from_secs(10);

/// The merged listing, when it stops being fresh, and the configuration generation it was
/// made from (a reload makes it stale at once).
#[derive(Default)]
pub(crate) struct ModelsCache(Mutex<Option<CachedList>>);

/// Fresh until, configuration generation, the list.
type CachedList = (Instant, u64, Arc<Vec<ModelInfo>>);

impl Gateway {
    pub async fn list_models(
        &self,
        ctx: &RequestContext,
        q: &ModelsQuery,
    ) -> Result<Bytes, GatewayError> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(GatewayError::invalid_request(format!(
                "limit: Input should be between 1 and {MAX_LIMIT}"
            )));
        }
        let all = self.catalog(&ctx.config).await;
        let (data, has_more) = paginate(&all, q, limit as usize)?;
        Ok(Bytes::from(
            ctx.front_door
                .encode_model_page(ModelPage { data, has_more }),
        ))
    }

    /// One model, answered under the id the client asked for (`anthropic/claude-x` and
    /// `claude-x` name the same model).
    pub async fn get_model(&self, ctx: &RequestContext, id: &str) -> Result<Bytes, GatewayError> {
        let (provider, name) = split_model(&ctx.config, id)?;
        let wanted = client_id(provider, name);
        let all = self.catalog(&ctx.config).await;
        let mut found = all
            .iter()
            .find(|m| m.id == wanted)
            .cloned()
            .ok_or_else(|| GatewayError::not_found(format!("model `{id}` not found")))?;
        id.clone_into(&mut found.id);
        Ok(Bytes::from(ctx.front_door.encode_model(&found)))
    }

    async fn catalog(&self, config: &Snapshot) -> Arc<Vec<ModelInfo>> {
        let mut cached = self.models.0.lock().await;
        if let Some((fresh_until, generation, list)) = cached.as_ref()
            && Instant::now() < *fresh_until
            && *generation == config.generation
        {
            return Arc::clone(list);
        }
        let lists = join_all(
            config
                .providers
                .iter()
                .map(|p| Self::provider_models(config, p)),
        )
        .await;
        let complete = lists.iter().all(|(_, ok)| *ok);
        let list: Arc<Vec<ModelInfo>> =
            Arc::new(lists.into_iter().flat_map(|(models, _)| models).collect());
        let ttl = if complete {
            config.models_cache_ttl
        } else {
            config.models_cache_ttl.min(DEGRADED_TTL)
        };
        *cached = Some((Instant::now() + ttl, config.generation, Arc::clone(&list)));
        list
    }

    /// The provider's models, and whether its upstream listing (if asked) succeeded.
    async fn provider_models(live: &Snapshot, p: &ProviderConfig) -> (Vec<ModelInfo>, bool) {
        let explicit = explicit_models(p);
        // Keys that all name their models say everything there is to list.
        if !p.allowed.list_models
            || p.keys
                .iter()
                .all(|k| matches!(k.models, ModelFilter::Only(_)))
        {
            return (explicit, true);
        }
        match Self::upstream_models(live, p).await {
            Ok(mut list) => {
                for m in explicit {
                    if !list.iter().any(|x| x.id == m.id) {
                        list.push(m);
                    }
                }
                (list, true)
            }
            Err(e) => {
                tracing::warn!(provider = %p.name, error = %e.message, "could not list upstream models");
                (explicit, false)
            }
        }
    }

    async fn upstream_models(
        live: &Snapshot,
        p: &ProviderConfig,
    ) -> Result<Vec<ModelInfo>, GatewayError> {
        let no_client_headers = HeaderMap::new();
        let answer = attempt::send(
            live.client(),
            Call {
                provider: p,
                model: None,
                operation: Operation::ListModels,
                stream: false,
                body: None,
                forward_headers: &no_client_headers,
                pinned_key: None,
                allowed_keys: None,
                direct_key: None,
                preferred_key: None,
                pass_through: false,
                drop_excess: live.drop_excess_requests,
                has_fallback: false,
            },
            &mut 0,
        )
        .await?;
        let body = read_body(answer, p).await?;
        let list = p
            .provider
            .dialect("")
            .decode_model_list(&body)
            .ok_or_else(|| {
                GatewayError::internal(format!("{} returned an unreadable model list", p.name))
            })?;
        Ok(list
            .into_iter()
            .map(|mut m| {
                m.id = client_id(&p.name, &m.id);
                m
            })
            .collect())
    }
}

fn explicit_models(p: &ProviderConfig) -> Vec<ModelInfo> {
    let mut out: Vec<ModelInfo> = Vec::new();
    for k in &p.keys {
        if let ModelFilter::Only(list) = &k.models {
            for m in list {
                let id = client_id(&p.name, m);
                if !out.iter().any(|x| x.id == id) {
                    out.push(ModelInfo {
                        id,
                        display_name: m.clone(),
                        created_at: heimdall_protocol::time::rfc3339(0),
                    });
                }
            }
        }
    }
    out
}

/// The id a client uses to route to `model` on `provider`.
fn client_id(provider: &str, model: &str) -> String {
    if provider == DEFAULT_PROVIDER {
        model.to_owned()
    } else {
        format!("{provider}/{model}")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_by_cursor() {
        let all: Vec<_> = (0..5)
            .map(|i| ModelInfo {
                id: format!("p/m{i}"),
                display_name: String::new(),
                created_at: String::new(),
            })
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
