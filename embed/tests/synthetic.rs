//! End-to-end tests on a tiny randomly initialised BERT written to a temporary model directory:
//! no real model needed. The forward pass is compared with a naive per-sequence reference
//! written here with plain loops (separate Q/K/V, explicit head loops, erf by series), and the
//! loader is fed broken directories.

use std::path::{Path, PathBuf};

use sona_embed::safetensors::write_f32;
use sona_embed::{EmbedError, Embedder};

const H: usize = 8;
const HEADS: usize = 2;
const LAYERS: usize = 2;
const INTER: usize = 16;
const MAX_POS: usize = 16;
const EPS: f64 = 1e-12;

const VOCAB: [&str; 16] = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s", "dog",
    "a", ",", "!", "##ly",
];

struct Rand(u64);
impl Rand {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn random_weights(seed: u64) -> Tensors {
    let mut r = Rand(seed);
    let mut t: Tensors = Vec::new();
    let mut add = |name: &str, shape: &[usize], r: &mut Rand| {
        let n = shape.iter().product();
        let mut v = r.vec(n);
        if name.ends_with("LayerNorm.weight") {
            for x in &mut v {
                *x += 1.0;
            }
        }
        t.push((name.to_owned(), shape.to_vec(), v));
    };
    add(
        "embeddings.word_embeddings.weight",
        &[VOCAB.len(), H],
        &mut r,
    );
    add(
        "embeddings.position_embeddings.weight",
        &[MAX_POS, H],
        &mut r,
    );
    add("embeddings.token_type_embeddings.weight", &[2, H], &mut r);
    add("embeddings.LayerNorm.weight", &[H], &mut r);
    add("embeddings.LayerNorm.bias", &[H], &mut r);
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for (name, o, i) in [
            ("attention.self.query", H, H),
            ("attention.self.key", H, H),
            ("attention.self.value", H, H),
            ("attention.output.dense", H, H),
            ("intermediate.dense", INTER, H),
            ("output.dense", H, INTER),
        ] {
            add(&format!("{p}.{name}.weight"), &[o, i], &mut r);
            add(&format!("{p}.{name}.bias"), &[o], &mut r);
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(&format!("{p}.{name}.weight"), &[H], &mut r);
            add(&format!("{p}.{name}.bias"), &[H], &mut r);
        }
    }
    t
}

fn config(act: &str) -> String {
    format!(
        r#"{{"hidden_size":{H},"num_hidden_layers":{LAYERS},"num_attention_heads":{HEADS},
        "intermediate_size":{INTER},"hidden_act":"{act}","layer_norm_eps":{EPS:e},
        "max_position_embeddings":{MAX_POS},"type_vocab_size":2,"vocab_size":{}}}"#,
        VOCAB.len()
    )
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("sona-embed-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_model(dir: &Path, tensors: &Tensors, act: &str) {
    std::fs::write(dir.join("config.json"), config(act)).unwrap();
    std::fs::write(dir.join("vocab.txt"), VOCAB.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 12, "do_lower_case": false}"#,
    )
    .unwrap();
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    std::fs::write(dir.join("model.safetensors"), write_f32(&refs)).unwrap();
}

fn get<'a>(t: &'a Tensors, name: &str) -> &'a [f32] {
    &t.iter().find(|(n, _, _)| n == name).unwrap().2
}

fn erf_series(x: f64) -> f64 {
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    loop {
        n += 1.0;
        term *= -x * x / n;
        let add = term / (2.0 * n + 1.0);
        sum += add;
        if add.abs() < 1e-18 {
            return sum * 2.0 / std::f64::consts::PI.sqrt();
        }
    }
}

/// y = W x + b for one vector, W in [out, in] layout.
fn dense(t: &Tensors, name: &str, x: &[f64]) -> Vec<f64> {
    let w = get(t, &format!("{name}.weight"));
    let b = get(t, &format!("{name}.bias"));
    (0..b.len())
        .map(|o| {
            b[o] as f64
                + (0..x.len())
                    .map(|i| w[o * x.len() + i] as f64 * x[i])
                    .sum::<f64>()
        })
        .collect()
}

fn norm(t: &Tensors, name: &str, x: &[f64]) -> Vec<f64> {
    let g = get(t, &format!("{name}.weight"));
    let b = get(t, &format!("{name}.bias"));
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
    x.iter()
        .enumerate()
        .map(|(i, v)| (v - mean) / (var + EPS).sqrt() * g[i] as f64 + b[i] as f64)
        .collect()
}

/// Naive sentence embedding of one token sequence in f64.
fn reference(t: &Tensors, ids: &[u32]) -> Vec<f64> {
    let n = ids.len();
    let dh = H / HEADS;
    let word = get(t, "embeddings.word_embeddings.weight");
    let pos = get(t, "embeddings.position_embeddings.weight");
    let typ = get(t, "embeddings.token_type_embeddings.weight");
    let mut x: Vec<Vec<f64>> = (0..n)
        .map(|p| {
            let e: Vec<f64> = (0..H)
                .map(|i| {
                    word[ids[p] as usize * H + i] as f64 + pos[p * H + i] as f64 + typ[i] as f64
                })
                .collect();
            norm(t, "embeddings.LayerNorm", &e)
        })
        .collect();
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        let q: Vec<Vec<f64>> = x
            .iter()
            .map(|v| dense(t, &format!("{p}.attention.self.query"), v))
            .collect();
        let k: Vec<Vec<f64>> = x
            .iter()
            .map(|v| dense(t, &format!("{p}.attention.self.key"), v))
            .collect();
        let v: Vec<Vec<f64>> = x
            .iter()
            .map(|v| dense(t, &format!("{p}.attention.self.value"), v))
            .collect();
        let mut ctx = vec![vec![0f64; H]; n];
        for h in 0..HEADS {
            for i in 0..n {
                let s: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..dh)
                            .map(|d| q[i][h * dh + d] * k[j][h * dh + d])
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..dh {
                    ctx[i][h * dh + d] = (0..n).map(|j| e[j] / z * v[j][h * dh + d]).sum();
                }
            }
        }
        for i in 0..n {
            let a = dense(t, &format!("{p}.attention.output.dense"), &ctx[i]);
            let r: Vec<f64> = x[i].iter().zip(&a).map(|(u, w)| u + w).collect();
            let y = norm(t, &format!("{p}.attention.output.LayerNorm"), &r);
            let inter: Vec<f64> = dense(t, &format!("{p}.intermediate.dense"), &y)
                .iter()
                .map(|&u| 0.5 * u * (1.0 + erf_series(u / std::f64::consts::SQRT_2)))
                .collect();
            let o = dense(t, &format!("{p}.output.dense"), &inter);
            let r: Vec<f64> = y.iter().zip(&o).map(|(u, w)| u + w).collect();
            x[i] = norm(t, &format!("{p}.output.LayerNorm"), &r);
        }
    }
    let mean: Vec<f64> = (0..H)
        .map(|d| x.iter().map(|r| r[d]).sum::<f64>() / n as f64)
        .collect();
    let len = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
    mean.iter().map(|v| v / len).collect()
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn tiny_model_matches_naive_reference_single_and_packed() {
    let dir = TempDir::new("ok");
    let t = random_weights(7);
    write_model(&dir.0, &t, "gelu");
    let emb = Embedder::load(&dir.0).unwrap();
    assert_eq!(emb.dim(), H);
    assert_eq!(emb.max_seq_length(), 12);
    let texts = [
        "The cat sat on the mat!",
        "dogs, cats",
        "",
        "a a a a a a a a a a a a a a a a a a a",
        "zebra dogly",
    ];
    let batch = emb.clone().with_threads(2).embed_batch(&texts).unwrap();
    for (text, b) in texts.iter().zip(&batch) {
        let ids = emb.tokenize(text);
        assert!(ids.len() <= 12);
        let want = reference(&t, &ids);
        let single = emb.embed(text).unwrap();
        assert!(
            max_diff(&single, &want) < 2e-5,
            "{text:?}: {single:?} vs {want:?}"
        );
        assert!(max_diff(b, &want) < 2e-5, "{text:?} packed");
    }
    assert_eq!(
        emb.tokenize("The cat sat on the mat!"),
        vec![2, 5, 6, 7, 8, 5, 9, 14, 3]
    );
    assert_eq!(emb.tokenize("dogs, cats"), vec![2, 11, 10, 13, 6, 10, 3]);
    assert_eq!(emb.tokenize("zebra dogly"), vec![2, 1, 11, 15, 3]);
    // Different weights must give a different answer (the comparison is not vacuous).
    let other = random_weights(8);
    let ids = emb.tokenize(texts[0]);
    assert!(max_diff(&emb.embed(texts[0]).unwrap(), &reference(&other, &ids)) > 1e-2);
}

#[test]
fn loader_reports_missing_files() {
    let dir = TempDir::new("missing");
    assert!(matches!(
        Embedder::load(&dir.0),
        Err(EmbedError::MissingFile(p)) if p.ends_with("config.json")
    ));
    write_model(&dir.0, &random_weights(1), "gelu");
    std::fs::remove_file(dir.0.join("model.safetensors")).unwrap();
    assert!(matches!(
        Embedder::load(&dir.0),
        Err(EmbedError::MissingFile(p)) if p.ends_with("model.safetensors")
    ));
}

#[test]
fn loader_rejects_bad_tensors_and_configs() {
    let dir = TempDir::new("bad");
    // Missing tensor.
    let mut t = random_weights(2);
    t.retain(|(n, _, _)| n != "encoder.layer.1.output.dense.bias");
    write_model(&dir.0, &t, "gelu");
    assert!(matches!(
        Embedder::load(&dir.0),
        Err(EmbedError::MissingTensor(n)) if n == "encoder.layer.1.output.dense.bias"
    ));
    // Wrong shape.
    let mut t = random_weights(2);
    for e in t.iter_mut() {
        if e.0 == "embeddings.position_embeddings.weight" {
            e.1 = vec![MAX_POS / 2, H];
            e.2.truncate(MAX_POS / 2 * H);
        }
    }
    write_model(&dir.0, &t, "gelu");
    assert!(matches!(
        Embedder::load(&dir.0),
        Err(EmbedError::BadShape { .. })
    ));
    // Unsupported activation.
    write_model(&dir.0, &random_weights(2), "relu");
    assert!(matches!(Embedder::load(&dir.0), Err(EmbedError::Config(_))));
    // Non-mean pooling.
    write_model(&dir.0, &random_weights(2), "gelu");
    std::fs::create_dir_all(dir.0.join("1_Pooling")).unwrap();
    std::fs::write(
        dir.0.join("1_Pooling/config.json"),
        r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    assert!(matches!(Embedder::load(&dir.0), Err(EmbedError::Config(_))));
    std::fs::remove_dir_all(dir.0.join("1_Pooling")).unwrap();
    // Sequence length beyond the position table.
    std::fs::write(
        dir.0.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 64}"#,
    )
    .unwrap();
    assert!(matches!(Embedder::load(&dir.0), Err(EmbedError::Config(_))));
    // Corrupt safetensors.
    write_model(&dir.0, &random_weights(2), "gelu");
    std::fs::write(
        dir.0.join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\xffjunk",
    )
    .unwrap();
    assert!(matches!(
        Embedder::load(&dir.0),
        Err(EmbedError::Safetensors(_))
    ));
}

#[test]
fn loader_rejects_wrong_dtype() {
    let dir = TempDir::new("dtype");
    write_model(&dir.0, &random_weights(3), "gelu");
    // Re-label one F32 tensor as F16 with a matching byte length (half the F32 size is
    // impossible to slice cleanly, so rewrite the file by hand with a small F16 tensor).
    let t = random_weights(3);
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, shape, values) in &t {
        let (dtype, bytes): (&str, Vec<u8>) = if name == "embeddings.LayerNorm.bias" {
            ("F16", values.iter().flat_map(|_| [0u8, 0u8]).collect())
        } else {
            ("F32", values.iter().flat_map(|v| v.to_le_bytes()).collect())
        };
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}),
        );
        data.extend(bytes);
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend(json);
    file.extend(data);
    std::fs::write(dir.0.join("model.safetensors"), file).unwrap();
    assert!(matches!(
        Embedder::load(&dir.0),
        Err(EmbedError::WrongDtype { name, dtype }) if name == "embeddings.LayerNorm.bias" && dtype == "F16"
    ));
}

#[test]
fn token_batch_rejects_bad_ids() {
    let dir = TempDir::new("ids");
    write_model(&dir.0, &random_weights(4), "gelu");
    let emb = Embedder::load(&dir.0).unwrap();
    assert!(matches!(
        emb.embed_token_batch(&[vec![2, 99, 3]]),
        Err(EmbedError::Input(_))
    ));
    assert!(matches!(
        emb.embed_token_batch(&[vec![]]),
        Err(EmbedError::Input(_))
    ));
    assert!(matches!(
        emb.embed_token_batch(&[vec![5; MAX_POS + 1]]),
        Err(EmbedError::Input(_))
    ));
    assert_eq!(emb.embed_token_batch(&[vec![2, 5, 3]]).unwrap().len(), 1);
}
