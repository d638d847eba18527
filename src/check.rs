//! `crossgate check`: everything `run` would load, loaded and explained, without binding.

use crate::config::{Config, Overrides};
use std::path::Path;

/// What a successful check found.
pub struct Report {
    pub identity: String,
    pub seconds_left: i64,
    pub anchors: usize,
}

/// Checks the configuration file and the identity files it names: they parse, the key
/// matches the leaf, the leaf chains to the anchors and is valid now, and names the own
/// identity. Returns every problem found.
pub fn check(path: &Path) -> Result<Report, Vec<String>> {
    let config = Config::load(path, &Overrides::default()).map_err(|e| e.0)?;
    let (roots, creds) = crate::identity::load(&config.identity, &crate::tls::provider())?;
    Ok(Report {
        identity: creds.identity,
        seconds_left: creds.not_after - crate::identity::unix_now(),
        anchors: roots.len(),
    })
}
