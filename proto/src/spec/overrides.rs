//! Command-line overrides (`--set render.steps=64`): split into `(key, value)` pairs for
//! [`super::SweepSpec::load`], refusing anything that would put a credential on the command line.

use super::error::SpecError;
use super::uri::has_password;

/// Splits a `key=value` command-line override; the key is a dotted spec path such as `render.steps`.
pub fn parse_override(arg: &str) -> Result<(String, String), SpecError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(SpecError::Override(arg.to_owned())),
    }
}

/// Words that mark an override key as a credential (matched case-insensitively anywhere in the key).
const SECRET_WORDS: [&str; 5] = ["password", "secret", "token", "access_key", "session_key"];

/// Splits `--set key=value` arguments into overrides for [`super::SweepSpec::load`], refusing
/// credentials.
///
/// Overrides come from the command line, where they end up in shell history and process listings, so
/// anything that looks like a credential is refused: keys naming a password, secret, token, access key
/// or session key, and values holding a URI with a password (`amqp://user:pass@host`). A malformed
/// argument is refused too. The error ([`SpecError::RefusedOverride`]) names the key, or the
/// argument's position when it has no `=`, and never echoes the value, which may be a pasted secret.
pub fn parse_overrides(args: &[String]) -> Result<Vec<(String, String)>, SpecError> {
    args.iter()
        .enumerate()
        .map(|(i, arg)| {
            let (key, value) = parse_override(arg).map_err(|_| SpecError::RefusedOverride {
                key: format!("(argument {})", i + 1),
                reason: "expected key=value".into(),
            })?;
            let lower = key.to_ascii_lowercase();
            if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
                return Err(SpecError::RefusedOverride {
                    key,
                    reason: "credentials are not accepted on the command line; use env \
                             LUCID_AMQP_URI, queue.uri_file, storage.credentials_file or \
                             LUCID_S3_ACCESS_KEY_ID / LUCID_S3_SECRET_ACCESS_KEY"
                        .into(),
                });
            }
            if has_password(&value) {
                return Err(SpecError::RefusedOverride {
                    key,
                    reason: "the value holds a URI with a password; put the full URI in env \
                             LUCID_AMQP_URI or in the file named by queue.uri_file"
                        .into(),
                });
            }
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn plain_overrides_pass() {
        let parsed = parse_overrides(&args(&[
            "render.steps=64",
            "queue.uri=amqp://lucid@h/%2f",
            "storage.endpoint=http://h:8333",
        ]))
        .expect("plain overrides");
        assert_eq!(parsed[0], ("render.steps".into(), "64".into()));
        assert_eq!(parsed[1].1, "amqp://lucid@h/%2f");
        assert_eq!(parsed[2].1, "http://h:8333");
        assert_eq!(parse_overrides(&[]).expect("no overrides"), Vec::new());
    }

    #[test]
    fn credential_overrides_are_refused_without_echoing_them() {
        for (arg, key) in [
            ("queue.uri=amqp://guest:hunter2@h/%2f", "queue.uri"),
            (
                "storage.secret_access_key=hunter2",
                "storage.secret_access_key",
            ),
            ("queue.password=hunter2", "queue.password"),
            ("storage.Access_Key_Id=hunter2", "storage.Access_Key_Id"),
            (
                "storage.endpoint=http://ak:hunter2@h:8333",
                "storage.endpoint",
            ),
        ] {
            let err = parse_overrides(&args(&["render.steps=8", arg])).expect_err(arg);
            assert!(
                matches!(&err, SpecError::RefusedOverride { key: k, .. } if k == key),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.starts_with(&format!("--set {key}: ")), "{text}");
        }
    }

    #[test]
    fn malformed_overrides_are_refused_by_position() {
        let err = parse_overrides(&args(&["render.steps=8", "hunter2"])).expect_err("no =");
        assert_eq!(err.to_string(), "--set (argument 2): expected key=value");
        assert!(parse_overrides(&args(&["=value"])).is_err());
    }

    #[test]
    fn override_parsing() {
        assert_eq!(
            parse_override("render.steps=64").unwrap(),
            ("render.steps".to_owned(), "64".to_owned())
        );
        assert_eq!(parse_override("a=b=c").unwrap().1, "b=c");
        assert!(parse_override("=1").is_err());
        assert!(parse_override("steps").is_err());
    }
}
