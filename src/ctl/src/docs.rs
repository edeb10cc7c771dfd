//! `passagectl generate-docs DIR` (hidden; `make` runs it): man pages and shell completions.

use crate::Failure;
use std::path::Path;

pub fn run(dir: &Path) -> Result<u8, Failure> {
    passage_core::cli::generate_docs(dir)?;
    Ok(0)
}
