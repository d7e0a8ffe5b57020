//! Embedding requests, in the three shapes upstreams take them: OpenAI's `/embeddings` (and
//! every compatible server), Gemini's `embedContent`, Ollama's `/api/embed`. One text in, one
//! vector out: what the semantic cache needs.

use serde::Deserialize;
use serde_json::json;

use super::TranslateError;

/// The shape of an upstream's embedding API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingWire {
    OpenAi,
    Gemini,
    Ollama,
}

impl EmbeddingWire {
    /// The request body embedding `text` with `model`.
    pub fn encode(self, model: &str, text: &str) -> Vec<u8> {
        let body = match self {
            Self::OpenAi => json!({"model": model, "input": text}),
            // The model is in Gemini's URL; the name in the body must match it.
            Self::Gemini => json!({
                "model": format!("models/{model}"),
                "content": {"parts": [{"text": text}]},
            }),
            Self::Ollama => json!({"model": model, "input": text}),
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The vector of an answer.
    pub fn decode(self, body: &[u8]) -> Result<Vec<f32>, TranslateError> {
        #[derive(Deserialize)]
        struct OpenAi {
            data: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            embedding: Vec<f32>,
        }
        #[derive(Deserialize)]
        struct Gemini {
            embedding: Values,
        }
        #[derive(Deserialize)]
        struct Values {
            values: Vec<f32>,
        }
        #[derive(Deserialize)]
        struct Ollama {
            embeddings: Vec<Vec<f32>>,
        }
        let bad = |e: serde_json::Error| {
            TranslateError::invalid("embedding", format!("not an embedding answer: {e}"))
        };
        let vector = match self {
            Self::OpenAi => serde_json::from_slice::<OpenAi>(body)
                .map_err(bad)?
                .data
                .into_iter()
                .next()
                .map(|i| i.embedding),
            Self::Gemini => Some(
                serde_json::from_slice::<Gemini>(body)
                    .map_err(bad)?
                    .embedding
                    .values,
            ),
            Self::Ollama => serde_json::from_slice::<Ollama>(body)
                .map_err(bad)?
                .embeddings
                .into_iter()
                .next(),
        };
        vector
            .filter(|v| !v.is_empty())
            .ok_or_else(|| TranslateError::invalid("embedding", "the answer holds no vector"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shape_round_trips_one_vector() {
        assert_eq!(
            EmbeddingWire::OpenAi
                .decode(br#"{"data":[{"embedding":[0.5,1]}],"model":"m"}"#)
                .unwrap(),
            [0.5, 1.0]
        );
        assert_eq!(
            EmbeddingWire::Gemini
                .decode(br#"{"embedding":{"values":[1,2]}}"#)
                .unwrap(),
            [1.0, 2.0]
        );
        assert_eq!(
            EmbeddingWire::Ollama
                .decode(br#"{"model":"m","embeddings":[[3]]}"#)
                .unwrap(),
            [3.0]
        );
        assert!(EmbeddingWire::OpenAi.decode(br#"{"data":[]}"#).is_err());
        assert!(EmbeddingWire::Ollama.decode(b"<html>").is_err());
        let body: serde_json::Value =
            serde_json::from_slice(&EmbeddingWire::Gemini.encode("e", "hi")).unwrap();
        assert_eq!(body["content"]["parts"][0]["text"], "hi");
        assert_eq!(body["model"], "models/e");
    }
}
