//! Validation of user input. Every value that reaches a remote command or the database passes one of these
//! first; the error says what is wrong in words a user can act on.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        ValidationError {
            field,
            message: message.into(),
        }
    }
}

/// A server's display name: 1-64 characters, letters, digits, spaces, `-`, `_`, `.`.
pub fn server_name(name: &str) -> Result<String, ValidationError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(ValidationError::new(
            "name",
            "must be 1 to 64 characters long",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " -_.".contains(c))
    {
        return Err(ValidationError::new(
            "name",
            "may contain only letters, digits, spaces, '-', '_' and '.'",
        ));
    }
    Ok(name.to_string())
}

/// A host to connect to: an IPv4/IPv6 address or a DNS hostname.
pub fn host(value: &str) -> Result<String, ValidationError> {
    let value = value.trim();
    if value.parse::<IpAddr>().is_ok() {
        return Ok(value.to_string());
    }
    if value.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(ValidationError::new(
            "public_ip",
            format!("`{value}` is not a valid IP address"),
        ));
    }
    hostname(value).map_err(|_| {
        ValidationError::new(
            "public_ip",
            format!("`{value}` is neither an IP address nor a valid hostname"),
        )
    })
}

/// A DNS hostname (RFC 1123): labels of letters, digits and inner hyphens, at most 253 characters.
pub fn hostname(value: &str) -> Result<String, ValidationError> {
    let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = || ValidationError::new("domain", format!("`{value}` is not a valid hostname"));
    if v.is_empty() || v.len() > 253 {
        return Err(bad());
    }
    for label in v.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(v)
}

/// A site's domain: a hostname with at least two labels, so it cannot be `..`, a path or a bare word.
pub fn domain(value: &str) -> Result<String, ValidationError> {
    let v = hostname(value)?;
    if !v.contains('.') {
        return Err(ValidationError::new(
            "domain",
            format!("`{value}` needs a dot (e.g. example.com)"),
        ));
    }
    Ok(v)
}

/// An email address (accounts, certificate expiry notices): `local@domain.tld`, lower-cased, no spaces or
/// control characters.
pub fn email(value: &str) -> Result<String, ValidationError> {
    let v = value.trim().to_ascii_lowercase();
    let ok = v.len() <= 254
        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
        && v.split_once('@').is_some_and(|(local, dom)| {
            !local.is_empty() && !dom.contains('@') && domain(dom).is_ok()
        });
    if ok {
        Ok(v)
    } else {
        Err(ValidationError::new(
            "email",
            "enter an email address like you@example.com",
        ))
    }
}

/// A TCP port, 1-65535.
pub fn port(value: i64) -> Result<u16, ValidationError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ValidationError::new("ssh_port", format!("{value} is not a port (1-65535)")))
}

/// A PHP version as packaged by distributions: `8.3`.
pub fn php_version(value: &str) -> Result<String, ValidationError> {
    let ok = matches!(value.split_once('.'), Some((a, b))
        if !a.is_empty() && !b.is_empty() && a.len() <= 2 && b.len() <= 2
            && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(value.to_string())
    } else {
        Err(ValidationError::new(
            "php_version",
            format!("`{value}` is not a PHP version like 8.3"),
        ))
    }
}

/// An absolute path without `..`, NUL or newlines (used for remote directories).
pub fn absolute_path(field: &'static str, value: &str) -> Result<String, ValidationError> {
    if !value.starts_with('/')
        || value.split('/').any(|part| part == "..")
        || value.contains(['\0', '\n', '\r'])
    {
        return Err(ValidationError::new(
            field,
            format!("`{value}` is not a safe absolute path"),
        ));
    }
    Ok(value.to_string())
}

/// A directory inside a site (e.g. `public`, `web/public`); empty means the site's root. No absolute paths,
/// no `..`, no hidden segments.
pub fn relative_dir(field: &'static str, value: &str) -> Result<String, ValidationError> {
    let v = value.trim().trim_matches('/');
    if v.is_empty() {
        return Ok(String::new());
    }
    let ok = v.len() <= 200
        && v.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && !seg.starts_with('-')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if !ok {
        return Err(ValidationError::new(
            field,
            format!("`{value}` is not a directory inside the site (like `public`)"),
        ));
    }
    Ok(v.to_string())
}

/// A git branch name (a safe subset of `git check-ref-format`).
pub fn git_branch(value: &str) -> Result<String, ValidationError> {
    let v = value.trim();
    let ok = !v.is_empty()
        && v.len() <= 200
        && !v.starts_with(['-', '/', '.'])
        && !v.ends_with(['/', '.'])
        && !v.ends_with(".lock")
        && !v.contains("..")
        && !v.contains("//")
        && !v.contains("@{")
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
    if !ok {
        return Err(ValidationError::new(
            "branch",
            format!("`{value}` is not a valid branch name"),
        ));
    }
    Ok(v.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitTransport {
    Ssh,
    Https,
}

/// A git repository BrokeForge may clone: `git@host:owner/repo.git`, `ssh://git@host[:port]/path` or
/// `https://host/path`. Credentials in https URLs are refused (use an ssh URL and the site's deploy key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRemote {
    pub url: String,
    pub transport: GitTransport,
    pub host: String,
    pub port: u16,
}

pub fn git_remote(value: &str) -> Result<GitRemote, ValidationError> {
    let v = value.trim();
    let bad = |why: &str| {
        ValidationError::new(
            "repository",
            format!("`{value}` is not a usable repository URL: {why}"),
        )
    };
    let path_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('-')
            && !p.split('/').any(|s| s == "..")
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~/-".contains(&b))
    };
    let user_ok = |u: &str| {
        !u.is_empty()
            && !u.starts_with('-')
            && u.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let host_port = |hp: &str, default: u16| -> Result<(String, u16), ValidationError> {
        let (h, p) = match hp.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("bad port"))?,
            ),
            _ => (hp, default),
        };
        let h = h.trim_start_matches('[').trim_end_matches(']');
        let host = host(h).map_err(|_| bad("bad host name"))?;
        Ok((host, p))
    };
    if v.len() > 500 {
        return Err(bad("too long"));
    }
    if let Some(rest) = v.strip_prefix("https://") {
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
        if authority.contains('@') {
            return Err(bad(
                "do not put credentials in the URL; use an ssh URL and the site's deploy key",
            ));
        }
        let (host, port) = host_port(authority, 443)?;
        if !path_ok(path) {
            return Err(bad("the path has characters git hosts do not use"));
        }
        return Ok(GitRemote {
            url: v.to_string(),
            transport: GitTransport::Https,
            host,
            port,
        });
    }
    if let Some(rest) = v.strip_prefix("ssh://") {
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
        let (user, hp) = authority
            .split_once('@')
            .ok_or_else(|| bad("name the user, like ssh://git@host/owner/repo.git"))?;
        if !user_ok(user) {
            return Err(bad("bad user name"));
        }
        let (host, port) = host_port(hp, 22)?;
        if !path_ok(path) {
            return Err(bad("the path has characters git hosts do not use"));
        }
        return Ok(GitRemote {
            url: v.to_string(),
            transport: GitTransport::Ssh,
            host,
            port,
        });
    }
    // scp-like: user@host:path
    let (user, rest) = v
        .split_once('@')
        .ok_or_else(|| bad("use git@host:owner/repo.git, ssh://... or https://..."))?;
    let (h, path) = rest.split_once(':').ok_or_else(|| bad("missing `:path`"))?;
    if !user_ok(user) {
        return Err(bad("bad user name"));
    }
    let host = host(h).map_err(|_| bad("bad host name"))?;
    if !path_ok(path) {
        return Err(bad("the path has characters git hosts do not use"));
    }
    Ok(GitRemote {
        url: v.to_string(),
        transport: GitTransport::Ssh,
        host,
        port: 22,
    })
}

/// An address inside a private network or this machine: loopback, RFC 1918, carrier-grade NAT, link-local,
/// unspecified, broadcast, IPv6 unique-local and link-local (and IPv4 ones written as IPv6). An operator can
/// make BrokeForge refuse servers there (`BROKEFORGE_REFUSE_PRIVATE_ADDRESSES=1`), so that a user cannot
/// point it at the panel's own network.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
                || a == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn git_remotes() {
        let r = git_remote("git@github.com:acme/app.git").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.transport),
            ("github.com", 22, GitTransport::Ssh)
        );
        let r = git_remote("ssh://git@10.0.0.1:2222/srv/git/app.git").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("10.0.0.1", 2222));
        let r = git_remote("https://gitlab.com/acme/app.git").unwrap();
        assert_eq!((r.port, r.transport), (443, GitTransport::Https));
        for bad in [
            "https://user:pw@github.com/acme/app.git",
            "git@github.com:-oProxyCommand=x",
            "git@github.com:a b",
            "git@github.com:$(id)",
            "ext::sh -c id",
            "file:///etc",
            "/srv/repo.git",
            "git@bad host:x",
            "ssh://github.com/acme/app.git",
            "git@github.com:../x",
        ] {
            assert!(git_remote(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn branches_and_dirs() {
        assert_eq!(git_branch("feature/x-1").unwrap(), "feature/x-1");
        for bad in [
            "", "-x", "a..b", "a b", "a;b", "x.lock", "/x", "x/", "$(id)",
        ] {
            assert!(git_branch(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(relative_dir("web_directory", "/public/").unwrap(), "public");
        assert_eq!(relative_dir("web_directory", "").unwrap(), "");
        for bad in ["../etc", "a/../b", ".git", "a b", "$(id)", "a;b"] {
            assert!(
                relative_dir("web_directory", bad).is_err(),
                "{bad} accepted"
            );
        }
    }
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host("203.0.113.7").unwrap(), "203.0.113.7");
        assert_eq!(host("2001:db8::1").unwrap(), "2001:db8::1");
        assert_eq!(host("Web-1.Example.com").unwrap(), "web-1.example.com");
        for bad in [
            "999.1.1.1",
            "1.2.3",
            "a b",
            "-x.com",
            "x;rm -rf /",
            "",
            "$(id)",
        ] {
            assert!(host(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            super::email(" Ops@Example.COM ").unwrap(),
            "ops@example.com"
        );
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@localhost",
            "ops@exa mple.com",
            "a@b@example.com",
            "ops@example.com;id",
            "ops@$(id).com",
        ] {
            assert!(super::email(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "203.0.113.7",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn domains() {
        assert_eq!(domain("example.com").unwrap(), "example.com");
        for bad in [
            "a.com;touch /tmp/x",
            "../etc",
            "$(id)",
            "localhost",
            "a..com",
            "a/b.com",
        ] {
            assert!(domain(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn ports_and_versions() {
        assert_eq!(port(22).unwrap(), 22);
        assert!(port(0).is_err());
        assert!(port(65536).is_err());
        assert!(php_version("8.3").is_ok());
        assert!(php_version("8.3;id").is_err());
        assert!(php_version("8").is_err());
        assert!(absolute_path("dir", "/home/a/../b").is_err());
        assert!(absolute_path("dir", "relative").is_err());
        assert_eq!(server_name(" web 1 ").unwrap(), "web 1");
        assert!(server_name("x<script>").is_err());
    }
}
