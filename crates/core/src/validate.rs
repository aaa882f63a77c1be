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

#[cfg(test)]
mod tests {
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
