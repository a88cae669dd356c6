//! The `sona` command.

mod attention_cmd;
mod dataset;
mod eval_cmd;
mod route_cmd;
mod train_router;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sona", about = "SONA: train, route, eval, bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Offline evaluation of the recommendation strategies on MovieLens.
    Eval(eval_cmd::EvalArgs),
    /// Route queries (one per stdin line, or --text) to a recommendation strategy; JSON lines out.
    Route(route_cmd::RouteArgs),
    /// Pick the LLM for a route / complexity / budget (models/llm_models.json); JSON out.
    SelectModel(route_cmd::SelectArgs),
    /// Train the FastGRNN router on generated queries and write an int8 model file.
    TrainRouter(train_router::TrainArgs),
    /// Train the attention selector (writes models/attention-selector.{bin,md}).
    TrainAttention(attention_cmd::TrainAttentionArgs),
    /// Pick the top-3 attention mechanisms for a query; prints JSON.
    SelectAttention(attention_cmd::SelectAttentionArgs),
}

fn main() {
    let res: anyhow::Result<i32> = match Cli::parse().cmd {
        Cmd::Eval(a) => eval_cmd::run(&a).map(|_| 0),
        Cmd::Route(a) => route_cmd::run_route(a),
        Cmd::SelectModel(a) => route_cmd::run_select(a).map(|_| 0),
        Cmd::TrainRouter(a) => train_router::run(a).map(|_| 0),
        Cmd::TrainAttention(a) => attention_cmd::train(&a).map(|_| 0),
        Cmd::SelectAttention(a) => attention_cmd::select(&a).map(|_| 0),
    };
    match res {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
