//! Deterministic embeddings for the semantic cache's tests: `POST /v1/embeddings` (OpenAI),
//! `/api/embed` (Ollama) and Gemini's `:embedContent`. A text's vector counts its character
//! trigrams (lowercased) hashed into `dimension` buckets, scaled to length 1, so two texts'
//! similarity is known in advance ([`similarity`]): shared trigrams, shared direction.
//!
//! The dimension is the request's `dimensions` (OpenAI) or the number ending the model's name
//! (`trigram-256`), else [`DEFAULT_DIMENSION`]. A text holding `[[mock:embed-error]]` is
//! answered 500.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Shared, json_response};

pub const DEFAULT_DIMENSION: usize = 256;

/// The unit vector of `text`'s character trigrams in `dimension` buckets.
pub fn trigram_vector(text: &str, dimension: usize) -> Vec<f32> {
    let dimension = dimension.max(1);
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    let mut v = vec![0.0f32; dimension];
    for w in chars.windows(3) {
        // FNV-1a: stable across runs and platforms, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for c in w {
            for b in u32::from(*c).to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        v[(h % dimension as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Cosine similarity of two texts' trigram vectors.
pub fn similarity(a: &str, b: &str, dimension: usize) -> f32 {
    let (va, vb) = (trigram_vector(a, dimension), trigram_vector(b, dimension));
    va.iter().zip(&vb).map(|(x, y)| x * y).sum()
}

fn dimension(req: &Value) -> usize {
    if let Some(d) = req["dimensions"].as_u64() {
        return usize::try_from(d).unwrap_or(DEFAULT_DIMENSION);
    }
    req["model"]
        .as_str()
        .and_then(|m| m.rsplit('-').next())
        .and_then(|n| n.parse().ok())
        .filter(|d: &usize| (1..=65_536).contains(d))
        .unwrap_or(DEFAULT_DIMENSION)
}

/// The tokens the mock says a text counted (OpenAI's `usage`, Ollama's `prompt_eval_count`).
fn tokens(text: &str) -> usize {
    text.len() / 4
}

fn failing(text: &str) -> Option<Response> {
    text.contains("[[mock:embed-error]]").then(|| {
        json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": {"message": "mock: embedding failed", "type": "server_error"}}),
        )
    })
}

fn missing_input() -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"message": "mock: `input` must be a string", "type": "invalid_request_error"}}),
    )
}

/// `POST /v1/embeddings`.
pub(super) async fn openai(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = s.intake(&method, &uri, &headers, &body);
    s.latency().await;
    if let Some(resp) = super::openai::check_auth(&headers) {
        return resp;
    }
    let Some(text) = req["input"].as_str() else {
        return missing_input();
    };
    if let Some(resp) = failing(text) {
        return resp;
    }
    json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0,
                      "embedding": trigram_vector(text, dimension(&req))}],
            "model": req["model"],
            "usage": {"prompt_tokens": tokens(text), "total_tokens": tokens(text)},
        }),
    )
}

/// `POST /api/embed` (Ollama).
pub(super) async fn ollama(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = s.intake(&method, &uri, &headers, &body);
    s.latency().await;
    let Some(text) = req["input"].as_str() else {
        return missing_input();
    };
    if let Some(resp) = failing(text) {
        return resp;
    }
    json_response(
        StatusCode::OK,
        &json!({"model": req["model"], "embeddings": [trigram_vector(text, dimension(&req))],
                "prompt_eval_count": tokens(text)}),
    )
}

/// Gemini's `models/{model}:embedContent`, its model taken from the URL.
pub(super) fn gemini(model: &str, req: &Value) -> Response {
    let Some(text) = req["content"]["parts"][0]["text"].as_str() else {
        return missing_input();
    };
    if let Some(resp) = failing(text) {
        return resp;
    }
    let d = dimension(&json!({"model": model}));
    json_response(
        StatusCode::OK,
        &json!({"embedding": {"values": trigram_vector(text, d)}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_unit_length_and_similar_texts_are_close() {
        let v = trigram_vector("What is the capital of France?", 256);
        let norm: f32 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        let same = similarity(
            "What is the capital of France?",
            "what is the capital of france?",
            256,
        );
        assert!((same - 1.0).abs() < 1e-4, "case does not matter");
        let close = similarity(
            "What is the capital of France?",
            "What is the capital of France, please?",
            256,
        );
        let far = similarity(
            "What is the capital of France?",
            "Write a haiku about autumn leaves",
            256,
        );
        assert!(close > 0.8 && far < 0.5, "{close} {far}");
        assert_eq!(dimension(&json!({"model": "trigram-64"})), 64);
        assert_eq!(dimension(&json!({"model": "x", "dimensions": 8})), 8);
        assert_eq!(
            dimension(&json!({"model": "text-embedding-3-small"})),
            DEFAULT_DIMENSION
        );
    }
}
