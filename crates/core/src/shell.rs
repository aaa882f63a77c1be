//! POSIX shell quoting for values placed into remote commands.

/// Quote `value` so that `sh` reads it back as exactly one literal word.
pub fn shell_quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return value.to_string();
    }
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(
            shell_quote("/home/brokeforge/a.com"),
            "/home/brokeforge/a.com"
        );
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $(id)"), r"'it'\''s $(id)'");
    }
}
