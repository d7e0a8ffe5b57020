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

    /// The vector of an answer, and the tokens its input counted when the upstream says
    /// (OpenAI's `usage`, Ollama's `prompt_eval_count`; Gemini's `embedContent` reports none).
    pub fn decode(self, body: &[u8]) -> Result<Embedding, TranslateError> {
        #[derive(Deserialize)]
        struct OpenAi {
            data: Vec<Item>,
            usage: Option<OpenAiUsage>,
        }
        #[derive(Deserialize)]
        struct Item {
            embedding: Vec<f32>,
        }
        #[derive(Deserialize)]
        struct OpenAiUsage {
            prompt_tokens: Option<u64>,
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
            prompt_eval_count: Option<u64>,
        }
        let bad = |e: serde_json::Error| {
            TranslateError::invalid("embedding", format!("not an embedding answer: {e}"))
        };
        let (vector, input_tokens) = match self {
            Self::OpenAi => {
                let a = serde_json::from_slice::<OpenAi>(body).map_err(bad)?;
                let tokens = a.usage.and_then(|u| u.prompt_tokens);
                (a.data.into_iter().next().map(|i| i.embedding), tokens)
            }
            Self::Gemini => (
                Some(
                    serde_json::from_slice::<Gemini>(body)
                        .map_err(bad)?
                        .embedding
                        .values,
                ),
                None,
            ),
            Self::Ollama => {
                let a = serde_json::from_slice::<Ollama>(body).map_err(bad)?;
                (a.embeddings.into_iter().next(), a.prompt_eval_count)
            }
        };
        let vector = vector
            .filter(|v| !v.is_empty())
            .ok_or_else(|| TranslateError::invalid("embedding", "the answer holds no vector"))?;
        Ok(Embedding {
            vector,
            input_tokens,
        })
    }
}

/// One embedding answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub vector: Vec<f32>,
    /// Tokens of the embedded text, when the upstream reports them.
    pub input_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shape_round_trips_one_vector() {
        assert_eq!(
            EmbeddingWire::OpenAi
                .decode(
                    br#"{"data":[{"embedding":[0.5,1]}],"model":"m","usage":{"prompt_tokens":7}}"#
                )
                .unwrap(),
            Embedding {
                vector: vec![0.5, 1.0],
                input_tokens: Some(7)
            }
        );
        assert_eq!(
            EmbeddingWire::Gemini
                .decode(br#"{"embedding":{"values":[1,2]}}"#)
                .unwrap(),
            Embedding {
                vector: vec![1.0, 2.0],
                input_tokens: None
            }
        );
        assert_eq!(
            EmbeddingWire::Ollama
                .decode(br#"{"model":"m","embeddings":[[3]],"prompt_eval_count":2}"#)
                .unwrap(),
            Embedding {
                vector: vec![3.0],
                input_tokens: Some(2)
            }
        );
        // A compatible server without `usage` still gives its vector.
        assert_eq!(
            EmbeddingWire::OpenAi
                .decode(br#"{"data":[{"embedding":[1]}]}"#)
                .unwrap()
                .input_tokens,
            None
        );
        assert!(EmbeddingWire::OpenAi.decode(br#"{"data":[]}"#).is_err());
        assert!(EmbeddingWire::Ollama.decode(b"<html>").is_err());
        let body: serde_json::Value =
            serde_json::from_slice(&EmbeddingWire::Gemini.encode("e", "hi")).unwrap();
        assert_eq!(body["content"]["parts"][0]["text"], "hi");
        assert_eq!(body["model"], "models/e");
    }
}
