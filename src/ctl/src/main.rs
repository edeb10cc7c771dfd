//! `passagectl`: the command line over Passage's library.
//!
//! Thin: parse words into typed values, call the library, print. Exit 0 on success, 2 with a
//! one-line reason on stderr otherwise (1 is reserved for "not usable" answers such as verify's).
//!
//! One file per subcommand, as bolt's `boltctl-*.c`; this file parses, dispatches and prints
//! failures, `common.rs` holds what the subcommands share.

mod claim;
mod cluster;
mod common;
mod docs;
mod doctor;
mod draw;
mod explain;
mod export;
mod fix;
mod guests;
mod hook;
mod list;
mod monitor;
mod persist;
mod plan;
mod record;
mod status;
mod verify;

use clap::Parser;

// `list` on a 10,000-function host makes hundreds of thousands of small allocations on both
// cores; glibc's per-thread arenas spent a tenth of its time there (and grew their heaps one
// mprotect at a time). mimalloc's thread-local pages take 7% off the whole run
// (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use passage_core::cli::ctl::{Cli, Command};
use std::process::ExitCode;

/// A failure with a sentence for the person at the terminal.
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn run(cli: &Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::List { json } => list::run(cli, *json),
        Command::Explain { target, json } => explain::run(cli, target, *json),
        Command::Doctor { json } => doctor::run(cli, *json),
        Command::Fix {
            code,
            device,
            dry_run,
        } => fix::fix(cli, code, device.as_deref(), *dry_run),
        Command::Unfix { code, device } => fix::unfix(cli, code, device.as_deref()),
        Command::Vfs { device, count } => fix::vfs(cli, device, *count),
        Command::BarSize { device, bar, size } => fix::bar_size(cli, device, *bar, size),
        Command::RehearseReset { group } => fix::rehearse(cli, group),
        Command::Draw {
            group,
            all_vfs,
            plan,
            output,
        } => draw::run(cli, group, *all_vfs, plan.as_deref(), output.as_deref()),
        Command::Record { out } => record::run(cli, out),
        Command::Verify { group, json } => verify::run(cli, group, *json),
        Command::Claim { group, force } => claim::claim(cli, group, *force),
        Command::Release { group } => claim::release(cli, group),
        Command::Persist { group, state } => persist::run(cli, group, state),
        Command::Status { json } => status::run(cli, *json),
        Command::Plan { plan, action } => plan::run(cli, plan.as_deref(), action),
        Command::Export {
            plan,
            guest,
            format,
            iommufd,
            no_iommufd,
            output,
        } => export::run(
            cli,
            plan.as_deref(),
            guest.as_deref(),
            format,
            match (*iommufd, *no_iommufd) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            output.as_deref(),
        ),
        Command::Guests { action, json } => guests::run(cli, action.as_ref(), *json),
        Command::HookQemu {
            domain, op, subop, ..
        } => hook::run(cli, domain, op, subop),
        Command::Monitor { json, max_events } => monitor::run(cli, *json, *max_events),
        Command::Cluster { action } => cluster::run(cli, action),
        Command::GenerateDocs { dir } => docs::run(dir),
    }
}

fn main() -> ExitCode {
    passage_core::i18n::init();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PASSAGE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse_from(passage_core::demo::join_demo_variant(std::env::args_os()))
    {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(msg)) => {
            eprintln!("passagectl: {msg}");
            ExitCode::from(2)
        }
    }
}
