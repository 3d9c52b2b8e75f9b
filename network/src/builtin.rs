//! The descriptions shipped with lucid-sweep, each also a worked example of the file format.

use crate::description::Description;
use crate::error::NetworkError;

/// tf-slim `alexnet_v2` as the ecoset runs trained it: the TOML in `network/builtin/alexnet_v2.toml`.
pub const ALEXNET_V2_TOML: &str = include_str!("../builtin/alexnet_v2.toml");

/// The name a spec uses for the built-in `alexnet_v2`.
pub const ALEXNET_V2: &str = "alexnet_v2";

/// The built-in `alexnet_v2` description.
pub fn alexnet_v2() -> Description {
    // the file is part of the crate and is parsed by a test, so this cannot fail at run time
    Description::parse_toml(ALEXNET_V2_TOML, "built-in alexnet_v2")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The built-in description called `name`, if there is one.
pub fn by_name(name: &str) -> Result<Description, NetworkError> {
    match text(name) {
        Some(toml) => Description::parse_toml(toml, &format!("built-in {name}")),
        None => Err(unknown(name)),
    }
}

/// The error for a built-in name that does not exist.
pub fn unknown(name: &str) -> NetworkError {
    NetworkError::Parse {
        origin: format!("built-in {name}"),
        reason: format!("no such built-in network; the built-in ones are {ALEXNET_V2}"),
    }
}

/// The TOML text of the built-in description called `name`, whose digest identifies it.
pub fn text(name: &str) -> Option<&'static str> {
    (name == ALEXNET_V2).then_some(ALEXNET_V2_TOML)
}
