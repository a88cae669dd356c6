//! Golden vectors for the wasm package, produced by the NATIVE build of the same façade.
//!
//! `UPDATE_GOLDENS=1 cargo test --release -p sona-wasm --test native_goldens` trains the small
//! fixture router (`tests/fixtures/router.bin`, from the core query generator over an in-code
//! catalog) and writes `tests/goldens.json`. Without the variable the test replays every case
//! natively and fails if any output drifted from the committed file. The Node and browser tests
//! (`tests/parity.test.mjs`, `tests/browser.mjs`) replay the same cases on the wasm build and
//! compare within 1e-5.

use std::path::PathBuf;

use serde_json::{json, Value};
use sona_core::data::Item;
use sona_core::federated::{aggregate_round, FederatedConfig, GlobalState};
use sona_core::personalize::{AdapterUpdate, PersonalizeConfig};
use sona_core::rng::Rng;
use sona_core::router::querygen::{generate_splits, CatalogFacts};
use sona_core::router::tokenizer::TokenizerConfig;
use sona_core::router::{
    train_text, InputKind, Model, ModelConfig, Pool, QuantClassifier, Route, TrainConfig,
};
use sona_wasm::engine::{
    personalize_config, CatalogItem, ContextInput, EngineCore, InteractionInput,
    RecommendContextInput, RecommendInput,
};

const TITLES: [(&str, u16, &[&str]); 24] = [
    ("Toy Story", 1995, &["Animation", "Children's", "Comedy"]),
    ("GoldenEye", 1995, &["Action", "Adventure", "Thriller"]),
    ("Heat", 1995, &["Action", "Crime", "Thriller"]),
    ("Babe", 1995, &["Children's", "Comedy", "Drama"]),
    ("Braveheart", 1995, &["Action", "Drama", "War"]),
    ("Apollo 13", 1995, &["Action", "Drama", "Thriller"]),
    ("Star Wars", 1977, &["Action", "Adventure", "Sci-Fi", "War"]),
    ("Fargo", 1996, &["Crime", "Drama", "Thriller"]),
    ("The Godfather", 1972, &["Action", "Crime", "Drama"]),
    ("Casablanca", 1942, &["Drama", "Romance", "War"]),
    ("Alien", 1979, &["Action", "Horror", "Sci-Fi", "Thriller"]),
    ("Groundhog Day", 1993, &["Comedy", "Romance"]),
    (
        "The Lion King",
        1994,
        &["Animation", "Children's", "Musical"],
    ),
    ("Pulp Fiction", 1994, &["Crime", "Drama"]),
    ("Clueless", 1995, &["Comedy", "Romance"]),
    ("Scream", 1996, &["Horror", "Thriller"]),
    ("Titanic", 1997, &["Action", "Drama", "Romance"]),
    ("Contact", 1997, &["Drama", "Sci-Fi"]),
    (
        "Aladdin",
        1992,
        &["Animation", "Children's", "Comedy", "Musical"],
    ),
    ("Vertigo", 1958, &["Mystery", "Thriller"]),
    ("Jaws", 1975, &["Action", "Horror"]),
    ("Amadeus", 1984, &["Drama", "Mystery"]),
    ("Twister", 1996, &["Action", "Adventure", "Thriller"]),
    ("Sleepless in Seattle", 1993, &["Comedy", "Romance"]),
];

const D: usize = 32;
const USER: &str = "golden-viewer";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Trains the small fixture router: int8 FastGRNN over hashed n-grams, fixed seeds.
fn train_fixture_router() -> Vec<u8> {
    let items: Vec<Item> = TITLES
        .iter()
        .enumerate()
        .map(|(i, (t, y, g))| Item {
            id: i as u32,
            source_id: i as u64 + 1,
            title: t.to_string(),
            year: Some(*y),
            release_date: None,
            genres: g.iter().map(|s| s.to_string()).collect(),
            tags: Vec::new(),
            platforms: Vec::new(),
        })
        .collect();
    let facts = CatalogFacts::from_items(&items);
    let splits = generate_splits(&facts, 400, 7);
    let texts: Vec<&str> = splits.train.iter().map(|q| q.text.as_str()).collect();
    let labels: Vec<usize> = splits.train.iter().map(|q| q.route.index()).collect();
    let model = ModelConfig {
        input: InputKind::Text {
            tokenizer: TokenizerConfig {
                n_buckets: 2048,
                ..Default::default()
            },
            emb_dim: 16,
        },
        hidden: 16,
        n_classes: Route::COUNT,
        w_rank: None,
        u_rank: None,
        pool: Pool::Last,
    };
    let names = Route::ALL.iter().map(|r| r.name().to_string()).collect();
    let cfg = TrainConfig {
        epochs: 8,
        ..Default::default()
    };
    let (c, _) = train_text(model, names, &texts, &labels, &cfg, 7).expect("train fixture router");
    let test_ok = splits
        .test
        .iter()
        .filter(|q| sona_core::router::argmax(&c.predict_text(&q.text).unwrap()) == q.route.index())
        .count();
    let meta = format!(
        "sona-wasm test fixture router: querygen over 24 in-code titles, 400/route, seed 7; \
         generated-test accuracy {test_ok}/{}",
        splits.test.len()
    );
    eprintln!("{meta}");
    let q = QuantClassifier::from_classifier(&c).expect("quantize");
    Model::Int8(q).to_bytes(&meta)
}

fn catalog() -> (Vec<CatalogItem>, Vec<f32>) {
    let items: Vec<CatalogItem> = TITLES
        .iter()
        .enumerate()
        .map(|(i, (t, y, g))| CatalogItem {
            id: format!("m{i}"),
            title: t.to_string(),
            genres: g.iter().map(|s| s.to_string()).collect(),
            year: Some(*y),
            platforms: Vec::new(),
        })
        .collect();
    let mut rng = Rng::new(11);
    let emb = (0..items.len() * D)
        .map(|_| rng.uniform(-1.0, 1.0))
        .collect();
    (items, emb)
}

fn vector(seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..D).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn personalize_overrides() -> Value {
    json!({"d": D, "rank": 4, "minInteractions": 2, "minIntervalSecs": 0, "minSignal": 0.5})
}

/// The scripted session: each step's input and the façade's output.
fn run_cases(router: &[u8]) -> Value {
    let cfg = personalize_config(Some(&personalize_overrides())).unwrap();
    let e_cfg = cfg.clone();
    let mut e = EngineCore::new(router, cfg, USER).unwrap();
    let (items, emb) = catalog();
    e.load_catalog(items.clone(), emb.clone(), None).unwrap();

    let queries = [
        "movies like heat",
        "find sci-fi movies from 1977",
        "something light and funny tonight",
        "what's new this week",
        "where can i watch fargo",
        "recommend something for me",
        "Casablanca???",
        "héllo wörld ñ",
        // Text that NFKC changes (full width, ligatures, combining marks, circled digits): the
        // wasm build normalizes with JavaScript's String.prototype.normalize, this native build
        // with the core's Rust tables; the goldens check that both agree.
        "ＭＯＶＩＥＳ ｌｉｋｅ ｈｅａｔ",
        "ﬁnd sci-ﬁ movies from １９７７",
        "he\u{301}llo wo\u{308}rld n\u{303}",
        "where can i watch ｆａｒｇｏ ①",
    ];
    let routes: Vec<Value> = queries
        .iter()
        .map(|q| json!({"text": q, "output": e.route(q).unwrap()}))
        .collect();
    let select: Vec<Value> = [
        ("vector_search", 0.2, 1.0),
        ("personalized_hybrid", 0.5, 5.0),
        ("gnn_similarity", 0.5, 0.01),
    ]
    .iter()
    .map(|&(r, c, b)| match e.select_model(r, c, b) {
        Ok(v) => json!({"route": r, "complexity": c, "budget": b, "output": v}),
        Err(err) => json!({"route": r, "complexity": c, "budget": b, "error": err.to_string()}),
    })
    .collect();

    // The shipped models: the attention selector and the router of models/ (loaded from bytes
    // exactly as the npm package's hosts do).
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let selector = std::fs::read(models.join("attention-selector.bin")).unwrap();
    e.load_attention(&selector).unwrap();
    let attention: Vec<Value> = [
        "movies like heat",
        "browse the genre tree from drama down to courtroom dramas",
        "a very long watch history with thousands of items",
        "what do my friends who like sci-fi watch",
        "something cozy and new tonight",
        "ｍｏｖｉｅｓ ｌｉｋｅ ｈｅａｔ",
    ]
    .iter()
    .map(|q| json!({"text": q, "output": e.select_attention(q).unwrap()}))
    .collect();
    let shipped_bytes = std::fs::read(models.join("router.bin")).unwrap();
    let shipped = EngineCore::new(&shipped_bytes, PersonalizeConfig::default(), USER).unwrap();
    let shipped_routes: Vec<Value> = queries
        .iter()
        .map(|q| json!({"text": q, "output": shipped.route(q).unwrap()}))
        .collect();

    let q = vector(21);
    let probe = vector(22);
    let mut steps = Vec::new();
    let adapt = |e: &EngineCore, v: &[f32]| {
        let (y, m) = e.adapt_embeddings(v).unwrap();
        json!({"op": "adapt", "input": v, "output": y, "magnitude": m})
    };
    steps.push(adapt(&e, &probe));
    // Fixed request time (2024-06-01 UTC) so "New this year"-style explanations are stable.
    const NOW: f64 = 1_717_200_000.0;
    let rec = |e: &mut EngineCore,
               query: &str,
               embedding: Option<&[f32]>,
               context: Option<Value>,
               exclude: Vec<String>| {
        let out = e
            .recommend(&RecommendInput {
                query: Some(query),
                embedding,
                k: 5.0,
                exclude: exclude.clone(),
                context: context
                    .clone()
                    .map(|c| serde_json::from_value::<RecommendContextInput>(c).unwrap()),
                now: NOW,
            })
            .unwrap();
        json!({"op": "recommend", "query": query, "embedding": embedding, "context": context,
               "now": NOW, "k": 5, "exclude": exclude, "output": out})
    };
    steps.push(rec(
        &mut e,
        "recommend something for me",
        Some(&q),
        None,
        vec![],
    ));
    let top: Vec<String> = steps[1]["output"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    // Skip the two best, finish the 4th and 5th (late evening), start the 3rd in the morning:
    // the ranking must move, and the context strategy has something to learn from.
    let script = [
        (&top[0], "skip", None, 1_000.0, 21),
        (&top[1], "skip", None, 1_010.0, 21),
        (&top[3], "watch_complete", None, 1_020.0, 21),
        (&top[4], "rating", Some(5.0), 1_030.0, 21),
        (&top[2], "watch_start", None, 1_040.0, 9),
    ];
    for (id, kind, rating, now, hour) in script {
        let ctx = json!({"hourOfDay": hour, "dayOfWeek": 4, "device": "tv", "moods": ["cozy"]});
        let out = e
            .record_interaction(InteractionInput {
                content_id: id.clone(),
                kind: kind.to_string(),
                rating,
                context: serde_json::from_value::<ContextInput>(ctx.clone()).unwrap(),
                now,
                embedding: None,
            })
            .unwrap();
        steps.push(json!({"op": "record", "contentId": id, "type": kind, "rating": rating, "context": ctx, "now": now, "output": out}));
    }
    steps.push(adapt(&e, &probe));
    steps.push(rec(
        &mut e,
        "recommend something for me",
        Some(&q),
        None,
        vec![],
    ));
    steps.push(rec(
        &mut e,
        "more like toy story",
        Some(&q),
        None,
        vec![top[3].clone()],
    ));
    // The fused strategies without a query embedding (profile, neighbours of the watched
    // titles), with the context the interactions were recorded in, and the freshness route.
    let ctx = json!({"hourOfDay": 22, "dayOfWeek": 4, "device": "tv"});
    steps.push(rec(
        &mut e,
        "recommend something for me",
        None,
        Some(ctx.clone()),
        vec![],
    ));
    steps.push(rec(&mut e, "what's new this week", Some(&q), None, vec![]));
    steps.push(rec(&mut e, "feeling cozy tonight", None, Some(ctx), vec![]));
    steps.push(json!({"op": "stats", "output": e.stats().unwrap()}));
    let update = e.export_update();
    steps.push(json!({"op": "exportUpdate", "length": update.len(), "decoded": EngineCore::decode_update(&update).unwrap()}));
    // The sync server's side (core federated aggregation) turns the exported update into the
    // next global tier; the engine installs it and its outputs change accordingly.
    let fcfg = FederatedConfig {
        min_updates: 1,
        ..FederatedConfig::for_personalize(&e_cfg)
    };
    let upd = AdapterUpdate::from_bytes(&update).unwrap();
    let (next, _) = aggregate_round(&fcfg, &GlobalState::new(&fcfg), &[upd]).unwrap();
    let global = next.global_bytes(&fcfg).unwrap();
    let version = e.apply_global(&global).unwrap();
    steps.push(json!({"op": "applyGlobal", "bytes": global, "version": version}));
    steps.push(adapt(&e, &probe));
    steps.push(rec(
        &mut e,
        "recommend something for me",
        Some(&q),
        None,
        vec![],
    ));

    json!({
        "note": "Generated by wasm/tests/native_goldens.rs (UPDATE_GOLDENS=1). Do not edit.",
        "router": "fixtures/router.bin",
        "userId": USER,
        "personalize": personalize_overrides(),
        "catalog": {"items": items, "embeddings": emb},
        "routes": routes,
        "selectModel": select,
        "attentionSelector": "../../models/attention-selector.bin",
        "attention": attention,
        "shippedRouter": "../../models/router.bin",
        "shippedRoutes": shipped_routes,
        "steps": steps,
    })
}

/// Equal up to 1e-5 absolute on numbers (f32 outputs), exactly elsewhere.
fn close(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() <= 1e-5 {
                Ok(())
            } else {
                Err(format!("{path}: {x} vs {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!("{path}: length {} vs {}", x.len(), y.len()));
            }
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                close(p, q, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return Err(format!("{path}: keys {:?} vs {:?}", x.keys(), y.keys()));
            }
            for (k, v) in x {
                let w = y.get(k).ok_or_else(|| format!("{path}.{k}: missing"))?;
                close(v, w, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}: {a} vs {b}")),
    }
}

#[test]
fn native_outputs_match_the_committed_goldens() {
    let router_path = dir().join("fixtures/router.bin");
    let golden_path = dir().join("goldens.json");
    if std::env::var_os("UPDATE_GOLDENS").is_some() {
        std::fs::create_dir_all(dir().join("fixtures")).unwrap();
        std::fs::write(&router_path, train_fixture_router()).unwrap();
        let router = std::fs::read(&router_path).unwrap();
        let g = run_cases(&router);
        std::fs::write(
            &golden_path,
            serde_json::to_string_pretty(&g).unwrap() + "\n",
        )
        .unwrap();
        return;
    }
    let router =
        std::fs::read(&router_path).expect("tests/fixtures/router.bin (UPDATE_GOLDENS=1 makes it)");
    let stored: Value = serde_json::from_slice(&std::fs::read(&golden_path).unwrap()).unwrap();
    let now = run_cases(&router);
    close(&now, &stored, "goldens").unwrap();
}

#[test]
fn learning_moves_the_ranking_in_the_goldens() {
    // The scripted session must be a real learning test: skipped titles drop, finished ones rise.
    let router = std::fs::read(dir().join("fixtures/router.bin")).unwrap();
    let g = run_cases(&router);
    let steps = g["steps"].as_array().unwrap();
    let ids = |s: &Value| -> Vec<String> {
        s["output"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let before = ids(&steps[1]);
    let after = ids(&steps[8]);
    assert_ne!(before, after, "ranking did not change after learning");
    let adapted = steps[2..7]
        .iter()
        .filter(|s| s["output"]["adapted"] == true)
        .count();
    assert!(adapted >= 1, "no adaptation happened");
    let pos = |v: &[String], id: &str| v.iter().position(|x| x == id).unwrap_or(usize::MAX);
    assert!(pos(&after, &before[0]) > 0, "a skipped title stayed on top");
    assert!(steps[7]["magnitude"].as_f64().unwrap() > 0.0);
    // The fused strategies: neighbours of the watched titles explain the ranking after
    // learning, and the freshness route puts the newest (1997) titles first.
    let expl = |s: &Value| -> Vec<String> {
        s["output"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["explanation"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(expl(&steps[1])
        .iter()
        .all(|x| !x.starts_with("Because you watched")));
    assert!(
        expl(&steps[8])
            .iter()
            .any(|x| x.starts_with("Because you watched")),
        "{:?}",
        expl(&steps[8])
    );
    // Late-evening context: the genres watched at 21:00 (not those started at 09:00) gain.
    let items = |s: &Value| s["output"]["items"].as_array().unwrap().clone();
    assert!(items(&steps[12]).iter().any(|i| {
        i["strategies"]
            .to_string()
            .contains(r#""strategy":"context""#)
            && i["explanation"] == "You often watch Comedy at night"
    }));
    // The freshness route lifts newer titles (on 24 titles every strategy lists nearly
    // everything, so it is a lift, not a sort; the core tests check the large-catalog case).
    assert_eq!(steps[11]["output"]["route"]["route"], "catalog_freshness");
    assert!(steps[11]["output"]["weights"]["fresh"].as_f64().unwrap() > 0.5);
    let mean_year = |s: &Value| {
        items(s)
            .iter()
            .map(|i| i["year"].as_f64().unwrap())
            .sum::<f64>()
            / 5.0
    };
    assert!(mean_year(&steps[11]) > mean_year(&steps[8]) + 3.0);
    // The aggregated global tier changes what the adapter outputs.
    assert_eq!(steps[15]["op"], "applyGlobal");
    assert_eq!(steps[15]["version"], 1);
    assert_ne!(steps[16]["output"], steps[7]["output"]);
}
