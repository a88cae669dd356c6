// Used by the `eval` subcommand (next commit).
#[allow(dead_code)]
mod dataset;

fn main() {}
