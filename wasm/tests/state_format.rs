//! `saveState` bytes are what rmp_serde writes for the state struct (now with the viewer's
//! recent history), states saved by earlier builds (three fields, e.g. in IndexedDB) still
//! load, and the hand-written MessagePack of `engine.rs` reads what rmp_serde writes.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sona_core::codec::{open, seal_msgpack};
use sona_core::personalize::format::Blob;
use sona_core::rng::Rng;
use sona_wasm::engine::{
    personalize_config, CatalogItem, ContextInput, EngineCore, InteractionInput,
};

/// The former `SavedState` (serde derive, sealed with `rmp_serde::to_vec_named`).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct OldSavedState {
    user_id: String,
    adapter: Blob,
    global: Blob,
}

/// The current state: the former fields plus the viewer's recent interactions.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct SavedState {
    user_id: String,
    adapter: Blob,
    global: Blob,
    history: Blob,
}

const MAGIC: [u8; 4] = *b"SNWS";

fn engine(user: &str) -> EngineCore {
    let router = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/router.bin"
    ))
    .unwrap();
    let cfg = personalize_config(Some(&json!({"d": 32, "rank": 4}))).unwrap();
    let mut e = EngineCore::new(&router, cfg, user).unwrap();
    let mut rng = Rng::new(4);
    let items: Vec<CatalogItem> = (0..6)
        .map(|i| CatalogItem {
            id: format!("t{i}"),
            title: format!("Title {i}"),
            genres: vec![],
            year: None,
            platforms: vec![],
        })
        .collect();
    let emb: Vec<f32> = (0..6 * 32).map(|_| rng.normal() * 0.2).collect();
    e.load_catalog(items, emb, None).unwrap();
    // Interactions (one rating) so the adapter holds pending items.
    for (i, kind, rating) in [
        (0, "skip", None),
        (2, "rating", Some(4.5)),
        (3, "watch_start", None),
    ] {
        e.record_interaction(InteractionInput {
            content_id: format!("t{i}"),
            kind: kind.into(),
            rating,
            context: ContextInput::default(),
            now: 1_000.0 + i as f64,
            embedding: Some((0..32).map(|_| rng.normal() * 0.2).collect()),
        })
        .unwrap();
    }
    e
}

#[test]
fn saved_state_bytes_match_the_former_rmp_serde_encoding() {
    let e = engine("viewer-ü");
    let state = e.save_state();
    let payload = open("engine state", MAGIC, 1, &state).unwrap();
    let cur: SavedState = rmp_serde::from_slice(payload).unwrap();
    assert_eq!(cur.user_id, "viewer-ü");
    assert!(cur.adapter.0.len() > 500 && cur.global.0.len() > 500);
    assert!(!cur.history.0.is_empty());
    assert_eq!(rmp_serde::to_vec_named(&cur).unwrap(), payload);
    assert_eq!(seal_msgpack(MAGIC, 1, &cur), state);
    // A reader of the former three fields still reads a new state (it skips `history`).
    let old: OldSavedState = rmp_serde::from_slice(payload).unwrap();
    assert_eq!(old.adapter, cur.adapter);
}

#[test]
fn states_written_by_rmp_serde_load_and_bad_states_are_clear_errors() {
    let e = engine("viewer");
    let state = e.save_state();
    let cur: SavedState =
        rmp_serde::from_slice(open("engine state", MAGIC, 1, &state).unwrap()).unwrap();
    // Named and compact (array) rmp_serde encodings both load, into the same engine state.
    for bytes in [
        seal_msgpack(MAGIC, 1, &cur),
        sona_core::codec::seal(MAGIC, 1, &rmp_serde::to_vec(&cur).unwrap()),
    ] {
        let mut f = engine("viewer");
        f.load_state(&bytes).unwrap();
        assert_eq!(f.save_state(), state);
        assert_eq!(f.stats().unwrap(), e.stats().unwrap());
    }
    // States of earlier builds (no history field), named and compact: the adapter and the
    // global tier load; the recent history starts empty.
    let old = OldSavedState {
        user_id: cur.user_id.clone(),
        adapter: Blob(cur.adapter.0.clone()),
        global: Blob(cur.global.0.clone()),
    };
    for bytes in [
        seal_msgpack(MAGIC, 1, &old),
        sona_core::codec::seal(MAGIC, 1, &rmp_serde::to_vec(&old).unwrap()),
    ] {
        let mut f = engine("viewer");
        f.load_state(&bytes).unwrap();
        assert_eq!(f.stats().unwrap(), e.stats().unwrap());
        let saved: SavedState =
            rmp_serde::from_slice(open("engine state", MAGIC, 1, &f.save_state()).unwrap())
                .unwrap();
        assert_eq!((&saved.adapter, &saved.global), (&cur.adapter, &cur.global));
        assert_ne!(saved.history, cur.history);
    }
    let mut other = engine("someone-else");
    let err = other.load_state(&state).unwrap_err().to_string();
    assert!(err.contains("belongs to user"), "{err}");
    // A valid envelope around payloads that are not a state.
    for payload in [&b"\x93\x01"[..], b"\x81\xa7user_id\xa1x", b"\xc3"] {
        let bad = sona_core::codec::seal(MAGIC, 1, payload);
        let err = other.load_state(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("saved state: engine state: payload could not be decoded"),
            "{err}"
        );
    }
    let err = other
        .load_state(&state[..state.len() - 3])
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
}
