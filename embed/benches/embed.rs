//! Throughput of all-MiniLM-L6-v2 on short queries. Needs the model (`bash embed/fetch-model.sh`
//! or `SONA_MINILM_DIR`); without it the benchmarks are skipped with a message.
//!
//! cargo bench -p sona-embed --bench embed -- --warm-up-time 1 --measurement-time 5

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sona_embed::{find_model_dir, Embedder};

/// 64 short, varied TV-discovery queries (about 8-10 tokens each).
fn queries() -> Vec<String> {
    let shows = ["stranger things", "succession", "the office", "squid game"];
    let genres = ["sci-fi", "true crime", "romcom", "anime"];
    let moods = ["cozy", "dark", "feel-good", "mind-bending"];
    let mut out = Vec::new();
    for (i, s) in shows.iter().enumerate() {
        for (j, g) in genres.iter().enumerate() {
            let m = moods[(i + j) % moods.len()];
            out.push(format!("{g} like {s}"));
            out.push(format!("where can I watch {s} tonight"));
            out.push(format!("something {m} and {g} to binge"));
            out.push(format!("{m} {g} series similar to {s}"));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let Some(dir) = find_model_dir() else {
        eprintln!("sona-embed bench skipped: model not found (run embed/fetch-model.sh)");
        return;
    };
    let emb = Embedder::load(&dir).expect("model loads");
    let qs = queries();
    let refs: Vec<&str> = qs.iter().map(String::as_str).collect();

    c.bench_function("embed_single_short_query", |b| {
        b.iter(|| emb.embed(std::hint::black_box("sci-fi like stranger things")))
    });
    let mut g = c.benchmark_group("embed_batch_64_short_queries");
    g.throughput(Throughput::Elements(refs.len() as u64));
    for threads in [1, 2] {
        let e = emb.clone().with_threads(threads);
        g.bench_function(format!("threads_{threads}"), |b| {
            b.iter(|| e.embed_batch(std::hint::black_box(&refs)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
