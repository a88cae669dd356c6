//! The `sona` command.

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Eval(a) => eval_cmd::run(&a),
    }
}
