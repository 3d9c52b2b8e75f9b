//! Object-key rules shared by both backends, and content types.

use crate::error::StorageError;

/// File names starting with this are a local store's in-flight temporary files: keys may not use it and
/// listings skip it.
pub(crate) const TMP_PREFIX: &str = ".lucid-tmp-";

/// The longest key S3 accepts, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Checks that `key` is a relative object name that maps safely onto a folder: non-empty, at most 1024
/// bytes, no leading `/`, no empty, `.` or `..` segments, no control characters, and no segment using
/// the local store's temporary-file prefix.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(key, "must be at most 1024 bytes"));
    }
    check_segments(key)
}

/// Checks a listing prefix: empty, or a key that may end with `/`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), StorageError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return if prefix.is_empty() {
            Ok(())
        } else {
            Err(invalid(prefix, "must not start with '/'"))
        };
    }
    if trimmed.len() > MAX_KEY_BYTES {
        return Err(invalid(prefix, "must be at most 1024 bytes"));
    }
    check_segments(trimmed).map_err(|e| match e {
        StorageError::InvalidKey { reason, .. } => invalid(prefix, reason),
        other => other,
    })
}

fn check_segments(key: &str) -> Result<(), StorageError> {
    if key.starts_with('/') {
        return Err(invalid(key, "must not start with '/'"));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid(key, "must not contain control characters"));
    }
    for segment in key.split('/') {
        match segment {
            "" => {
                return Err(invalid(
                    key,
                    "must not contain empty segments ('//' or a trailing '/')",
                ));
            }
            "." | ".." => return Err(invalid(key, "must not contain '.' or '..' segments")),
            s if s.starts_with(TMP_PREFIX) => {
                return Err(invalid(key, "segments must not start with '.lucid-tmp-'"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn invalid(key: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidKey {
        key: key.to_owned(),
        reason,
    }
}

/// The content type for a key, by its extension (case-insensitive): `.png` `image/png`, `.json`
/// `application/json`, `.html` `text/html; charset=utf-8`, `.css` `text/css; charset=utf-8`, `.js`
/// `text/javascript; charset=utf-8`, anything else `application/octet-stream`.
pub fn content_type_for(key: &str) -> &'static str {
    let file = key.rsplit('/').next().unwrap_or(key);
    let ext = match file.rsplit_once('.') {
        Some((_, ext)) => ext.to_ascii_lowercase(),
        None => return "application/octet-stream",
    };
    match ext.as_str() {
        "png" => "image/png",
        "json" => "application/json",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_keys() {
        for key in [
            "a",
            "run1/run.json",
            "p/run1/seed/conv1/0007.png",
            ".hidden",
            "a b/c",
        ] {
            validate_key(key).unwrap();
        }
        for prefix in ["", "run1/", "run1", "p/run1/se"] {
            validate_prefix(prefix).unwrap();
        }
    }

    #[test]
    fn bad_keys() {
        for (key, reason) in [
            ("", "must not be empty"),
            ("/a", "must not start with '/'"),
            ("a/../b", "must not contain '.' or '..' segments"),
            ("..", "must not contain '.' or '..' segments"),
            ("a/./b", "must not contain '.' or '..' segments"),
            (
                "a//b",
                "must not contain empty segments ('//' or a trailing '/')",
            ),
            (
                "a/",
                "must not contain empty segments ('//' or a trailing '/')",
            ),
            ("a\nb", "must not contain control characters"),
            ("a\0b", "must not contain control characters"),
            (
                "a/.lucid-tmp-x",
                "segments must not start with '.lucid-tmp-'",
            ),
        ] {
            match validate_key(key) {
                Err(StorageError::InvalidKey { key: k, reason: r }) => {
                    assert_eq!((k.as_str(), r), (key, reason));
                }
                other => panic!("{key:?}: {other:?}"),
            }
        }
        assert!(validate_key(&"a".repeat(1025)).is_err());
        for prefix in ["/", "/a", "a//", "../", "a/../"] {
            assert!(validate_prefix(prefix).is_err(), "{prefix:?}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_for("r/s/l/0001.png"), "image/png");
        assert_eq!(content_type_for("r/s/l/0001.PNG"), "image/png");
        assert_eq!(content_type_for("r/run.json"), "application/json");
        assert_eq!(content_type_for("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type_for("site.css"), "text/css; charset=utf-8");
        assert_eq!(content_type_for("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type_for("a.b/file"), "application/octet-stream");
        assert_eq!(content_type_for("blob.bin"), "application/octet-stream");
    }
}
