//! `tsunagi inspect FILE`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Prints a saved case document's typed view; exit 2 if it is not a clean case document.
pub fn inspect(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let doc = tsunagi_sync::document::load_saved(&bytes)
        .with_context(|| format!("{} is not a saved Automerge document", file.display()))?;
    let reading = tsunagi_sync::document::read_case(&doc);
    match &reading.view {
        Some(view) => println!("{}", serde_json::to_string_pretty(view)?),
        None => eprintln!("{} is not a readable case document", file.display()),
    }
    for issue in &reading.issues {
        eprintln!("schema issue: {issue}");
    }
    Ok(if reading.view.is_some() && reading.issues.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
