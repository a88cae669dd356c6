//! `sona train-router`: generate labelled queries from the catalog, train the
//! FastGRNN router, report f32 and int8 accuracies, write the int8 model file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use sona_core::router::querygen::{generate_splits, parse_labeled_tsv, CatalogFacts, LabeledQuery};
use sona_core::router::{
    argmax, train, InputKind, Model, ModelConfig, Pool, QuantClassifier, Route, SeqInput,
    SparsityConfig, TokenizerConfig, TrainConfig, TrainInputs, TrainReport,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputChoice {
    /// Raw query text (hashed word + char n-gram embeddings).
    Text,
    /// all-MiniLM-L6-v2 query embeddings (needs --minilm).
    Embedding,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// MovieLens 100K directory (reads u.item for titles, years, genres).
    #[arg(long)]
    data: PathBuf,
    /// Seed for query generation, initialisation and augmentation.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Output model file (int8).
    #[arg(long, default_value = "models/router.bin")]
    out: PathBuf,
    /// Also write the f32 model here.
    #[arg(long)]
    f32_out: Option<PathBuf>,
    /// Generated queries per route (80% train, 10% val, 10% test).
    #[arg(long, default_value_t = 8000)]
    per_route: usize,
    /// Hand-written evaluation files (`query<TAB>route`), never trained on. The first is
    /// reported as `handwritten`, the next ones as `handwritten_b`, `handwritten_c`, …
    #[arg(
        long,
        num_args = 1..,
        default_values = ["tests/data/router_handwritten.tsv", "tests/data/router_handwritten_b.tsv"]
    )]
    handwritten: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = InputChoice::Text)]
    input: InputChoice,
    /// all-MiniLM-L6-v2 model directory (for --input embedding).
    #[arg(long)]
    minilm: Option<PathBuf>,
    #[arg(long, default_value_t = 15)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 16)]
    emb_dim: usize,
    #[arg(long, default_value_t = 3000)]
    buckets: u32,
    /// Smallest / largest character n-gram of the tokenizer.
    #[arg(long, default_value_t = 3)]
    min_n: u8,
    #[arg(long, default_value_t = 5)]
    max_n: u8,
    /// Seed for initialisation and augmentation (default: --seed).
    #[arg(long)]
    init_seed: Option<u64>,
    /// Low rank of W (default: dense).
    #[arg(long)]
    w_rank: Option<usize>,
    /// Low rank of U (default: dense).
    #[arg(long)]
    u_rank: Option<usize>,
    /// Keep this fraction of W and U entries (iterative hard thresholding); 1 = dense.
    #[arg(long, default_value_t = 1.0)]
    keep: f32,
    #[arg(long, default_value_t = 0.01)]
    lr: f32,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 0.25)]
    word_dropout: f32,
    #[arg(long, default_value_t = 0.08)]
    typo: f32,
    #[arg(long, default_value_t = 0.2)]
    noise: f32,
    /// Return an exponential moving average of the weights (decay per step; 0 = off).
    #[arg(long, default_value_t = 0.999)]
    ema: f32,
    /// Label smoothing ε of the training loss (0 = plain cross-entropy).
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f32,
    /// Probability of swapping a word with its neighbour during training (word-order noise).
    #[arg(long, default_value_t = 0.0)]
    word_swap: f32,
    /// Head reads the mean of all hidden states instead of the last one.
    #[arg(long)]
    mean_pool: bool,
    /// Embedding input: number of steps the 384-d vector is split into.
    #[arg(long, default_value_t = 8)]
    steps: usize,
}

/// Report name of the `i`-th hand-written file: `handwritten`, `handwritten_b`, ….
fn hand_name(i: usize) -> String {
    if i == 0 {
        "handwritten".to_string()
    } else {
        format!("handwritten_{}", char::from(b'a' + (i % 26) as u8))
    }
}

/// Named evaluation sets: the generated splits, then the hand-written files.
fn eval_sets<'a>(
    splits: &'a sona_core::router::querygen::QuerySplits,
    handwritten: &'a [(String, Vec<LabeledQuery>)],
) -> Vec<(String, &'a [LabeledQuery])> {
    let mut sets: Vec<(String, &[LabeledQuery])> = vec![
        ("train".to_string(), &splits.train),
        ("val".to_string(), &splits.val),
        ("test".to_string(), &splits.test),
    ];
    for (n, q) in handwritten {
        sets.push((n.clone(), q));
    }
    sets
}

fn label_of(r: Route) -> usize {
    r.index()
}

fn route_labels() -> Vec<String> {
    Route::ALL.iter().map(|r| r.name().to_string()).collect()
}

/// Accuracy and per-class confusion for a predictor.
struct Eval {
    correct: usize,
    total: usize,
    confusion: [[usize; 6]; 6],
}

impl Eval {
    fn acc(&self) -> f64 {
        100.0 * self.correct as f64 / self.total.max(1) as f64
    }
}

fn evaluate(
    qs: &[LabeledQuery],
    mut predict: impl FnMut(usize, &LabeledQuery) -> Result<Vec<f32>>,
) -> Result<Eval> {
    let mut e = Eval {
        correct: 0,
        total: 0,
        confusion: [[0; 6]; 6],
    };
    for (i, q) in qs.iter().enumerate() {
        let p = predict(i, q)?;
        let k = argmax(&p);
        e.total += 1;
        e.confusion[q.route.index()][k] += 1;
        if k == q.route.index() {
            e.correct += 1;
        }
    }
    Ok(e)
}

fn print_confusion(name: &str, e: &Eval) {
    eprintln!("confusion ({name}; rows = truth, cols = predicted):");
    for (r, row) in e.confusion.iter().enumerate() {
        eprintln!("  {:>20} {:?}", Route::ALL[r].name(), row);
    }
}

pub fn run(a: TrainArgs) -> Result<()> {
    let items = crate::dataset::load_dir(&a.data)?.items;
    let facts = CatalogFacts::from_items(&items);
    let splits = generate_splits(&facts, a.per_route, a.seed);
    let mut handwritten = Vec::new();
    for (i, path) in a.handwritten.iter().enumerate() {
        let name = hand_name(i);
        match std::fs::read_to_string(path) {
            Ok(t) => handwritten.push((
                name,
                parse_labeled_tsv(&t).with_context(|| format!("parsing {}", path.display()))?,
            )),
            Err(e) => eprintln!(
                "note: no hand-written file at {} ({e}); skipping that evaluation",
                path.display()
            ),
        }
    }
    eprintln!(
        "data: {} items; queries train {} / val {} / test {}; hand-written {:?}",
        items.len(),
        splits.train.len(),
        splits.val.len(),
        splits.test.len(),
        handwritten
            .iter()
            .map(|(n, q)| format!("{n} {}", q.len()))
            .collect::<Vec<_>>()
    );
    if splits.train.is_empty() {
        bail!(
            "the generator produced no training queries (per_route {})",
            a.per_route
        );
    }
    let sparsity = if a.keep < 1.0 {
        Some(SparsityConfig {
            keep_w: a.keep,
            keep_u: a.keep,
            dense_frac: 0.3,
            iht_frac: 0.3,
        })
    } else {
        None
    };
    let tcfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch,
        lr: a.lr,
        lr_final_frac: 0.05,
        weight_decay: 0.0,
        word_dropout: a.word_dropout,
        typo_prob: a.typo,
        input_noise: a.noise,
        clip_norm: 5.0,
        sparsity,
        ema_decay: if a.ema > 0.0 { Some(a.ema) } else { None },
        label_smoothing: a.label_smoothing,
        word_swap: a.word_swap,
    };
    match a.input {
        InputChoice::Text => train_text_router(&a, &splits, &handwritten, tcfg),
        InputChoice::Embedding => train_embedding_router(&a, &splits, &handwritten, tcfg),
    }
}

/// Embed every query with all-MiniLM-L6-v2 (batched, 1 thread: the machine is shared).
fn embed_all(emb: &sona_embed::Embedder, qs: &[LabeledQuery], name: &str) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(qs.len());
    for chunk in qs.chunks(64) {
        let texts: Vec<&str> = chunk.iter().map(|q| q.text.as_str()).collect();
        out.extend(
            emb.embed_batch(&texts)
                .with_context(|| format!("embedding the {name} queries"))?,
        );
    }
    Ok(out)
}

fn train_embedding_router(
    a: &TrainArgs,
    splits: &sona_core::router::querygen::QuerySplits,
    handwritten: &[(String, Vec<LabeledQuery>)],
    tcfg: TrainConfig,
) -> Result<()> {
    let dir = a
        .minilm
        .as_ref()
        .context("--input embedding needs --minilm DIR (all-MiniLM-L6-v2: model.safetensors, vocab.txt, config.json)")?;
    let emb = sona_embed::Embedder::load(dir)
        .with_context(|| format!("loading MiniLM from {}", dir.display()))?
        .with_threads(1);
    let dim = emb.dim();
    if a.steps == 0 || dim % a.steps != 0 {
        bail!("--steps {} must divide the embedding size {dim}", a.steps);
    }
    let t0 = std::time::Instant::now();
    let sets = eval_sets(splits, handwritten);
    let mut feats = Vec::new();
    for (name, set) in &sets {
        feats.push(embed_all(&emb, set, name)?);
        eprintln!(
            "embedded {name} ({} queries, {:.0} s so far)",
            set.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    let mcfg = ModelConfig {
        input: InputKind::Features {
            steps: a.steps,
            step_dim: dim / a.steps,
            // MiniLM vectors are unit-norm: scale components to unit variance.
            input_scale: (dim as f32).sqrt(),
        },
        hidden: a.hidden,
        n_classes: Route::COUNT,
        w_rank: a.w_rank,
        u_rank: a.u_rank,
        pool: if a.mean_pool { Pool::Mean } else { Pool::Last },
    };
    let labels: Vec<usize> = splits.train.iter().map(|q| label_of(q.route)).collect();
    let (clf, report) = train(
        mcfg,
        route_labels(),
        TrainInputs::Features(&feats[0]),
        &labels,
        &tcfg,
        a.seed,
        &mut |s| {
            eprintln!(
                "epoch {:>2} [{}] loss {:.4} train-acc(noisy) {:.2}%",
                s.epoch + 1,
                s.phase,
                s.mean_loss,
                100.0 * s.train_accuracy
            )
        },
    )?;
    let q = QuantClassifier::from_classifier(&clf)?;
    let f32m = Model::F32(clf);
    let i8m = Model::Int8(q);
    let mut lines = Vec::new();
    for (k, (name, set)) in sets.iter().enumerate() {
        if set.is_empty() {
            continue;
        }
        let f = &feats[k];
        let ef = evaluate(set, |i, _| Ok(f32m.predict(SeqInput::Features(&f[i]))?))?;
        let ei = evaluate(set, |i, _| Ok(i8m.predict(SeqInput::Features(&f[i]))?))?;
        if name == "test" || name.starts_with("handwritten") {
            print_confusion(&format!("{name}, int8"), &ei);
        }
        lines.push(format!(
            "{name:>11}: n={:>5}  f32 {:6.2}%  int8 {:6.2}%",
            set.len(),
            ef.acc(),
            ei.acc()
        ));
    }
    let meta = format!(
        "sona train-router --input embedding --minilm <all-MiniLM-L6-v2> --data <ml-100k> --seed {} --per-route {} --epochs {} --hidden {} --steps {} --keep {} --lr {} --batch {} --noise {}{}\n{}\ndensity W {:.3} U {:.3}",
        a.seed,
        a.per_route,
        a.epochs,
        a.hidden,
        a.steps,
        a.keep,
        a.lr,
        a.batch,
        a.noise,
        if a.mean_pool { " --mean-pool" } else { "" },
        lines.join("\n"),
        report.density_w,
        report.density_u,
    );
    ship(a, &f32m, &i8m, &meta, &lines, &report)
}

fn train_text_router(
    a: &TrainArgs,
    splits: &sona_core::router::querygen::QuerySplits,
    handwritten: &[(String, Vec<LabeledQuery>)],
    tcfg: TrainConfig,
) -> Result<()> {
    let mcfg = ModelConfig {
        input: InputKind::Text {
            tokenizer: TokenizerConfig {
                n_buckets: a.buckets,
                min_n: a.min_n,
                max_n: a.max_n,
                max_words: 32,
            },
            emb_dim: a.emb_dim,
        },
        hidden: a.hidden,
        n_classes: Route::COUNT,
        w_rank: a.w_rank,
        u_rank: a.u_rank,
        pool: if a.mean_pool { Pool::Mean } else { Pool::Last },
    };
    let texts: Vec<&str> = splits.train.iter().map(|q| q.text.as_str()).collect();
    let labels: Vec<usize> = splits.train.iter().map(|q| label_of(q.route)).collect();
    let (clf, report) = train(
        mcfg,
        route_labels(),
        TrainInputs::Texts(&texts),
        &labels,
        &tcfg,
        a.init_seed.unwrap_or(a.seed),
        &mut |s| {
            eprintln!(
                "epoch {:>2} [{}] loss {:.4} train-acc(augmented) {:.2}%",
                s.epoch + 1,
                s.phase,
                s.mean_loss,
                100.0 * s.train_accuracy
            )
        },
    )?;
    let q = QuantClassifier::from_classifier(&clf)?;
    let f32m = Model::F32(clf);
    let i8m = Model::Int8(q);
    let mut lines = Vec::new();
    for (name, set) in eval_sets(splits, handwritten) {
        if set.is_empty() {
            continue;
        }
        let ef = evaluate(set, |_, q| model_predict(&f32m, &q.text))?;
        let ei = evaluate(set, |_, q| model_predict(&i8m, &q.text))?;
        if name == "test" || name.starts_with("handwritten") {
            print_confusion(&format!("{name}, int8"), &ei);
            if std::env::var_os("SONA_SHOW_ERRORS").is_some() {
                for q in set {
                    let k = argmax(&model_predict(&i8m, &q.text)?);
                    if k != q.route.index() {
                        eprintln!(
                            "  miss [{name}] {:?}: {} -> {}",
                            q.text,
                            q.route.name(),
                            Route::ALL[k].name()
                        );
                    }
                }
            }
        }
        lines.push(format!(
            "{name:>11}: n={:>5}  f32 {:6.2}%  int8 {:6.2}%",
            set.len(),
            ef.acc(),
            ei.acc()
        ));
    }
    let meta = format!(
        "sona train-router --data <ml-100k> --seed {}{} --min-n {} --max-n {} --per-route {} --epochs {} --hidden {} --emb-dim {} --buckets {} --keep {} --lr {} --batch {} --word-dropout {} --typo {} --noise {} --ema {}{}{}{}{}{}\n{}\ndensity W {:.3} U {:.3}",
        a.seed,
        a.init_seed.map(|s| format!(" --init-seed {s}")).unwrap_or_default(),
        a.min_n,
        a.max_n,
        a.per_route,
        a.epochs,
        a.hidden,
        a.emb_dim,
        a.buckets,
        a.keep,
        a.lr,
        a.batch,
        a.word_dropout,
        a.typo,
        a.noise,
        a.ema,
        a.w_rank.map(|r| format!(" --w-rank {r}")).unwrap_or_default(),
        a.u_rank.map(|r| format!(" --u-rank {r}")).unwrap_or_default(),
        if a.mean_pool { " --mean-pool" } else { "" },
        if a.label_smoothing > 0.0 {
            format!(" --label-smoothing {}", a.label_smoothing)
        } else {
            String::new()
        },
        if a.word_swap > 0.0 {
            format!(" --word-swap {}", a.word_swap)
        } else {
            String::new()
        },
        lines.join("\n"),
        report.density_w,
        report.density_u,
    );
    ship(a, &f32m, &i8m, &meta, &lines, &report)
}

/// Write the int8 model (and the f32 one when asked), then print the accuracy lines.
fn ship(
    a: &TrainArgs,
    f32m: &Model,
    i8m: &Model,
    meta: &str,
    lines: &[String],
    report: &TrainReport,
) -> Result<()> {
    let bytes = i8m.to_bytes(meta);
    write(&a.out, &bytes)?;
    if let Some(p) = &a.f32_out {
        write(p, &f32m.to_bytes(meta))?;
    }
    for l in lines {
        println!("{l}");
    }
    println!(
        "density W {:.3} U {:.3}; wrote {} ({} bytes, int8)",
        report.density_w,
        report.density_u,
        a.out.display(),
        bytes.len()
    );
    Ok(())
}

fn model_predict(m: &Model, text: &str) -> Result<Vec<f32>> {
    let tk = m.tokenizer().context("text model")?;
    let tok = tk.tokenize(text);
    Ok(m.predict(SeqInput::Tokens(&tok))?)
}

fn write(p: &PathBuf, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = p.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))
}
