//! Reading and redacting AMQP URIs without ever printing the password.

/// The URI with the password of its user-info replaced by `***`: `amqp://user:***@host:port/vhost`.
///
/// Works on any string, parsable or not: whatever sits between `://` and the last `@` of the authority
/// is treated as user-info. A URI without a password is returned unchanged.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        // not a URI at all: it might be a bare secret, so show nothing of it
        return "<unparsable uri>".into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => uri.to_string(),
    }
}

/// The parts of an AMQP URI this crate needs besides connecting.
#[derive(Clone)]
pub(crate) struct UriParts {
    /// Percent-decoded user name, if any.
    pub user: Option<String>,
    /// Percent-decoded password, if any.
    pub password: Option<String>,
    /// Percent-decoded virtual host (`/` when the path is empty or absent).
    pub vhost: String,
}

impl UriParts {
    pub(crate) fn parse(uri: &str) -> Self {
        let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (user, password) = match authority.rsplit_once('@') {
            Some((userinfo, _)) => match userinfo.split_once(':') {
                Some((u, p)) => (Some(decode(u)), Some(decode(p))),
                None => (Some(decode(userinfo)), None),
            },
            None => (None, None),
        };
        let path = tail.split(['?', '#']).next().unwrap_or("");
        let vhost = match path.strip_prefix('/') {
            // lapin: "amqp://host" and "amqp://host/%2f" mean "/"; "amqp://host/" means ""
            None => "/".to_string(),
            Some(v) => decode(v),
        };
        UriParts {
            user,
            password,
            vhost,
        }
    }

    /// `text` with every occurrence of the password (raw and percent-encoded) replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match self.password.as_deref() {
            Some(p) if !p.is_empty() => {
                let encoded = urlencoding::encode(p).into_owned();
                text.replace(p, "***").replace(&encoded, "***")
            }
            _ => text.to_string(),
        }
    }
}

fn decode(s: &str) -> String {
    urlencoding::decode(s).map_or_else(|_| s.to_string(), |d| d.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_uri("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_uri("amqps://u:p@ss:w@rd@h/v?heartbeat=10"),
            "amqps://u:***@h/v?heartbeat=10"
        );
        assert_eq!(redact_uri("amqp://u@h/v"), "amqp://u@h/v");
        assert_eq!(redact_uri("amqp://h:5672"), "amqp://h:5672");
        assert_eq!(redact_uri("garbage-secret"), "<unparsable uri>");
    }

    #[test]
    fn parts() {
        let p = UriParts::parse("amqp://us%40er:p%2Fw@h:5672/%2f");
        assert_eq!(p.user.as_deref(), Some("us@er"));
        assert_eq!(p.password.as_deref(), Some("p/w"));
        assert_eq!(p.vhost, "/");
        assert_eq!(UriParts::parse("amqp://h").vhost, "/");
        assert_eq!(UriParts::parse("amqp://h/prod?x=1").vhost, "prod");
        assert_eq!(p.scrub("bad p/w and p%2Fw"), "bad *** and ***");
    }
}
