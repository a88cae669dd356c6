//! Router latency: text → route (tokenization + int8 FastGRNN + decision) with the
//! shipped model, and query embedding → route with the shipped MiniLM-input model.
//!
//! `cargo bench -p sona-core --bench router -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sona_core::rng::Rng;
use sona_core::router::{Router, Tokenizer, TokenizerConfig, Tokens};

const TEXT_MODEL: &[u8] = include_bytes!("../../models/router.bin");
const MINILM_MODEL: &[u8] = include_bytes!("../../models/router-minilm.bin");

const QUERIES: [&str; 6] = [
    "movies like The Matrix",
    "find sci-fi films from the nineties",
    "I'm feeling down, something uplifting please",
    "what's new on Netflix this week",
    "where can I stream Fargo",
    "recommend something for me tonight",
];

fn bench(c: &mut Criterion) {
    let router = Router::from_bytes(TEXT_MODEL).expect("shipped text router loads");
    let mut i = 0usize;
    c.bench_function("route_text (tokenize + int8 FastGRNN + decision)", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES.len();
            black_box(router.route_text(black_box(QUERIES[i])).unwrap())
        })
    });
    let tk = Tokenizer::new(TokenizerConfig::default());
    let mut tok = Tokens::default();
    c.bench_function("tokenize only", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES.len();
            tk.tokenize_into(black_box(QUERIES[i]), &mut tok);
            black_box(tok.ids.len())
        })
    });

    let er = Router::from_bytes(MINILM_MODEL).expect("shipped embedding router loads");
    let mut rng = Rng::new(1);
    let mut v: Vec<f32> = (0..er.embedding_dim()).map(|_| rng.normal()).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    c.bench_function(
        "route_embedding (384-d MiniLM vector, int8 FastGRNN)",
        |b| b.iter(|| black_box(er.route_embedding(black_box(&v)).unwrap())),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
