//! A remote URL named as the forge names it: host, owner, repository.

/// `owner/name` on `host`, from any of the URL forms git accepts for a forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoName {
    /// `github.com`, or `127.0.0.1:PORT` for a forge on this machine.
    pub host: String,
    pub owner: String,
    pub name: String,
    /// `http` only for a forge addressed by an http URL (tests, an internal server).
    pub scheme: &'static str,
}

impl RepoName {
    /// `https://host/owner/name(.git)`, `http://…`, `ssh://git@host/owner/name`,
    /// `git@host:owner/name(.git)`. Credentials in the URL are dropped.
    pub fn parse(url: &str) -> Option<RepoName> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = url.strip_prefix("http://") {
            ("http", r)
        } else if let Some(r) = url.strip_prefix("ssh://") {
            ("https", r)
        } else if let Some((user_host, path)) = url.split_once(':')
            && !user_host.contains('/')
            && user_host.contains('@')
        {
            return Self::from_parts("https", user_host, path);
        } else {
            return None;
        };
        let (authority, path) = rest.split_once('/')?;
        let ssh = url.starts_with("ssh://");
        let named = Self::from_parts(scheme, authority, path)?;
        // The token travels in the clear over http: only to this machine.
        if named.scheme == "http" && !is_loopback(&named.host) {
            return None;
        }
        // An ssh URL's port is ssh's, not the https one a token pushes to.
        Some(if ssh {
            RepoName {
                host: named.host.split(':').next().unwrap_or_default().to_owned(),
                ..named
            }
        } else {
            named
        })
    }

    fn from_parts(scheme: &'static str, authority: &str, path: &str) -> Option<RepoName> {
        // What URL parsers split on differently (a fragment, a query, a backslash): a
        // URL that reads as two hosts is no forge's.
        if authority.contains(['#', '?', '\\']) || path.contains(['#', '?', '\\']) {
            return None;
        }
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let mut parts = path.trim_matches('/').split('/');
        let owner = parts.next()?;
        let name = parts.next()?.trim_end_matches(".git");
        let plain = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        // A host name and an optional port: nothing that could make git or an HTTP client
        // read the URL as another host than the one named here.
        let host_ok = {
            let (name, port) = host.split_once(':').unwrap_or((host, "0"));
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
        };
        if parts.next().is_some() || !plain(owner) || !plain(name) || !host_ok {
            return None;
        }
        Some(RepoName {
            host: host.to_owned(),
            owner: owner.to_owned(),
            name: name.to_owned(),
            scheme,
        })
    }

    /// Where a token pushes: git's smart HTTP (an ssh remote is pushed over https, as a
    /// token authenticates there).
    pub fn push_url(&self) -> String {
        format!(
            "{}://{}/{}/{}.git",
            self.scheme, self.host, self.owner, self.name
        )
    }

    /// GitHub's API for this host: api.github.com for github.com, `/api/v3` on an
    /// Enterprise host.
    pub fn default_api(&self) -> String {
        if self.host == "github.com" {
            "https://api.github.com".into()
        } else {
            format!("{}://{}/api/v3", self.scheme, self.host)
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let name = host.split(':').next().unwrap_or_default();
    name == "localhost"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

impl std::fmt::Display for RepoName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::RepoName;

    #[test]
    fn every_remote_form_names_owner_and_repo() {
        for url in [
            "https://github.com/org/app",
            "https://github.com/org/app.git",
            "https://x-access-token:t0k@github.com/org/app.git",
            "git@github.com:org/app.git",
            "ssh://git@github.com/org/app",
        ] {
            let r = RepoName::parse(url).unwrap_or_else(|| panic!("{url}"));
            assert_eq!(
                (r.host.as_str(), r.owner.as_str(), r.name.as_str()),
                ("github.com", "org", "app"),
                "{url}"
            );
            assert_eq!(r.push_url(), "https://github.com/org/app.git");
            assert_eq!(r.default_api(), "https://api.github.com");
        }
        let local = RepoName::parse("http://127.0.0.1:8123/org/app.git").unwrap();
        assert_eq!(local.push_url(), "http://127.0.0.1:8123/org/app.git");
        let ssh = RepoName::parse("ssh://git@git.example.com:7999/org/app.git").unwrap();
        assert_eq!(ssh.push_url(), "https://git.example.com/org/app.git");
        for bad in [
            "/home/me/app",
            "https://github.com/org",
            "https://github.com/org/app/extra",
            "https://github.com/../app",
            "file:///x/y",
            // The token would cross the network in the clear.
            "http://github.com/org/app",
            "https://evil.example#@github.com/org/app",
            "https://github.com\\@evil.example/org/app",
        ] {
            assert!(RepoName::parse(bad).is_none(), "{bad}");
        }
    }
}
