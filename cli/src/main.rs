//! The `sona` command.

mod attention_cmd;
mod dataset;
mod eval_cmd;

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
    /// Train the attention selector (writes models/attention-selector.{bin,md}).
    TrainAttention(attention_cmd::TrainAttentionArgs),
    /// Pick the top-3 attention mechanisms for a query; prints JSON.
    SelectAttention(attention_cmd::SelectAttentionArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Eval(a) => eval_cmd::run(&a),
        Cmd::TrainAttention(a) => attention_cmd::train(&a),
        Cmd::SelectAttention(a) => attention_cmd::select(&a),
    }
}
