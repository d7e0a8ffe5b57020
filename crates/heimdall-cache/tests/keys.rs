//! Golden files of the cache's request keys: for each request under `fixtures/`, its direct key,
//! scope and embedded text as `fixtures/<name>.golden`. A change to normalisation shows here as
//! a diff (and means entries stored before it no longer match). `UPDATE_GOLDEN=1` rewrites the
//! goldens; review the diff before committing it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use heimdall_cache::request::hex;
use heimdall_cache::{Identity, keys};
use heimdall_protocol::canonical::Request;
use heimdall_protocol::dialect::Endpoint;

#[test]
fn request_keys_match_their_goldens() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let config = heimdall_cache::parse(serde_json::Value::Null).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for path in names {
        let body = std::fs::read(&path).unwrap();
        let req = Request::from_anthropic(&body, Endpoint::Messages).unwrap();
        let provider = req.model.split_once('/').map_or("anthropic", |(p, _)| p);
        let id = Identity {
            cache_key: "golden",
            front_door: "anthropic",
            provider,
            model: &req.model,
        };
        let k = keys(&config, &req, &id).expect("cached");
        let got = format!(
            "direct {}\nscope {}\ntext\n{}\n",
            hex(&k.direct),
            hex(&k.scope),
            k.text
        );
        let golden = path.with_extension("golden");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", golden.display()));
        assert_eq!(got, want, "{}", path.display());
    }
}
