//! The config store's documents encrypted at rest (`encryption_key`).
//!
//! The operator's passphrase becomes a 256-bit key once, at start, through Argon2id (slow on
//! purpose, so never per request) with a random salt that the first instance started with a
//! key writes into the store (`config_encryption`): every instance sharing a store derives the
//! same key. Every document of `config_entries` and `governance_entities` is then written
//! sealed with AES-256-GCM under a fresh random 96-bit nonce, as `enc:v1:` followed by
//! base64(nonce ‖ ciphertext ‖ tag). Whole documents are sealed rather than the fields known
//! to hold secrets: a provider's section keeps them in many places (key values, Azure, Vertex
//! and Bedrock credentials, secret headers) and a virtual key's document is its value, so
//! sealing everything cannot miss one that a later field adds.
//!
//! A document without the prefix was written before the key was set; it reads as it is, and
//! start-up seals it. The store also keeps a known text sealed with the key, so a wrong key
//! stops the start at once instead of failing on the first read.

use std::borrow::Cow;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use heimdall_core::config::Secret;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::{QueryBuilder, Row};

use crate::{Store, on_engine};

/// Argon2id's cost, RFC 9106's second recommended choice (64 MiB of memory, 3 passes, 4
/// lanes): a fraction of a second, paid once at start. Part of the `v1` format: other
/// values derive another key from the same passphrase.
const KDF_MEMORY_KIB: u32 = 64 * 1024;
const KDF_PASSES: u32 = 3;
const KDF_LANES: u32 = 4;
const SALT_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// Marks a sealed document; plain documents are JSON and never start with it.
const PREFIX: &str = "enc:v1:";

/// Sealed into the store with the key; opening it at start tells a wrong key.
const KEY_CHECK: &str = "heimdall config store key check";

/// The key and a source of nonces.
pub(crate) struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl Sealer {
    fn derive(passphrase: &str, salt: &[u8]) -> anyhow::Result<Sealer> {
        let params = Params::new(KDF_MEMORY_KIB, KDF_PASSES, KDF_LANES, Some(KEY_LEN))
            .map_err(|e| anyhow!("Argon2id parameters: {e}"))?;
        let mut key = [0u8; KEY_LEN];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), salt, &mut key)
            .map_err(|e| anyhow!("deriving a key from encryption_key: {e}"))?;
        let key = UnboundKey::new(&AES_256_GCM, &key)
            .map_err(|_| anyhow!("an AES-256-GCM key from encryption_key"))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// A random nonce per document: config writes come nowhere near the 2^32 messages under
    /// one key that random 96-bit nonces allow.
    fn seal(&self, plain: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow!("the system's random source failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain.as_bytes());
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| anyhow!("sealing a document failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(format!("{PREFIX}{}", BASE64.encode(out)))
    }

    /// `None` when `sealed` does not open with this key (another key, or a damaged value).
    fn open(&self, sealed: &str) -> Option<String> {
        let mut bytes = BASE64.decode(sealed.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self.key.open_in_place(nonce, Aad::empty(), rest).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// Whether a stored document is sealed.
pub(crate) fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// The store's `config_encryption` row.
struct KeyRecord {
    salt: String,
    key_check: String,
}

/// Argon2id off the async workers: it takes a fraction of a second of one core.
async fn derive(passphrase: &Secret, salt: Vec<u8>) -> anyhow::Result<Sealer> {
    let passphrase = passphrase.clone();
    tokio::task::spawn_blocking(move || Sealer::derive(passphrase.expose(), &salt))
        .await
        .context("deriving a key from encryption_key")?
}

/// The key of a store set up before; an error when `passphrase` is not the one it was set
/// up with. The message names neither.
async fn unlock(passphrase: &Secret, record: &KeyRecord) -> anyhow::Result<Sealer> {
    let salt = BASE64
        .decode(&record.salt)
        .context("the config store's config_encryption.salt is not base64")?;
    let sealer = derive(passphrase, salt).await?;
    if sealer.open(&record.key_check).as_deref() != Some(KEY_CHECK) {
        bail!(
            "encryption_key is not the key the config store's secrets were encrypted with; start with that key (a store cannot be read with another)"
        );
    }
    Ok(sealer)
}

impl Store {
    /// Makes this config store keep its documents encrypted with the key `passphrase` derives,
    /// or, without one, checks that it holds nothing encrypted. The first start with a key
    /// sets the store up (its salt and key check) and every start seals the documents still
    /// plain, so setting a key protects what the store already holds. Refuses a wrong key, and
    /// an encrypted store without a key.
    pub async fn with_encryption_key(
        mut self,
        passphrase: Option<&Secret>,
    ) -> anyhow::Result<Store> {
        let record = self.key_record().await?;
        let Some(passphrase) = passphrase else {
            if record.is_some() {
                bail!(
                    "the config store holds secrets encrypted with an encryption_key, and none is configured; set encryption_key in config.json (or HEIMDALL_ENCRYPTION_KEY, BIFROST_ENCRYPTION_KEY) to the key they were encrypted with"
                );
            }
            return Ok(self);
        };
        let sealer = match record {
            Some(record) => unlock(passphrase, &record).await?,
            None => {
                let mut salt = vec![0u8; SALT_LEN];
                SystemRandom::new()
                    .fill(&mut salt)
                    .map_err(|_| anyhow!("the system's random source failed"))?;
                let sealer = derive(passphrase, salt.clone()).await?;
                let mine = KeyRecord {
                    salt: BASE64.encode(&salt),
                    key_check: sealer.seal(KEY_CHECK)?,
                };
                if self.insert_key_record(&mine).await? {
                    tracing::info!(
                        "config store: secrets are encrypted from now on (encryption_key)"
                    );
                    sealer
                } else {
                    // Another instance set the store up meanwhile: its salt is the store's.
                    let theirs = self
                        .key_record()
                        .await?
                        .context("the config store's config_encryption row vanished")?;
                    unlock(passphrase, &theirs).await?
                }
            }
        };
        self.sealer = Some(Arc::new(sealer));
        let sealed = self.seal_plain_entries().await? + self.seal_plain_entities().await?;
        if sealed > 0 {
            tracing::info!(
                documents = sealed,
                "config store: documents written without encryption_key are encrypted now"
            );
        }
        Ok(self)
    }

    /// `text` as it is to be stored: sealed when the store has a key.
    pub(crate) fn seal<'a>(&self, text: &'a str) -> anyhow::Result<Cow<'a, str>> {
        match &self.sealer {
            Some(sealer) => Ok(Cow::Owned(sealer.seal(text)?)),
            None => Ok(Cow::Borrowed(text)),
        }
    }

    /// A stored document sealed, unless it is already: start-up's sealing of what was written
    /// before the store had a key.
    pub(crate) fn seal_stored(&self, stored: &str) -> anyhow::Result<String> {
        if is_sealed(stored) {
            return Ok(stored.to_owned());
        }
        Ok(self.seal(stored)?.into_owned())
    }

    /// A stored document as text: opened when sealed, as it is when written before the key
    /// was set. `what` names it in an error (never its content).
    pub(crate) fn unseal(
        &self,
        stored: String,
        what: impl Fn() -> String,
    ) -> anyhow::Result<String> {
        if !is_sealed(&stored) {
            return Ok(stored);
        }
        let Some(sealer) = &self.sealer else {
            bail!(
                "{} is encrypted, and no encryption_key is configured",
                what()
            );
        };
        sealer.open(&stored).with_context(|| {
            format!(
                "{} does not decrypt with the configured encryption_key (another key, or a damaged value)",
                what()
            )
        })
    }

    async fn key_record(&self) -> anyhow::Result<Option<KeyRecord>> {
        let row: Option<(String, String)> = on_engine!(self, write, DB, pool => {
            QueryBuilder::<DB>::new("SELECT salt, key_check FROM config_encryption WHERE id = 1")
                .build()
                .fetch_optional(pool)
                .await?
                .map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?)))
                .transpose()?
        });
        Ok(row.map(|(salt, key_check)| KeyRecord { salt, key_check }))
    }

    /// `false` when another instance wrote its record first.
    async fn insert_key_record(&self, record: &KeyRecord) -> anyhow::Result<bool> {
        let inserted = on_engine!(self, write, DB, pool => {
            QueryBuilder::<DB>::new("INSERT INTO config_encryption (id, salt, key_check) VALUES (1, ")
                .push_bind(record.salt.as_str())
                .push(", ")
                .push_bind(record.key_check.as_str())
                .push(") ON CONFLICT (id) DO NOTHING")
                .build()
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(inserted == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &[u8; SALT_LEN] = b"heimdall-salt-16";

    /// Sealed by another implementation (Python's `cryptography`: Argon2id with the parameters
    /// above over this passphrase and salt, then AES-256-GCM), so the stored format is the
    /// documented one and the parameters cannot change unnoticed.
    const SEALED_ELSEWHERE: &str = "enc:v1:AAECAwQFBgcICQoLpVD8/28Mk6a4YC6s5vJzZSLr1xXx3glyMYsrXSlF9vyRC1ANy9+Y5CNhQQTB6yfGIzY9vg==";

    #[test]
    fn opens_what_another_implementation_sealed() {
        let sealer = Sealer::derive("correct horse battery staple", SALT).unwrap();
        assert_eq!(
            sealer.open(SEALED_ELSEWHERE).as_deref(),
            Some(r#"{"keys":[{"value":"sk-0123456789"}]}"#)
        );
    }

    #[test]
    fn each_seal_has_its_own_nonce_and_a_changed_byte_does_not_open() {
        let sealer = Sealer::derive("correct horse battery staple", SALT).unwrap();
        let (a, b) = (
            sealer.seal("sk-secret").unwrap(),
            sealer.seal("sk-secret").unwrap(),
        );
        assert!(is_sealed(&a) && !a.contains("sk-secret"), "{a}");
        assert_ne!(a, b);
        assert_eq!(sealer.open(&a).as_deref(), Some("sk-secret"));
        assert_eq!(sealer.open(&b).as_deref(), Some("sk-secret"));
        let bytes = BASE64.decode(&a[PREFIX.len()..]).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            let mut changed = bytes.clone();
            changed[i] ^= 1;
            let changed = format!("{PREFIX}{}", BASE64.encode(changed));
            assert_eq!(sealer.open(&changed), None, "byte {i}");
        }
        for damaged in [
            "enc:v1:",
            "enc:v1:not base64!",
            "enc:v1:AAAA",
            "{\"plain\":1}",
        ] {
            assert_eq!(sealer.open(damaged), None, "{damaged}");
        }
        let other = Sealer::derive("another passphrase", SALT).unwrap();
        assert_eq!(other.open(&a), None);
    }
}
