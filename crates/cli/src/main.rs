//! `usher`: the command-line interface of usher, modelled on the Azure CLI.

mod cli;
mod commands;
mod config;
mod context;
mod jwt;
mod output;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::Cli;
use crate::config::ConfigDir;
use crate::context::Context;
use crate::output::{Printer, Query};

/// Formats an error as the Azure CLI prints it: `(Code) message` for server errors (the client
/// error's own text), followed by the causes of transport errors.
fn error_text(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

fn main() -> ExitCode {
    // Usage errors, --help and --version: clap prints and exits (2 for usage errors).
    let cli = Cli::parse();

    let query = match cli.global.query.as_deref().map(Query::compile).transpose() {
        Ok(q) => q,
        Err(e) => {
            eprintln!("usher: error: argument --query: invalid JMESPath query: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match ConfigDir::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", error_text(&e));
            return ExitCode::from(1);
        }
    };
    let ctx = Context {
        printer: Printer {
            format: cli.global.output,
            query,
            color: std::io::stdout().is_terminal(),
        },
        global: cli.global.without_empty_values(),
        config,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(&ctx, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error_text(&e));
            ExitCode::from(1)
        }
    }
}
