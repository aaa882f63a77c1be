//! What the database packages share: generated passwords, SQL quoting, and firewall rules for the sources a
//! user opens a database to (everything binds to localhost unless opened).

use brokeforge_core::{Secret, ValidationError};

/// A generated password: 32 characters from [A-Za-z0-9] (190 bits).
pub fn generate_password() -> Result<Secret, ValidationError> {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut buf = [0u8; 64];
        getrandom::fill(&mut buf)
            .map_err(|e| ValidationError::new("password", format!("no randomness: {e}")))?;
        // Rejection sampling keeps the distribution uniform.
        for b in buf {
            if (b as usize) < CHARS.len() * 4 && out.len() < 32 {
                out.push(CHARS[b as usize % CHARS.len()] as char);
            }
        }
    }
    Ok(Secret::new(out))
}

/// A MySQL/MariaDB string literal (backslash escapes are on by default there).
pub fn mysql_string(value: &str) -> String {
    format!(
        "'{}'",
        value
            .replace('\\', "\\\\")
            .replace('\'', "''")
            .replace('\0', "\\0")
    )
}

/// A PostgreSQL string literal (standard_conforming_strings: only quotes are special).
pub fn pg_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `allowed_sources`: a comma-separated list of IP addresses or CIDR networks; empty means localhost only.
pub fn parse_sources(value: &str) -> Result<Vec<String>, ValidationError> {
    let mut out = Vec::new();
    for raw in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (ip, prefix) = match raw.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (raw, None),
        };
        let addr: std::net::IpAddr = ip.parse().map_err(|_| {
            ValidationError::new(
                "allowed_sources",
                format!("`{raw}` is not an IP address or network"),
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if let Some(p) = prefix {
            let bits: u8 = p.parse().map_err(|_| {
                ValidationError::new("allowed_sources", format!("`{raw}`: bad prefix"))
            })?;
            if bits > max {
                return Err(ValidationError::new(
                    "allowed_sources",
                    format!("`{raw}`: prefix longer than {max}"),
                ));
            }
            if bits == 0 {
                return Err(ValidationError::new(
                    "allowed_sources",
                    "0.0.0.0/0 would open the database to everyone: list the addresses that need it",
                ));
            }
        }
        // Always a network in CIDR form: pg_hba needs it, ufw takes it.
        let cidr = match prefix {
            Some(p) => format!("{addr}/{p}"),
            None => format!("{addr}/{max}"),
        };
        if !out.contains(&cidr) {
            out.push(cidr);
        }
    }
    Ok(out)
}

/// ufw rules so that exactly `sources` reach `port`: rules for sources no longer listed are deleted.
pub fn firewall_commands(port: u16, sources: &[String], previous: &[String]) -> String {
    let mut cmds = Vec::new();
    for old in previous.iter().filter(|o| !sources.contains(o)) {
        cmds.push(format!(
            "ufw delete allow from {old} to any port {port} proto tcp >/dev/null 2>&1 || true"
        ));
    }
    for src in sources {
        cmds.push(format!(
            "ufw allow from {src} to any port {port} proto tcp >/dev/null"
        ));
    }
    if cmds.is_empty() {
        cmds.push(format!("echo 'port {port} stays closed to the network'"));
    }
    cmds.join(" && ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_quoting() {
        let a = generate_password().unwrap();
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a.expose(), generate_password().unwrap().expose());
        assert_eq!(mysql_string(r#"a'b"c\d$e;f g"#), r#"'a''b"c\\d$e;f g'"#);
        assert_eq!(pg_string(r#"a'b\c"#), r#"'a''b\c'"#);
    }

    #[test]
    fn sources_are_validated_and_firewall_is_exact() {
        assert_eq!(
            parse_sources(" 203.0.113.7, 198.51.100.0/24 ,2001:db8::1").unwrap(),
            ["203.0.113.7/32", "198.51.100.0/24", "2001:db8::1/128"]
        );
        assert!(parse_sources("").unwrap().is_empty());
        for bad in [
            "0.0.0.0/0",
            "1.2.3.4/33",
            "example.com",
            "1.2.3.4; ufw disable",
        ] {
            assert!(parse_sources(bad).is_err(), "{bad}");
        }
        let cmd = firewall_commands(
            3306,
            &["203.0.113.7".into()],
            &["198.51.100.1".into(), "203.0.113.7".into()],
        );
        assert_eq!(
            cmd,
            "ufw delete allow from 198.51.100.1 to any port 3306 proto tcp >/dev/null 2>&1 || true && \
             ufw allow from 203.0.113.7 to any port 3306 proto tcp >/dev/null"
        );
    }
}
