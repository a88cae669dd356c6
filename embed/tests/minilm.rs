//! Checks against independent references computed in Python (`embed/tools/make_goldens.py`):
//! token ids from the Hugging Face `tokenizers` library on the model's `tokenizer.json`, and
//! embeddings from a float64 numpy forward pass of the same weights.
//!
//! These tests need the real model. Without it (see `embed/fetch-model.sh`) they print a
//! warning and pass locally, but fail when the `CI` environment variable is set.

use std::sync::OnceLock;

use serde::Deserialize;
use sona_embed::{cosine, find_model_dir, Embedder};

#[derive(Deserialize)]
struct TokenCase {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct EmbedCase {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Goldens {
    max_seq_length: usize,
    tokens: Vec<TokenCase>,
    embeddings: Vec<EmbedCase>,
}

fn goldens() -> Goldens {
    serde_json::from_str(include_str!("goldens.json")).expect("goldens.json parses")
}

/// The shared embedder, or `None` (after a loud warning) when the model is absent outside CI.
fn embedder() -> Option<&'static Embedder> {
    static CELL: OnceLock<Option<Embedder>> = OnceLock::new();
    CELL.get_or_init(|| match find_model_dir() {
        Some(dir) => {
            Some(Embedder::load(&dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display())))
        }
        None => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "all-MiniLM-L6-v2 not found: CI must run `bash embed/fetch-model.sh` \
                     before the tests (or set SONA_MINILM_DIR)"
                );
            }
            eprintln!(
                "\n!!!!!!!! SKIPPED: all-MiniLM-L6-v2 not found. Run `bash embed/fetch-model.sh` \
                 or set SONA_MINILM_DIR to run the model tests. !!!!!!!!\n"
            );
            None
        }
    })
    .as_ref()
}

#[test]
fn token_ids_match_hf_tokenizers_exactly() {
    let Some(emb) = embedder() else { return };
    let g = goldens();
    assert_eq!(emb.max_seq_length(), g.max_seq_length);
    assert!(g.tokens.len() >= 30);
    let mut mismatches = Vec::new();
    for case in &g.tokens {
        let got = emb.tokenize(&case.text);
        if got != case.ids {
            mismatches.push(format!(
                "{:?}\n   got  {:?}\n   want {:?}",
                case.text, got, case.ids
            ));
        }
    }
    eprintln!(
        "token ids: {}/{} sentences match tokenizers exactly",
        g.tokens.len() - mismatches.len(),
        g.tokens.len()
    );
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn embeddings_match_numpy_reference() {
    let Some(emb) = embedder() else { return };
    let g = goldens();
    assert!(g.embeddings.len() >= 8);
    let mut worst = 0f32;
    for case in &g.embeddings {
        assert_eq!(emb.tokenize(&case.text), case.ids, "{:?}", case.text);
        let got = emb.embed(&case.text).unwrap();
        assert_eq!(got.len(), 384);
        assert_eq!(case.embedding.len(), 384);
        let diff = got
            .iter()
            .zip(&case.embedding)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "max |rust - numpy| = {diff:.3e}  ({} tokens) {:?}",
            case.ids.len(),
            case.text
        );
        assert!(diff < 1e-4, "{:?}: max abs diff {diff}", case.text);
        worst = worst.max(diff);
    }
    eprintln!(
        "worst max abs diff over {} sentences: {worst:.3e}",
        g.embeddings.len()
    );
}

#[test]
fn batch_matches_single_and_vectors_are_unit_length() {
    let Some(emb) = embedder() else { return };
    let g = goldens();
    let texts: Vec<&str> = g.embeddings.iter().map(|c| c.text.as_str()).collect();
    for threads in [1, 2, 3] {
        let e = emb.clone().with_threads(threads);
        let batch = e.embed_batch(&texts).unwrap();
        assert_eq!(batch.len(), texts.len());
        for (t, b) in texts.iter().zip(&batch) {
            let single = emb.embed(t).unwrap();
            let diff = single
                .iter()
                .zip(b)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-5,
                "threads={threads} {t:?}: batch differs by {diff}"
            );
            let norm: f32 = b.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
    }
    assert!(emb.embed_batch(&[]).unwrap().is_empty());
}

#[test]
fn similar_queries_are_closer_than_unrelated_ones() {
    let Some(emb) = embedder() else { return };
    let a = emb.embed("sci-fi like stranger things").unwrap();
    let b = emb
        .embed("science fiction shows similar to stranger things")
        .unwrap();
    let c = emb.embed("where can I watch succession").unwrap();
    let ab = cosine(&a, &b);
    let ac = cosine(&a, &c);
    let bc = cosine(&b, &c);
    eprintln!("cos(sci-fi, science fiction) = {ab:.4}, cos(sci-fi, succession) = {ac:.4}, cos(science fiction, succession) = {bc:.4}");
    assert!(ab > ac + 0.2, "{ab} vs {ac}");
    assert!(ab > bc + 0.2, "{ab} vs {bc}");
}

#[test]
fn model_dimensions_are_minilm() {
    let Some(emb) = embedder() else { return };
    assert_eq!(emb.dim(), 384);
    let cfg = emb.model().config();
    assert_eq!(
        (
            cfg.num_hidden_layers,
            cfg.num_attention_heads,
            cfg.intermediate_size
        ),
        (6, 12, 1536)
    );
    assert_eq!(emb.tokenizer().vocab().len(), 30522);
    // Truncation keeps [CLS] ... [SEP] within 256 tokens.
    let long = "word ".repeat(1000);
    let ids = emb.tokenize(&long);
    assert_eq!(ids.len(), 256);
    assert_eq!((ids[0], ids[255]), (101, 102));
}
