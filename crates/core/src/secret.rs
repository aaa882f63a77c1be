//! A string that never prints itself, so it cannot leak through `Debug`, logs or error messages.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The plain value. Call it only where the value leaves for the server (stdin, file contents).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Replace every occurrence of each secret in `text` with `********`.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut out = text.to_string();
    // Longest first: a secret that contains another is masked whole. Every secret is masked, however short:
    // the rules that make secrets long live where they are set.
    let mut sorted: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in sorted {
        if !s.is_empty() && out.contains(s) {
            out = out.replace(s, "********");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s} {s:?}"), "******** Secret(********)");
        assert_eq!(redact("pw=hunter22;", &[s]), "pw=********;");
        // Short secrets too, and the longest first.
        assert_eq!(
            redact("a=x7 b=x7y8", &[Secret::new("x7"), Secret::new("x7y8")]),
            "a=******** b=********"
        );
    }
}
