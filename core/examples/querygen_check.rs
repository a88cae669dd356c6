//! Sanity check of the router training data: prints samples per route and trains a plain
//! linear softmax over hashed word uni/bigrams + char 3–5-grams (a baseline, not the
//! production FastGRNN), then reports accuracy on the generated test split and on the
//! hand-written file.
//!
//! `cargo run --release -p sona-core --example querygen_check -- \
//!     ../shared/data/ml-100k/u.item tests/data/router_handwritten.tsv [per_route] [seed]`

use sona_core::data::Item;
use sona_core::rng::Rng;
use sona_core::router::querygen::{
    generate_splits, parse_labeled_tsv, template_count, CatalogFacts, LabeledQuery,
};
use sona_core::router::Route;

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
    let uitem = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "../shared/data/ml-100k/u.item".into());
    let hand = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "tests/data/router_handwritten.tsv".into());
    let per_route: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let seed: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(42);

    let bytes = std::fs::read(&uitem).expect("read u.item");
    let text = String::from_utf8_lossy(&bytes);
    const GENRES: [&str; 19] = [
        "unknown",
        "Action",
        "Adventure",
        "Animation",
        "Children's",
        "Comedy",
        "Crime",
        "Documentary",
        "Drama",
        "Fantasy",
        "Film-Noir",
        "Horror",
        "Musical",
        "Mystery",
        "Romance",
        "Sci-Fi",
        "Thriller",
        "War",
        "Western",
    ];
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 24 {
            continue;
        }
        let raw = f[1].trim();
        let (title, year) = match raw.rfind(" (") {
            Some(p) if raw.ends_with(')') => {
                (raw[..p].to_string(), raw[p + 2..raw.len() - 1].parse().ok())
            }
            _ => (raw.to_string(), None),
        };
        let genres = (0..19)
            .filter(|&g| f[5 + g] == "1")
            .map(|g| GENRES[g].to_string())
            .collect();
        items.push(Item {
            id: i as u32,
            source_id: i as u64 + 1,
            title,
            year,
            release_date: None,
            genres,
            tags: vec![],
            platforms: vec![],
        });
    }
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
}
