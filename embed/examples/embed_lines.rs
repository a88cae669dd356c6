//! Embeds every line of a text file and reports throughput.
//!
//! ```text
//! cargo run --release -p sona-embed --example embed_lines -- INPUT.txt [OUTPUT.jsonl] [--threads N]
//! ```
//! The model directory comes from `sona_embed::find_model_dir()` (`$SONA_MINILM_DIR` or
//! `target/minilm/...` after `bash embed/fetch-model.sh`). OUTPUT gets one JSON object per line:
//! `{"ids": [...], "embedding": [...]}`.

use std::io::Write;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut threads = None;
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        threads = Some(args.get(i + 1).ok_or("--threads needs a value")?.parse()?);
        args.drain(i..i + 2);
    }
    let input = args
        .first()
        .ok_or("usage: embed_lines INPUT.txt [OUTPUT.jsonl] [--threads N]")?;
    let dir = sona_embed::find_model_dir().ok_or("model not found: run embed/fetch-model.sh")?;

    let t0 = Instant::now();
    let mut emb = sona_embed::Embedder::load(&dir)?;
    if let Some(n) = threads {
        emb = emb.with_threads(n);
    }
    let load_s = t0.elapsed().as_secs_f64();

    let text = std::fs::read_to_string(input)?;
    let lines: Vec<&str> = text.lines().collect();
    let t1 = Instant::now();
    let ids: Vec<Vec<u32>> = lines.iter().map(|l| emb.tokenize(l)).collect();
    let tok_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let vecs = emb.embed_token_batch(&ids)?;
    let embed_s = t2.elapsed().as_secs_f64();
    let tokens: usize = ids.iter().map(Vec::len).sum();
    eprintln!(
        "load {load_s:.2}s; {} texts, {tokens} tokens (mean {:.1}); tokenize {tok_s:.3}s; \
         encode {embed_s:.2}s with {} threads = {:.0} embeddings/s, {:.0} tokens/s",
        lines.len(),
        tokens as f64 / lines.len().max(1) as f64,
        emb.threads(),
        lines.len() as f64 / embed_s,
        tokens as f64 / embed_s
    );

    if let Some(out) = args.get(1) {
        let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
        for (i, v) in ids.iter().zip(&vecs) {
            serde_json::to_writer(&mut w, &serde_json::json!({"ids": i, "embedding": v}))?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    Ok(())
}
