//! Sanity check of the router training data: prints samples per route and trains a plain
//! linear softmax over hashed word uni/bigrams + char 3–5-grams (a baseline), then reports
//! accuracy on the generated test split and on the hand-written file. With a fifth argument
//! `fastgrnn` it also trains the crate's FastGRNN text classifier (`router::train_text`,
//! hidden 32, emb 32, 8192 buckets, 12 epochs) on the same split and reports the same figures.
//!
//! `cargo run --release -p sona-core --example querygen_check -- \
//!     ../shared/data/ml-100k tests/data/router_handwritten.tsv [per_route] [seed] [fastgrnn]`

use sona_core::data::parse_ml100k;
use sona_core::rng::Rng;
use sona_core::router::querygen::{
    generate_splits, parse_labeled_tsv, template_count, CatalogFacts, LabeledQuery,
};
use sona_core::router::tokenizer::TokenizerConfig;
use sona_core::router::{train_text, InputKind, ModelConfig, Route, TrainConfig};

const DIM: usize = 1 << 18;

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn features(text: &str) -> Vec<usize> {
    let t: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let words: Vec<&str> = t.split_whitespace().collect();
    let mut f = Vec::new();
    for (i, w) in words.iter().enumerate() {
        f.push(fnv(&format!("w:{w}")) as usize % DIM);
        if i + 1 < words.len() {
            f.push(fnv(&format!("b:{w} {}", words[i + 1])) as usize % DIM);
        }
        let padded: Vec<char> = format!("<{w}>").chars().collect();
        for n in 3..=5 {
            for s in padded.windows(n) {
                f.push(fnv(&format!("c:{}", s.iter().collect::<String>())) as usize % DIM);
            }
        }
    }
    f
}

fn predict(w: &[f32], f: &[usize]) -> [f32; Route::COUNT] {
    let mut z = [0f32; Route::COUNT];
    for &i in f {
        for (k, zk) in z.iter_mut().enumerate() {
            *zk += w[i * Route::COUNT + k];
        }
    }
    let scale = 1.0 / (f.len().max(1) as f32).sqrt();
    let m = z.iter().fold(f32::MIN, |a, &b| a.max(b * scale));
    let mut s = 0.0;
    for zk in z.iter_mut() {
        *zk = (*zk * scale - m).exp();
        s += *zk;
    }
    z.map(|v| v / s)
}

fn argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b })
}

fn accuracy(w: &[f32], qs: &[LabeledQuery], show_errors: bool) -> f64 {
    let mut ok = 0;
    for q in qs {
        let p = predict(w, &features(&q.text));
        let k = argmax(&p);
        if k == q.route.index() {
            ok += 1;
        } else if show_errors {
            println!("    MISS [{}] -> {}: {}", q.route, Route::ALL[k], q.text);
        }
    }
    ok as f64 / qs.len().max(1) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "../shared/data/ml-100k".into());
    let hand = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "tests/data/router_handwritten.tsv".into());
    let per_route: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let seed: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(42);

    let u_data = std::fs::read_to_string(format!("{dir}/u.data")).expect("read u.data");
    let u_item = std::fs::read(format!("{dir}/u.item")).expect("read u.item");
    let items = parse_ml100k(&u_data, &u_item).expect("parse ml-100k").items;
    let facts = CatalogFacts::from_items(&items);
    println!(
        "catalog: {} titles, {} years, {} genres, {} people",
        facts.titles.len(),
        facts.years.len(),
        facts.genres.len(),
        facts.people.len()
    );
    let s = generate_splits(&facts, per_route, seed);
    println!(
        "splits: train {} val {} test {} (per_route {per_route}, seed {seed})",
        s.train.len(),
        s.val.len(),
        s.test.len()
    );
    for r in Route::ALL {
        println!("== {r} ({} templates)", template_count(r));
        for q in s.train.iter().filter(|q| q.route == r).take(10) {
            println!("  {}", q.text);
        }
    }

    let hand_qs =
        parse_labeled_tsv(&std::fs::read_to_string(&hand).expect("read tsv")).expect("parse tsv");
    let mut w = vec![0f32; DIM * Route::COUNT];
    let mut rng = Rng::new(seed);
    let mut order: Vec<usize> = (0..s.train.len()).collect();
    let train_f: Vec<Vec<usize>> = s.train.iter().map(|q| features(&q.text)).collect();
    let lr = 0.5f32;
    for epoch in 0..8 {
        rng.shuffle(&mut order);
        for &i in &order {
            let f = &train_f[i];
            let p = predict(&w, f);
            let scale = 1.0 / (f.len().max(1) as f32).sqrt();
            for (k, pk) in p.iter().enumerate() {
                let g = pk
                    - if k == s.train[i].route.index() {
                        1.0
                    } else {
                        0.0
                    };
                for &j in f {
                    w[j * Route::COUNT + k] -= lr * g * scale;
                }
            }
        }
        println!(
            "epoch {epoch}: train {:.4} val {:.4} test {:.4} hand {:.4}",
            accuracy(&w, &s.train, false),
            accuracy(&w, &s.val, false),
            accuracy(&w, &s.test, false),
            accuracy(&w, &hand_qs, false)
        );
    }
    println!("test errors:");
    accuracy(&w, &s.test, true);
    println!("hand-written errors:");
    let a = accuracy(&w, &hand_qs, true);
    println!("hand-written accuracy {a:.4} on {}", hand_qs.len());

    if args.get(5).map(String::as_str) == Some("fastgrnn") {
        let model = ModelConfig {
            input: InputKind::Text {
                tokenizer: TokenizerConfig {
                    n_buckets: 8192,
                    ..Default::default()
                },
                emb_dim: 32,
            },
            hidden: 32,
            n_classes: Route::COUNT,
            w_rank: None,
            u_rank: None,
            pool: Default::default(),
        };
        let names: Vec<String> = Route::ALL.iter().map(|r| r.name().to_string()).collect();
        let texts: Vec<&str> = s.train.iter().map(|q| q.text.as_str()).collect();
        let labels: Vec<usize> = s.train.iter().map(|q| q.route.index()).collect();
        let (clf, report) =
            train_text(model, names, &texts, &labels, &TrainConfig::default(), seed)
                .expect("train");
        for e in &report.epochs {
            println!(
                "fastgrnn epoch {}: loss {:.4} train-acc {:.4}",
                e.epoch, e.mean_loss, e.train_accuracy
            );
        }
        let acc = |qs: &[LabeledQuery], show: bool| {
            let mut ok = 0;
            for q in qs {
                let p = clf.predict_text(&q.text).expect("predict");
                let k = argmax(&p);
                if k == q.route.index() {
                    ok += 1;
                } else if show {
                    println!(
                        "    FASTGRNN MISS [{}] -> {}: {}",
                        q.route,
                        Route::ALL[k],
                        q.text
                    );
                }
            }
            ok as f64 / qs.len().max(1) as f64
        };
        println!(
            "fastgrnn: val {:.4} test {:.4}",
            acc(&s.val, false),
            acc(&s.test, false)
        );
        let h = acc(&hand_qs, true);
        println!("fastgrnn hand-written accuracy {h:.4} on {}", hand_qs.len());
    }
}
