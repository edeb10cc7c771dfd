//! `passage`: the desktop app. `passage --demo` opens the bundled demo host with its guests.

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "passage",
    version,
    about = "Give host PCI devices to virtual machines, one IOMMU group at a time"
)]
struct Cli {
    /// Open the bundled demo host (a workstation with a GPU to give away) and its guests.
    #[arg(long, conflicts_with = "root")]
    demo: bool,
    /// Read a recorded host root instead of / (also: PASSAGE_ROOT).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The plan file (default: ~/.config/passage/plan.json; with --demo, kept in memory).
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
}

fn main() {
    passage::i18n::init();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PASSAGE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = passage::gui::run(passage::gui::Options {
        demo: cli.demo,
        root: cli.root,
        plan: cli.plan,
    });
    if let Err(why) = r {
        eprintln!("passage: {why}");
        std::process::exit(2);
    }
}
