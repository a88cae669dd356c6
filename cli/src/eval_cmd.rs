//! `sona eval`: trains every strategy under each protocol and writes
//! `eval.json`, `eval.md` and `eval.svg` to the output directory.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use sona_core::data::Dataset;
use sona_core::eval::{
    eval_static, replay, replay_record, score_recorded, static_split, temporal_split, Accumulator,
    Summary,
};
use sona_core::recommend::bpr::{Bpr, BprConfig};
use sona_core::recommend::content::{ContentBased, ContentConfig};
use sona_core::recommend::context::{ContextAware, ContextConfig};
use sona_core::recommend::ease::{Ease, EaseConfig};
use sona_core::recommend::fusion::{rrf, Component, Fusion, FusionConfig, DEFAULT_WEIGHTS};
use sona_core::recommend::graph::{GraphConfig, GraphSage};
use sona_core::recommend::item_knn::{ItemKnn, ItemKnnConfig};
use sona_core::recommend::memory::{MemoryConfig, PatternMemory};
use sona_core::recommend::popularity::Popularity;
use sona_core::recommend::sona::{Sona, SonaConfig};
use sona_core::recommend::trajectory::{TrajectoryConfig, TrajectoryMemory};
use sona_core::recommend::{OnlineRecommender, Reason};

use crate::dataset::load_dir;

pub const ALL_PROTOCOLS: [&str; 3] = ["static", "streaming", "cold_start"];

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// MovieLens directory (ml-100k layout or ml-latest CSVs).
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory for eval.json, eval.md, eval.svg.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Comma-separated subset of static,streaming,cold_start.
    #[arg(
        long,
        default_value = "static,streaming,cold_start",
        value_delimiter = ','
    )]
    pub protocols: Vec<String>,
    /// List length.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Robustness check: shuffle the items' indices with this seed first. Ratings
    /// made in the same second are replayed in item-index order, which is
    /// arbitrary; a few shuffles show how much a figure owes to that order.
    #[arg(long)]
    pub shuffle_items: Option<u64>,
}

/// Hyper-parameters chosen on a validation split carved out of a protocol's own
/// training side (never its test side).
#[derive(Clone, Debug)]
struct Tuned {
    ease_lambda: f64,
    /// cf, content, graph, context.
    weights: [f32; 4],
    /// The SONA layer's weights on top of `weights`: memory (ReasoningBank),
    /// trajectory memory, adapter.
    sona: [f32; 3],
    log: Vec<String>,
}

const MEMORY_WEIGHTS: [f32; 6] = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0];
const TRAJECTORY_WEIGHTS: [f32; 6] = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0];
const ADAPTER_WEIGHTS: [f32; 3] = [0.0, 0.1, 0.3];

/// The ReasoningBank memory over BPR item factors; `warm` streams `train` through
/// it first, `learn = false` makes it read-only.
fn memory_for(train: &Dataset, bpr: &Bpr, warm: bool, learn: bool) -> Result<PatternMemory> {
    let mut m = PatternMemory::new(
        train,
        bpr.item_factors(),
        bpr.factors(),
        &MemoryConfig {
            learn_patterns: true,
            ..Default::default()
        },
    )?;
    if warm {
        m.warm_up(train)?;
    }
    m.set_learning(learn);
    Ok(m)
}

/// The trajectory memory; `warm` streams `train` through it first, `learn = false`
/// makes it read-only.
fn trajectory_for(train: &Dataset, warm: bool, learn: bool) -> Result<TrajectoryMemory> {
    let mut m = TrajectoryMemory::new(train, &TrajectoryConfig::default())?;
    if warm {
        m.warm_up(train)?;
    }
    m.set_learning(learn);
    Ok(m)
}

fn lora_for(bpr: &Bpr, seed: u64) -> Result<Sona> {
    Ok(Sona::new(
        bpr.clone(),
        &SonaConfig {
            seed: seed ^ 0x50,
            ..Default::default()
        },
    )?)
}

/// The components a validation run fuses, in `ROLES` order then memory,
/// trajectory, adapter: `cf`, content, graph, context (trained on `train`), the
/// warm ReasoningBank memory, the warm trajectory memory and the LoRA adapter
/// over `bpr`.
fn validation_models(
    train: &Dataset,
    cf: Box<dyn OnlineRecommender>,
    bpr: &Bpr,
    seed: u64,
) -> Result<Vec<Box<dyn OnlineRecommender>>> {
    Ok(vec![
        cf,
        Box::new(ContentBased::train(train, &ContentConfig::default())?),
        Box::new(GraphSage::train(
            train,
            &GraphConfig {
                seed: seed ^ 0x9e37,
                ..Default::default()
            },
        )?),
        Box::new(ContextAware::train(train, &ContextConfig::default())?),
        Box::new(memory_for(train, bpr, true, true)?),
        Box::new(trajectory_for(train, true, true)?),
        Box::new(lora_for(bpr, seed)?),
    ])
}

/// The best (memory, trajectory, adapter) weights by NDCG@k of `score`, hybrid
/// weights fixed (ties keep the first, i.e. the smaller weights).
fn grid_sona(
    log: &mut Vec<String>,
    what: &str,
    k: usize,
    score: impl Fn(&[f32; 3]) -> f64,
) -> [f32; 3] {
    let mut best = (f64::NEG_INFINITY, [0.0f32; 3]);
    for &wm in &MEMORY_WEIGHTS {
        for &wt in &TRAJECTORY_WEIGHTS {
            for &wl in &ADAPTER_WEIGHTS {
                let v = score(&[wm, wt, wl]);
                if v > best.0 {
                    best = (v, [wm, wt, wl]);
                }
            }
        }
    }
    log.push(format!(
        "validation {what} sona weights (memory, trajectory, adapter) {:?}: ndcg@{k}={:.4}",
        best.1, best.0
    ));
    best.1
}

/// Streaming protocol: the SONA layer's weights are chosen on a validation replay
/// (temporal 80/20 split of the protocol's own training side, same replay rules),
/// the hybrid's weights kept as tuned. Every model's lists are recorded once and
/// re-fused per weight set.
fn tune_stream(train: &Dataset, seed: u64, k: usize, tuned: &mut Tuned) -> Result<()> {
    let t = Instant::now();
    let inner = temporal_split(train, 0.8)?;
    let bpr = Bpr::train(
        &inner.train,
        &BprConfig {
            seed,
            ..Default::default()
        },
    )?;
    let cf: Box<dyn OnlineRecommender> = match Ease::train(
        &inner.train,
        &EaseConfig {
            lambda: tuned.ease_lambda,
            ..Default::default()
        },
    ) {
        Ok(m) => Box::new(m),
        Err(_) => Box::new(bpr.clone()),
    };
    let mut models = validation_models(&inner.train, cf, &bpr, seed)?;
    let fc = FusionConfig::default();
    let events = replay_record(&inner, &mut models, fc.depth, 5)?;
    let n = train.n_items();
    let w = tuned.weights;
    let hybrid = score_recorded(
        &events,
        &[w[0], w[1], w[2], w[3], 0.0, 0.0, 0.0],
        fc.k,
        k,
        n,
    );
    tuned.log.push(format!(
        "validation replay hybrid: ndcg@{k}={:.4} hr@{k}={:.4}",
        hybrid.streaming.ndcg, hybrid.streaming.hr
    ));
    tuned.sona = grid_sona(&mut tuned.log, "replay", k, |s| {
        score_recorded(
            &events,
            &[w[0], w[1], w[2], w[3], s[0], s[1], s[2]],
            fc.k,
            k,
            n,
        )
        .streaming
        .ndcg
    });
    eprintln!(
        "  tuning the SONA layer on a validation replay took {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

const EASE_LAMBDAS: [f64; 5] = [50.0, 100.0, 250.0, 500.0, 1000.0];
const ROLES: [&str; 4] = ["cf", "content", "graph", "context"];

fn default_weights() -> [f32; 4] {
    let w = |role: &str| {
        DEFAULT_WEIGHTS
            .iter()
            .find(|(r, _)| *r == role)
            .map_or(0.0, |x| x.1)
    };
    [w("cf"), w("content"), w("graph"), w("context")]
}

/// Validation: a per-user 75/25 split of `train` (seed `seed ^ 0x5A`). Picks the
/// EASE λ with the best NDCG@k, then the RRF weights with the best NDCG@k over a
/// grid (component lists are computed once per user and re-fused per weight set).
fn tune(train: &Dataset, seed: u64, k: usize) -> Result<Tuned> {
    let t = Instant::now();
    let inner = static_split(train, 0.75, seed ^ 0x5A)?;
    let mut log = Vec::new();
    let mut best = (f64::NEG_INFINITY, EaseConfig::default().lambda);
    let mut ease_best = None;
    for &lambda in &EASE_LAMBDAS {
        match Ease::train(
            &inner.train,
            &EaseConfig {
                lambda,
                ..Default::default()
            },
        ) {
            Ok(m) => {
                let s = eval_static(&inner, &m, k);
                log.push(format!(
                    "validation ease lambda={lambda}: ndcg@{k}={:.4}",
                    s.ndcg
                ));
                if s.ndcg > best.0 {
                    best = (s.ndcg, lambda);
                    ease_best = Some(m);
                }
            }
            Err(e) => log.push(format!("validation ease lambda={lambda}: skipped ({e})")),
        }
    }
    let bpr = Bpr::train(
        &inner.train,
        &BprConfig {
            seed,
            ..Default::default()
        },
    )?;
    let cf: Box<dyn OnlineRecommender> = match ease_best {
        Some(m) => Box::new(m),
        None => Box::new(bpr.clone()),
    };
    let comps = validation_models(&inner.train, cf, &bpr, seed)?;
    // Per validation user: relevant items and each component's top-`depth` list.
    let depth = FusionConfig::default().depth;
    let n_items = train.n_items();
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); train.n_users()];
    let mut last_ts: Vec<i64> = vec![0; train.n_users()];
    for x in &inner.train.interactions {
        seen[x.user as usize].push(x.item);
        last_ts[x.user as usize] = last_ts[x.user as usize].max(x.timestamp);
    }
    let mut relevant: Vec<Vec<u32>> = vec![Vec::new(); train.n_users()];
    for x in &inner.test {
        relevant[x.user as usize].push(x.item);
    }
    let mut cases: Vec<(u32, Vec<u32>, Vec<Vec<u32>>)> = Vec::new();
    let mut mask = vec![false; n_items];
    for (u, rel) in relevant.iter_mut().enumerate() {
        if rel.is_empty() {
            continue;
        }
        rel.sort_unstable();
        rel.dedup();
        seen[u].iter().for_each(|&i| mask[i as usize] = true);
        let lists = comps
            .iter()
            .map(|c| c.recommend(u as u32, depth, &mask, last_ts[u]))
            .collect();
        seen[u].iter().for_each(|&i| mask[i as usize] = false);
        cases.push((u as u32, rel.clone(), lists));
    }
    let score = |w: &[f32; 7]| -> f64 {
        let mut acc = Accumulator::new(k, n_items);
        for (u, rel, lists) in &cases {
            let refs: Vec<&[u32]> = lists.iter().map(|l| l.as_slice()).collect();
            let fused: Vec<u32> = rrf(&refs, w, FusionConfig::default().k, k)
                .into_iter()
                .map(|x| x.0)
                .collect();
            acc.add(*u, &fused, rel);
        }
        acc.summary().ndcg
    };
    let dw = default_weights();
    let hyb = |w: &[f32; 4]| [w[0], w[1], w[2], w[3], 0.0, 0.0, 0.0];
    let mut best_w = (score(&hyb(&dw)), dw);
    log.push(format!(
        "validation hybrid default weights {dw:?}: ndcg@{k}={:.4}",
        best_w.0
    ));
    for &a in &[0.3f32, 0.5, 0.7, 0.9] {
        for &b in &[0.0f32, 0.05, 0.1, 0.2] {
            for &c in &[0.0f32, 0.1, 0.2, 0.4] {
                for &d in &[0.0f32, 0.05, 0.1] {
                    let w = [a, b, c, d];
                    let v = score(&hyb(&w));
                    if v > best_w.0 {
                        best_w = (v, w);
                    }
                }
            }
        }
    }
    log.push(format!(
        "validation hybrid best weights (cf, content, graph, context) {:?}: ndcg@{k}={:.4}",
        best_w.1, best_w.0
    ));
    let w = best_w.1;
    let sona = grid_sona(&mut log, "static", k, |x| {
        score(&[w[0], w[1], w[2], w[3], x[0], x[1], x[2]])
    });
    log.push(format!("validation ease best lambda {}", best.1));
    eprintln!(
        "  tuning on a validation split took {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for l in &log {
        eprintln!("  {l}");
    }
    Ok(Tuned {
        ease_lambda: best.1,
        weights: best_w.1,
        sona,
        log,
    })
}

/// Trains every system on `train`. Systems that cannot run on this data (EASE on a
/// huge catalog) are skipped with a note; the hybrid then uses BPR as its CF part.
fn build_systems(
    train: &Dataset,
    seed: u64,
    tuned: &Tuned,
    streaming: bool,
    notes: &mut Vec<String>,
) -> Result<Vec<Box<dyn OnlineRecommender>>> {
    fn timed<T>(name: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        eprintln!("  {name:<12} trained in {:.2}s", t.elapsed().as_secs_f64());
        out
    }
    let mut out: Vec<Box<dyn OnlineRecommender>> = Vec::new();
    out.push(Box::new(timed("popularity", || Popularity::train(train))?));
    out.push(Box::new(timed("item_knn", || {
        ItemKnn::train(train, &ItemKnnConfig::default())
    })?));
    let bpr = timed("bpr_mf", || {
        Bpr::train(
            train,
            &BprConfig {
                seed,
                ..Default::default()
            },
        )
    })?;
    out.push(Box::new(bpr.clone()));
    let lora = lora_for(&bpr, seed)?;
    out.push(Box::new(lora.clone()));
    let memory = timed("memory", || memory_for(train, &bpr, true, true))?;
    out.push(Box::new(memory.clone()));
    let trajectory = timed("trajectory", || trajectory_for(train, true, true))?;
    out.push(Box::new(trajectory.clone()));
    let ease = match timed("ease", || {
        Ease::train(
            train,
            &EaseConfig {
                lambda: tuned.ease_lambda,
                ..Default::default()
            },
        )
    }) {
        Ok(m) => {
            out.push(Box::new(m.clone()));
            Some(m)
        }
        Err(e) => {
            notes.push(format!("ease skipped: {e}"));
            None
        }
    };
    let content = timed("content", || {
        ContentBased::train(train, &ContentConfig::default())
    })?;
    out.push(Box::new(content.clone()));
    let graph = timed("graph", || {
        GraphSage::train(
            train,
            &GraphConfig {
                seed: seed ^ 0x9e37,
                ..Default::default()
            },
        )
    })?;
    out.push(Box::new(graph.clone()));
    let context = timed("context", || {
        ContextAware::train(train, &ContextConfig::default())
    })?;
    out.push(Box::new(context.clone()));
    let cf = |ease: &Option<Ease>| -> Box<dyn OnlineRecommender> {
        match ease {
            Some(m) => Box::new(m.clone()),
            None => Box::new(bpr.clone()),
        }
    };
    // (name, hybrid weights, SONA layer: (memory, trajectory memory)); the
    // layer's weights are `tuned.sona`.
    type Layer = Option<(PatternMemory, TrajectoryMemory)>;
    let mut fused: Vec<(&str, [f32; 4], Layer)> = vec![
        ("hybrid_default", default_weights(), None),
        ("hybrid", tuned.weights, None),
        (
            "sona",
            tuned.weights,
            Some((memory.clone(), trajectory.clone())),
        ),
    ];
    if streaming {
        // Ablations: both memories empty at the cutoff (only what is learned
        // during the replay), and both as of the cutoff but frozen (they learn
        // nothing more).
        fused.push((
            "sona_bank_empty",
            tuned.weights,
            Some((
                memory_for(train, &bpr, false, true)?,
                trajectory_for(train, false, true)?,
            )),
        ));
        let mut frozen = memory.clone();
        frozen.set_learning(false);
        let mut frozen_t = trajectory.clone();
        frozen_t.set_learning(false);
        fused.push(("sona_bank_frozen", tuned.weights, Some((frozen, frozen_t))));
    }
    for (name, weights, layer) in fused {
        let mut comps: Vec<Component> = [
            cf(&ease),
            Box::new(content.clone()) as Box<dyn OnlineRecommender>,
            Box::new(graph.clone()),
            Box::new(context.clone()),
        ]
        .into_iter()
        .zip(ROLES)
        .zip(weights)
        .map(|((model, role), weight)| Component {
            role: role.into(),
            weight,
            model,
        })
        .collect();
        if let Some((memory, trajectory)) = layer {
            let [wm, wt, wl] = tuned.sona;
            comps.push(Component {
                role: "memory".into(),
                weight: wm,
                model: Box::new(memory),
            });
            comps.push(Component {
                role: "trajectory".into(),
                weight: wt,
                model: Box::new(trajectory),
            });
            comps.push(Component {
                role: "adapter".into(),
                weight: wl,
                model: Box::new(lora.clone()),
            });
        }
        out.push(Box::new(Fusion::new(
            name,
            train,
            comps,
            FusionConfig::default(),
        )?));
    }
    Ok(out)
}

/// The top-k of `user` (training items excluded) with each result's explanation.
fn explained_example(
    train: &Dataset,
    m: &dyn OnlineRecommender,
    user: u32,
    k: usize,
) -> Vec<(String, String)> {
    let mut mask = vec![false; train.n_items()];
    let mut now = 0;
    for x in train.interactions.iter().filter(|x| x.user == user) {
        mask[x.item as usize] = true;
        now = now.max(x.timestamp);
    }
    m.recommend(user, k, &mask, now)
        .into_iter()
        .map(|i| {
            let why = match m.explain(user, i, now) {
                Some(Reason::Text(t)) => t,
                Some(Reason::BecauseYouWatched(j)) => format!(
                    "Because you watched {}",
                    train.items[j as usize].display_title()
                ),
                None => String::new(),
            };
            (train.items[i as usize].display_title(), why)
        })
        .collect()
}

fn summary_json(s: &Summary) -> Value {
    let mut m = Map::new();
    for (name, v) in s.named() {
        m.insert(name, json!(v));
    }
    m.insert("users".into(), json!(s.users));
    m.insert("lists".into(), json!(s.lists));
    Value::Object(m)
}

pub fn run(args: &EvalArgs) -> Result<()> {
    for p in &args.protocols {
        if !ALL_PROTOCOLS.contains(&p.as_str()) {
            bail!("unknown protocol {p:?} (expected one of {ALL_PROTOCOLS:?})");
        }
    }
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let want = |p: &str| args.protocols.iter().any(|x| x == p);
    let t0 = Instant::now();
    let mut ds = load_dir(&args.data)?;
    if let Some(seed) = args.shuffle_items {
        ds = ds.with_items_shuffled(seed);
    }
    eprintln!(
        "loaded {}: {} users, {} items, {} interactions in {:.2}s",
        args.data.display(),
        ds.n_users(),
        ds.n_items(),
        ds.interactions.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut notes = Vec::new();
    let mut tuning = Map::new();
    let mut examples: Vec<(String, String)> = Vec::new();
    // protocol → [(system, summary)]
    let mut results: Vec<(String, Vec<(String, Summary)>)> = Vec::new();
    if want("static") {
        eprintln!("static: per-user 75/25 random split (seed {})", args.seed);
        let split = static_split(&ds, 0.75, args.seed)?;
        let tuned = tune(&split.train, args.seed, args.k)?;
        tuning.insert("static".into(), json!({"ease_lambda": tuned.ease_lambda, "hybrid_weights": tuned.weights.map(|w| (w as f64 * 1000.0).round() / 1000.0), "sona_weights": tuned.sona.map(|w| (w as f64 * 1000.0).round() / 1000.0), "log": tuned.log}));
        let mut rows = Vec::new();
        for m in build_systems(&split.train, args.seed, &tuned, false, &mut notes)? {
            let s = eval_static(&split, m.as_ref(), args.k);
            eprintln!(
                "  {:<12} P@{k}={:.4} NDCG@{k}={:.4}",
                m.name(),
                s.precision,
                s.ndcg,
                k = args.k
            );
            if m.name() == "sona" {
                examples = explained_example(&split.train, m.as_ref(), 0, args.k);
            }
            rows.push((m.name().to_string(), s));
        }
        results.push(("static".into(), rows));
    }
    if want("streaming") || want("cold_start") {
        eprintln!("streaming: train before the 80th-percentile timestamp, replay the rest");
        let split = temporal_split(&ds, 0.8)?;
        let mut tuned = tune(&split.train, args.seed, args.k)?;
        tune_stream(&split.train, args.seed, args.k, &mut tuned)?;
        tuning.insert("streaming".into(), json!({"ease_lambda": tuned.ease_lambda, "hybrid_weights": tuned.weights.map(|w| (w as f64 * 1000.0).round() / 1000.0), "sona_weights": tuned.sona.map(|w| (w as f64 * 1000.0).round() / 1000.0), "log": tuned.log}));
        let (mut stream_rows, mut cold_rows) = (Vec::new(), Vec::new());
        for mut m in build_systems(&split.train, args.seed, &tuned, true, &mut notes)? {
            let t = Instant::now();
            let rep = replay(&split, m.as_mut(), args.k, 5)?;
            eprintln!(
                "  {:<12} stream HR@{k}={:.4} cold HR@{k}={:.4} ({:.1}s)",
                m.name(),
                rep.streaming.hr,
                rep.cold_start.hr,
                t.elapsed().as_secs_f64(),
                k = args.k
            );
            stream_rows.push((m.name().to_string(), rep.streaming));
            cold_rows.push((m.name().to_string(), rep.cold_start));
        }
        if want("streaming") {
            results.push(("streaming".into(), stream_rows));
        }
        if want("cold_start") {
            results.push(("cold_start".into(), cold_rows));
        }
    }
    notes.sort();
    notes.dedup();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut json = render_json(&ds, args, &results, &notes, tuning);
    json["example_user0_sona"] = json!(examples
        .iter()
        .map(|(t, e)| json!({"title": t, "explanation": e}))
        .collect::<Vec<_>>());
    std::fs::write(
        args.out.join("eval.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    let mut md = render_md(&ds, args, &results, &notes);
    if !examples.is_empty() {
        let _ = writeln!(
            md,
            "## Example: static top-{} of user 0 (source id {}), sona\n",
            args.k,
            ds.user_source_ids.first().copied().unwrap_or(0)
        );
        for (i, (t, e)) in examples.iter().enumerate() {
            let _ = writeln!(md, "{}. {t} — {e}", i + 1);
        }
    }
    std::fs::write(args.out.join("eval.md"), md)?;
    std::fs::write(args.out.join("eval.svg"), render_svg(&results, args.k))?;
    eprintln!(
        "wrote {}/eval.{{json,md,svg}} in {:.1}s total",
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn render_json(
    ds: &Dataset,
    args: &EvalArgs,
    results: &[(String, Vec<(String, Summary)>)],
    notes: &[String],
    tuning: Map<String, Value>,
) -> Value {
    let mut protocols = Map::new();
    for (p, rows) in results {
        let mut systems = Map::new();
        for (name, s) in rows {
            systems.insert(name.clone(), summary_json(s));
        }
        protocols.insert(p.clone(), json!({ "systems": systems }));
    }
    json!({
        "dataset": {
            "path": args.data.display().to_string(),
            "users": ds.n_users(),
            "items": ds.n_items(),
            "interactions": ds.interactions.len(),
        },
        "seed": args.seed,
        "shuffle_items": args.shuffle_items,
        "k": args.k,
        "protocols": protocols,
        "notes": notes,
        "tuning": tuning,
    })
}

fn render_md(
    ds: &Dataset,
    args: &EvalArgs,
    results: &[(String, Vec<(String, Summary)>)],
    notes: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# SONA offline evaluation\n");
    let _ = writeln!(
        s,
        "Data: `{}` ({} users, {} items, {} interactions). Seed {}. k = {}.\n",
        args.data.display(),
        ds.n_users(),
        ds.n_items(),
        ds.interactions.len(),
        args.seed,
        args.k
    );
    if let Some(seed) = args.shuffle_items {
        let _ = writeln!(
            s,
            "Robustness run: item indices shuffled with seed {seed} (same-second ratings replay in another order).\n"
        );
    }
    for (p, rows) in results {
        let _ = writeln!(s, "## {p}\n");
        let k = args.k;
        let _ = writeln!(
            s,
            "| system | P@{k} | R@{k} | NDCG@{k} | HR@{k} | MRR@{k} | coverage | users | lists |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for (name, m) in rows {
            let _ = writeln!(
                s,
                "| {name} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {} |",
                m.precision, m.recall, m.ndcg, m.hr, m.mrr, m.coverage, m.users, m.lists
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "## Protocols\n\n\
- static: per-user seeded 75/25 random split; all unseen-in-training items ranked; every test rating relevant.\n\
- streaming: train before the 80th-percentile timestamp; later events replayed in time order, each ranked \
(seen items excluded) before it is observed; metrics per event, averaged per user, then over users.\n\
- cold_start: users with no interaction before the cutoff, scored from their 6th event on.\n\
- MRR is MRR@k (0 when no relevant item is in the top k). Coverage: share of the catalog in any list.\n\
- EASE λ and the hybrid weights are chosen per protocol on a validation split of that \
protocol's training side (see eval.json `tuning`). hybrid_default uses the default weights \
(cf 0.3, content 0.2, graph 0.4, context 0.1). Platforms are synthetic and unused here.\n\
- Every strategy observes each replayed event (item-kNN/EASE/content/graph use the viewer's \
new history without retraining). sona = hybrid (same models, same weights) + the SONA layer: \
the ReasoningBank memory (`memory`: patterns \"viewers in this state watched that next\", \
learned live from the stream through the training period and the replay, visible after a \
1-hour sync delay), the trajectory memory (`trajectory`: exact-title links \"viewers who \
watched A watched B right before or after it\", learned live the same way, ranked from the \
viewer's latest title) and the per-viewer LoRA adapter with EWC++ (`bpr_lora`), fused by weighted \
RRF with weights chosen on the validation split (static) or a validation replay of the \
training side (streaming). Ablations: sona_bank_empty (both memories empty at the cutoff: \
only what is learned during the replay), sona_bank_frozen (both as of the cutoff, learning off).\n"
    );
    if !notes.is_empty() {
        let _ = writeln!(s, "## Notes\n");
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Grouped bar chart: one panel per protocol, NDCG@k and HR@k per system.
fn render_svg(results: &[(String, Vec<(String, Summary)>)], k: usize) -> String {
    let panel_w = 420.0;
    let (h, top, bottom, left) = (320.0, 40.0, 90.0, 50.0);
    let width = left + panel_w * results.len().max(1) as f64 + 20.0;
    let plot_h = h - top - bottom;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{h:.0}" viewBox="0 0 {width:.0} {h:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let colours = [("ndcg", "#4C72B0"), ("hr", "#DD8452")];
    let max_v = results
        .iter()
        .flat_map(|(_, r)| r.iter().flat_map(|(_, m)| [m.ndcg, m.hr]))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let scale = (max_v * 10.0).ceil() / 10.0;
    for (pi, (p, rows)) in results.iter().enumerate() {
        let x0 = left + pi as f64 * panel_w;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="20" font-size="14" text-anchor="middle">{}</text>"#,
            x0 + panel_w / 2.0,
            esc(p)
        );
        for t in 0..=5 {
            let v = scale * t as f64 / 5.0;
            let y = top + plot_h * (1.0 - v / scale);
            let _ = writeln!(
                s,
                r##"<line x1="{x0:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
                x0 + panel_w - 20.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"#,
                x0 - 4.0,
                y + 4.0
            );
        }
        let group_w = (panel_w - 30.0) / rows.len().max(1) as f64;
        let bar_w = group_w * 0.35;
        for (ri, (name, m)) in rows.iter().enumerate() {
            let gx = x0 + 5.0 + ri as f64 * group_w;
            for (bi, (metric, colour)) in colours.iter().enumerate() {
                let v = if *metric == "ndcg" { m.ndcg } else { m.hr };
                let bh = plot_h * v / scale;
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="{bar_w:.1}" height="{bh:.1}" fill="{colour}"><title>{} {metric}@{k} = {v:.4}</title></rect>"#,
                    gx + bi as f64 * bar_w,
                    top + plot_h - bh,
                    esc(name)
                );
            }
            let lx = gx + bar_w;
            let ly = top + plot_h + 12.0;
            let _ = writeln!(
                s,
                r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate(40 {lx:.1} {ly:.1})">{}</text>"#,
                esc(name)
            );
        }
    }
    for (i, (metric, colour)) in colours.iter().enumerate() {
        let x = left + i as f64 * 110.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{colour}"/>"#,
            h - 20.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{metric}@{k}</text>"#,
            x + 16.0,
            h - 10.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small ML-100K-layout directory: 40 users × 12 ratings over 30 items, two
    /// taste groups, the last 8 users only active late (cold start).
    fn fixture(dir: &std::path::Path) {
        std::fs::create_dir_all(dir).unwrap();
        let mut items = Vec::new();
        for i in 1..=30u32 {
            let mut flags = vec!["0"; 19];
            flags[if i <= 15 { 1 } else { 5 }] = "1";
            items.push(format!(
                "{i}|Movie {i}, The (199{})|01-Jan-1995||u|{}",
                i % 10,
                flags.join("|")
            ));
        }
        std::fs::write(dir.join("u.item"), items.join("\n") + "\n").unwrap();
        let mut rows = Vec::new();
        for u in 1..=40u32 {
            let late = u > 32;
            for k in 0..12u32 {
                let base = if u % 2 == 0 { 0 } else { 15 };
                let item = base + (u * 7 + k * 4) % 15 + 1;
                let ts = if late {
                    2_000_000 + (u * 100 + k) as i64
                } else {
                    1_000_000 + (k * 5_000 + u) as i64
                };
                rows.push(format!("{u}\t{item}\t{}\t{ts}", 1 + (u + k) % 5));
            }
        }
        std::fs::write(dir.join("u.data"), rows.join("\n") + "\n").unwrap();
    }

    #[test]
    fn eval_writes_all_protocols_and_is_deterministic() {
        let root = std::env::temp_dir().join(format!("sona-eval-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        fixture(&root.join("data"));
        let args = |out: &str| EvalArgs {
            data: root.join("data"),
            out: root.join(out),
            seed: 3,
            protocols: ALL_PROTOCOLS.iter().map(|s| s.to_string()).collect(),
            k: 10,
            shuffle_items: None,
        };
        run(&args("a")).unwrap();
        run(&args("b")).unwrap();
        let a = std::fs::read_to_string(root.join("a/eval.json")).unwrap();
        assert_eq!(
            a,
            std::fs::read_to_string(root.join("b/eval.json")).unwrap()
        );
        let v: Value = serde_json::from_str(&a).unwrap();
        for p in ALL_PROTOCOLS {
            let systems = v["protocols"][p]["systems"].as_object().unwrap();
            for name in [
                "popularity",
                "item_knn",
                "bpr_mf",
                "bpr_lora",
                "memory",
                "trajectory",
                "ease",
                "content",
                "graph",
                "context",
                "hybrid_default",
                "hybrid",
                "sona",
            ] {
                let m = &systems[name];
                for key in [
                    "precision@10",
                    "recall@10",
                    "ndcg@10",
                    "hr@10",
                    "mrr",
                    "coverage",
                ] {
                    let x = m[key].as_f64().unwrap();
                    assert!((0.0..=1.0).contains(&x), "{p} {name} {key} = {x}");
                }
            }
        }
        assert!(
            v["protocols"]["cold_start"]["systems"]["popularity"]["users"]
                .as_u64()
                .unwrap()
                > 0
        );
        let md = std::fs::read_to_string(root.join("a/eval.md")).unwrap();
        assert!(md.contains("| hybrid |"));
        assert!(md.contains("## Example: static top-10 of user 0"));
        let ex = v["example_user0_sona"].as_array().unwrap();
        assert_eq!(ex.len(), 10);
        assert!(ex
            .iter()
            .all(|e| !e["explanation"].as_str().unwrap().is_empty()));
        let svg = std::fs::read_to_string(root.join("a/eval.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let mut bad = args("c");
        bad.protocols = vec!["nope".into()];
        assert!(run(&bad).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
