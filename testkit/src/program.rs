//! Programs a test runs (Chromium, Node), found on `PATH` or through a variable naming one.

use std::path::{Path, PathBuf};

use crate::skip_or_fail;

/// The path of program `name`: the value of `override_var` when that is set, else `name` on
/// `PATH`. When there is none the test cannot run: [`skip_or_fail`] reports it (failing under CI),
/// naming `install` as the way to get it, and this returns `None`.
pub fn require_program(name: &str, override_var: Option<&str>, install: &str) -> Option<PathBuf> {
    let chosen = override_var.and_then(|var| {
        std::env::var_os(var)
            .filter(|value| !value.is_empty())
            .map(|value| (var, PathBuf::from(value)))
    });
    let found = match &chosen {
        Some((_, path)) if path.components().count() > 1 => path.is_file().then(|| path.clone()),
        Some((_, path)) => on_path(path),
        None => on_path(Path::new(name)),
    };
    if found.is_none() {
        let what = match &chosen {
            Some((var, path)) => format!("{name} not found at {} (from {var})", path.display()),
            None => format!("{name} not found on PATH"),
        };
        let fix = match override_var {
            Some(var) => format!("{install}, or set {var} to its path"),
            None => install.to_owned(),
        };
        skip_or_fail(&what, &fix);
    }
    found
}

/// The first `PATH` entry holding a file `program`.
fn on_path(program: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_program_on_path() {
        let sh = on_path(Path::new("sh")).expect("sh is on PATH");
        assert!(sh.is_absolute(), "{}", sh.display());
        assert_eq!(on_path(Path::new("no-such-program-lucid")), None);
    }
}
