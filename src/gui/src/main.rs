//! `passage`: the desktop app. `passage --demo` opens the bundled demo host with its guests.

use clap::Parser;
use passage_core::cli::app::Cli;

fn main() {
    passage_core::i18n::init();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PASSAGE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse_from(passage_core::demo::join_demo_variant(std::env::args_os()));
    let r = passage_gui::run(passage_gui::Options {
        demo: cli.demo,
        root: cli.root,
        plan: cli.plan,
        host: cli.host,
    });
    if let Err(why) = r {
        eprintln!("passage: {why}");
        std::process::exit(2);
    }
}
