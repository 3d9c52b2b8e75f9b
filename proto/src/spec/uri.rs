//! The user-info part of URIs: where a credential would hide in a spec value.

/// The user-info part (`user:pass`) of a URI's authority, if any.
pub(super) fn userinfo(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(user, _)| user)
}

/// Whether `value` looks like `scheme://user:password@host…`.
pub(super) fn has_password(value: &str) -> bool {
    value.contains("://") && userinfo(value).is_some_and(|user| user.contains(':'))
}

/// `uri` without its user info, for manifests and logs.
pub(super) fn strip_userinfo(uri: &str) -> String {
    match (uri.split_once("://"), userinfo(uri)) {
        (Some((scheme, rest)), Some(user)) => {
            format!("{scheme}://{}", &rest[user.len() + 1..])
        }
        _ => uri.to_owned(),
    }
}
