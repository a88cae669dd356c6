//! `sona route` and `sona select-model`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use sona_core::router::{ModelTable, Route, RouteDecision, RouteRegistry, Router};

/// The shipped text router, compiled into the binary.
pub const SHIPPED_ROUTER: &[u8] = include_bytes!("../../models/router.bin");

#[derive(Args)]
pub struct RouteArgs {
    /// Model file (default: the shipped text router compiled into this binary).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Routes registry JSON (default: the shipped models/routes.json).
    #[arg(long)]
    routes: Option<PathBuf>,
    /// Route this one query instead of reading stdin.
    #[arg(long)]
    text: Option<String>,
    /// all-MiniLM-L6-v2 directory: embed each query first (for embedding-input models
    /// such as models/router-minilm.bin).
    #[arg(long)]
    minilm: Option<PathBuf>,
}

/// Text → decision with either a text router or MiniLM + an embedding router.
struct Routing {
    router: Router,
    embedder: Option<sona_embed::Embedder>,
}

impl Routing {
    fn route(&self, q: &str) -> Result<RouteDecision> {
        match &self.embedder {
            None => Ok(self.router.route_text(q)?),
            Some(e) => {
                if q.trim().is_empty() {
                    anyhow::bail!("empty query: it contains no words");
                }
                let v = e.embed(q)?;
                Ok(self.router.route_embedding(&v)?)
            }
        }
    }
}

#[derive(Args)]
pub struct SelectArgs {
    /// Route name, e.g. mood_matching.
    #[arg(long)]
    route: String,
    /// Query complexity in [0, 1].
    #[arg(long, allow_negative_numbers = true)]
    complexity: f64,
    /// Remaining budget in USD (>= 0).
    #[arg(long, allow_negative_numbers = true)]
    budget: f64,
    /// Model table JSON (default: the shipped models/llm_models.json).
    #[arg(long)]
    models: Option<PathBuf>,
}

/// Load a router from an optional model path and registry path.
pub fn load_router(model: Option<&PathBuf>, routes: Option<&PathBuf>) -> Result<Router> {
    let registry = match routes {
        Some(p) => RouteRegistry::from_json(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("routes registry {}", p.display()))?,
        None => RouteRegistry::shipped(),
    };
    let bytes = match model {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => SHIPPED_ROUTER.to_vec(),
    };
    let name = model
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "shipped router".into());
    Router::with_registry(&bytes, registry).with_context(|| format!("loading {name}"))
}

/// JSON object for one decision.
pub fn decision_json(query: &str, d: &RouteDecision) -> Value {
    let mut scores = Map::new();
    for r in Route::ALL {
        scores.insert(r.name().into(), json!(d.scores[r.index()]));
    }
    json!({
        "query": query,
        "route": d.route.name(),
        "confidence": d.confidence,
        "scores": scores,
        "fell_back": d.fell_back,
        "original_route": d.original_route.name(),
    })
}

pub fn run_route(a: RouteArgs) -> Result<i32> {
    let router = load_router(a.model.as_ref(), a.routes.as_ref())?;
    let embedder = if router.reads_text() {
        None
    } else {
        let dir = a.minilm.as_ref().with_context(|| {
            format!(
                "this model routes {}-float query embeddings; pass --minilm DIR (all-MiniLM-L6-v2) to embed the queries",
                router.embedding_dim()
            )
        })?;
        let e = sona_embed::Embedder::load(dir)
            .with_context(|| format!("loading MiniLM from {}", dir.display()))?;
        if e.dim() != router.embedding_dim() {
            anyhow::bail!(
                "MiniLM gives {}-d vectors but the model expects {}",
                e.dim(),
                router.embedding_dim()
            );
        }
        Some(e)
    };
    let routing = Routing { router, embedder };
    if let Some(t) = a.text {
        let d = routing
            .route(&t)
            .with_context(|| format!("routing {t:?}"))?;
        println!("{}", decision_json(&t, &d));
        return Ok(0);
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut errors = 0usize;
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf).context("reading stdin")?;
        if n == 0 {
            break;
        }
        line_no += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let v = match std::str::from_utf8(&buf) {
            Err(e) => Err(format!("line is not valid UTF-8 ({e})")),
            Ok(q) => match routing.route(q) {
                Ok(d) => Ok(decision_json(q, &d)),
                Err(e) => Err(format!("{e:#}")),
            },
        };
        let v = v.unwrap_or_else(|msg| {
            errors += 1;
            eprintln!("line {line_no}: {msg}");
            json!({ "line": line_no, "error": msg })
        });
        writeln!(out, "{v}").context("writing stdout")?;
    }
    out.flush().context("writing stdout")?;
    if errors > 0 {
        eprintln!("{errors} of {line_no} lines could not be routed");
        return Ok(2);
    }
    Ok(0)
}

pub fn run_select(a: SelectArgs) -> Result<()> {
    let table = match &a.models {
        Some(p) => ModelTable::from_json(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => ModelTable::shipped(),
    };
    let c = table.select(&a.route, a.complexity, a.budget)?;
    println!(
        "{}",
        json!({
            "route": a.route,
            "complexity": a.complexity,
            "budget": a.budget,
            "model_id": c.model_id,
            "estimated_cost": c.estimated_cost,
            "estimated_latency_ms": c.estimated_latency_ms,
            "expected_accuracy": c.expected_accuracy,
            "estimated_tokens": c.estimated_tokens,
            "required_accuracy": c.required_accuracy,
        })
    );
    Ok(())
}
