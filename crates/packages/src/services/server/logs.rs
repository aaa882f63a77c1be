//! Reading a server's logs: nginx's access and error logs (the server's default site or one site's), PHP-FPM's
//! log, and the journal of a unit BrokeForge manages. Logs are read, not kept: the command's output goes
//! straight to whoever asked. Where the files are is decided by the templates that configure them
//! (`site.conf.j2`, `default.conf.j2`, `fpm-pool.conf.j2`).

use brokeforge_core::{ValidationError, shell_quote};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};

/// Most lines one read returns.
pub const MAX_LINES: u32 = 10_000;
/// Lines read when none are asked for.
pub const DEFAULT_LINES: u32 = 200;
/// Longest a follow runs before the server ends it.
pub const FOLLOW_SECS: u64 = 3600;
/// Lines of a file scanned for a time range (the newest).
const SCAN_LINES: u32 = 100_000;

/// Which log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    NginxAccess,
    NginxError,
    PhpFpm,
    Unit,
}

impl LogKind {
    pub const ALL: [&'static str; 4] = ["nginx-access", "nginx-error", "php-fpm", "unit"];

    pub fn parse(value: &str) -> Result<LogKind, ValidationError> {
        Ok(match value.trim() {
            "nginx-access" => LogKind::NginxAccess,
            "nginx-error" => LogKind::NginxError,
            "php-fpm" => LogKind::PhpFpm,
            "unit" | "journal" => LogKind::Unit,
            _ => {
                return Err(ValidationError::new(
                    "kind",
                    "nginx-access, nginx-error, php-fpm or unit",
                ));
            }
        })
    }
}

/// What to read: a file, or units' journals (journalctl patterns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    File(String),
    Units(Vec<String>),
}

/// The file of a log kind: of site `domain` when given, else the server's. `php_version` is the site's (or
/// the server's first) PHP version.
/// `site`: the site's domain and its PHP-FPM pool (see `SiteUser::pool`).
pub fn file_of(
    kind: LogKind,
    site: Option<(&str, &str)>,
    php_version: Option<&str>,
) -> Result<String, ValidationError> {
    let (domain, pool) = site.unzip();
    let domain = domain.map(brokeforge_core::validate::domain).transpose()?;
    let php = || {
        php_version
            .map(brokeforge_core::validate::php_version)
            .transpose()?
            .ok_or_else(|| {
                ValidationError::new("kind", "the server has no PHP: install the web server")
            })
    };
    Ok(match (kind, domain) {
        (LogKind::NginxAccess, Some(d)) => format!("/var/log/nginx/{d}-access.log"),
        (LogKind::NginxAccess, None) => "/var/log/nginx/default-access.log".into(),
        (LogKind::NginxError, Some(d)) => format!("/var/log/nginx/{d}-error.log"),
        (LogKind::NginxError, None) => "/var/log/nginx/error.log".into(),
        // A site's PHP errors go to its pool's log; the server's is PHP-FPM's own.
        (LogKind::PhpFpm, Some(_)) => crate::services::webserver::nginx::pool_log(
            &php()?,
            // Named by BrokeForge (`brokeforge` or `site<ID>`), never by the user.
            pool.unwrap_or("brokeforge"),
        ),
        (LogKind::PhpFpm, None) => format!("/var/log/php{}-fpm.log", php()?),
        (LogKind::Unit, _) => {
            return Err(ValidationError::new(
                "unit",
                "a unit's log is its journal: name the unit",
            ));
        }
    })
}

/// A unit name as given: letters, digits and `@._-` only.
pub fn check_unit(unit: &str) -> Result<String, ValidationError> {
    let unit = unit.trim().trim_end_matches(".service");
    if unit.is_empty()
        || unit.len() > 100
        || !unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(&b))
        || unit.starts_with(['-', '.', '@'])
    {
        return Err(ValidationError::new(
            "unit",
            format!("`{unit}` is not a unit name"),
        ));
    }
    Ok(unit.to_string())
}

/// The journalctl patterns of `unit` when BrokeForge manages it (`managed` lists the unit names and the
/// templated units' prefixes it knows on this server), else a clear refusal.
pub fn units_of(unit: &str, managed: &[String]) -> Result<Vec<String>, ValidationError> {
    let unit = check_unit(unit)?;
    if !managed
        .iter()
        .any(|m| *m == unit || unit.split('@').next() == Some(m.as_str()))
    {
        return Err(ValidationError::new(
            "unit",
            format!(
                "`{unit}` is not a unit BrokeForge manages on this server: {}",
                managed.join(", ")
            ),
        ));
    }
    Ok(match unit.as_str() {
        // The cluster's own unit logs; `postgresql` itself is only a wrapper.
        "postgresql" => vec!["postgresql".into(), "postgresql@*".into()],
        // Daemons are templates (one instance per process); a Node.js application is a plain unit.
        u if !u.contains('@') && u.starts_with("brokeforge-site-") && !u.ends_with("-app") => {
            vec![format!("{u}@*")]
        }
        u => vec![u.to_string()],
    })
}

/// A read of a log.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub source: LogSource,
    pub lines: u32,
    /// Unix milliseconds.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub follow: bool,
}

impl LogQuery {
    pub fn check(&self) -> Result<(), ValidationError> {
        if !(1..=MAX_LINES).contains(&self.lines) {
            return Err(ValidationError::new(
                "lines",
                format!("between 1 and {MAX_LINES}"),
            ));
        }
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s >= u
        {
            return Err(ValidationError::new("until", "must be after since"));
        }
        if self.follow && self.until.is_some() {
            return Err(ValidationError::new(
                "until",
                "a followed log has no end: leave out until",
            ));
        }
        Ok(())
    }

    /// Whether the caller filters lines by time (files have no index; the journal filters itself).
    pub fn filters_by_time(&self) -> bool {
        matches!(self.source, LogSource::File(_)) && (self.since.is_some() || self.until.is_some())
    }

    /// The command, run as root. A file read by time first prints the server's UTC offset (`+0100`) on a
    /// line of its own, for [`TimeFilter`]. A follow stops by itself when its caller goes away (the
    /// watchdog loop) or after [`FOLLOW_SECS`].
    pub fn command(&self) -> Result<String, ValidationError> {
        self.check()?;
        let n = self.lines;
        let read = match &self.source {
            LogSource::File(path) => {
                let q = shell_quote(path);
                let lines = if self.filters_by_time() && !self.follow {
                    SCAN_LINES
                } else {
                    n
                };
                let tail = format!(
                    "tail -n {lines}{} -- {q}",
                    if self.follow { " -F" } else { "" }
                );
                let offset = if self.filters_by_time() {
                    "date +%z; "
                } else {
                    ""
                };
                format!(
                    "if [ ! -e {q} ]; then echo {} >&2; exit 3; fi; {offset}{tail}",
                    shell_quote(&format!(
                        "{path} does not exist yet (nothing was logged, or the service is not installed)"
                    ))
                )
            }
            LogSource::Units(units) => {
                let mut c = format!("journalctl --no-pager -o short-iso -n {n}");
                for u in units {
                    c.push_str(&format!(" -u {}", shell_quote(u)));
                }
                if let Some(s) = self.since {
                    c.push_str(&format!(" --since @{}", s.div_euclid(1000)));
                }
                if let Some(u) = self.until {
                    c.push_str(&format!(" --until @{}", u.div_euclid(1000)));
                }
                if self.follow {
                    c.push_str(" -f");
                }
                c
            }
        };
        Ok(if self.follow {
            // `$PPID` is coreutils `timeout` around this shell: once it is gone (the caller left and the
            // command was killed), so is the reader, even if nothing more is ever logged.
            format!(
                "{read} & p=$!; while kill -0 $p 2>/dev/null; do kill -0 $PPID 2>/dev/null || break; sleep 1; done; \
                 kill $p 2>/dev/null; wait $p"
            )
        } else {
            read
        })
    }
}

/// Keeps the lines of a file log inside a time range. Lines without a time of their own (a stack trace's
/// continuation) go with the line before them.
pub struct TimeFilter {
    since: Option<i64>,
    until: Option<i64>,
    offset: Option<FixedOffset>,
    keep: bool,
}

impl TimeFilter {
    pub fn new(since: Option<i64>, until: Option<i64>) -> TimeFilter {
        TimeFilter {
            since,
            until,
            offset: None,
            keep: since.is_none(),
        }
    }

    /// Whether `line` is kept. The first line is the server's UTC offset, never kept.
    pub fn keep(&mut self, line: &str) -> bool {
        if self.offset.is_none() {
            let t = line.trim();
            let sign = if t.starts_with('-') { -1 } else { 1 };
            let secs = t
                .get(1..3)
                .and_then(|h| h.parse::<i32>().ok())
                .zip(t.get(3..5).and_then(|m| m.parse::<i32>().ok()))
                .map(|(h, m)| sign * (h * 3600 + m * 60))
                .unwrap_or(0);
            self.offset = FixedOffset::east_opt(secs).or(FixedOffset::east_opt(0));
            return false;
        }
        if let Some(at) = line_time(
            line,
            self.offset.unwrap_or(FixedOffset::east_opt(0).unwrap()),
        ) {
            self.keep = self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at < u);
        }
        self.keep
    }
}

/// The time of a log line in Unix milliseconds, for the formats of the logs above: nginx's access log
/// (`[28/Nov/2026:01:52:09 +0000]`), nginx's error log (`2026/11/28 01:52:09`, local time) and PHP-FPM's
/// (`[28-Nov-2026 01:52:09]` or with a zone name, local time).
pub fn line_time(line: &str, local: FixedOffset) -> Option<i64> {
    if let Some(start) = line.find('[') {
        let rest = &line[start + 1..];
        let inner = &rest[..rest.find(']')?];
        if let Ok(t) = DateTime::parse_from_str(inner, "%d/%b/%Y:%H:%M:%S %z") {
            return Some(t.timestamp_millis());
        }
        let head = inner.get(..20).unwrap_or(inner);
        if let Ok(t) = NaiveDateTime::parse_from_str(head, "%d-%b-%Y %H:%M:%S") {
            return local
                .from_local_datetime(&t)
                .single()
                .map(|t| t.timestamp_millis());
        }
    }
    let head = line.get(..19)?;
    NaiveDateTime::parse_from_str(head, "%Y/%m/%d %H:%M:%S")
        .ok()
        .and_then(|t| local.from_local_datetime(&t).single())
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_units_are_chosen_safely() {
        assert_eq!(
            file_of(
                LogKind::NginxAccess,
                Some(("example.com", "brokeforge")),
                None
            )
            .unwrap(),
            "/var/log/nginx/example.com-access.log"
        );
        assert_eq!(
            file_of(LogKind::PhpFpm, None, Some("8.2")).unwrap(),
            "/var/log/php8.2-fpm.log"
        );
        assert!(
            file_of(
                LogKind::NginxError,
                Some(("../../etc/shadow", "brokeforge")),
                None
            )
            .is_err()
        );
        assert!(file_of(LogKind::PhpFpm, None, None).is_err());
        assert!(LogKind::parse("auth").is_err());
        let managed = vec![
            "nginx".to_string(),
            "postgresql".into(),
            "brokeforge-site-4-daemon-0".into(),
        ];
        assert_eq!(units_of("nginx.service", &managed).unwrap(), ["nginx"]);
        assert_eq!(
            units_of("postgresql", &managed).unwrap(),
            ["postgresql", "postgresql@*"]
        );
        assert_eq!(
            units_of("brokeforge-site-4-daemon-0", &managed).unwrap(),
            ["brokeforge-site-4-daemon-0@*"]
        );
        assert_eq!(
            units_of("brokeforge-site-4-daemon-0@2", &managed).unwrap(),
            ["brokeforge-site-4-daemon-0@2"]
        );
        for bad in ["sshd; reboot", "*", "-f", "systemd-logind", "nginx x"] {
            assert!(units_of(bad, &managed).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_read_and_follow() {
        let q = LogQuery {
            source: LogSource::File("/var/log/nginx/a.test-access.log".into()),
            lines: 50,
            since: None,
            until: None,
            follow: false,
        };
        let c = q.command().unwrap();
        assert!(
            c.ends_with("tail -n 50 -- /var/log/nginx/a.test-access.log"),
            "{c}"
        );
        let f = LogQuery {
            follow: true,
            ..q.clone()
        }
        .command()
        .unwrap();
        assert!(f.starts_with("if [ ! -e"), "{f}");
        assert!(
            f.contains("tail -n 50 -F -- /var/log/nginx/a.test-access.log & p=$!"),
            "{f}"
        );
        let timed = LogQuery {
            since: Some(1_000_000),
            ..q.clone()
        }
        .command()
        .unwrap();
        assert!(timed.contains("date +%z; tail -n 100000 --"), "{timed}");
        let j = LogQuery {
            source: LogSource::Units(vec!["postgresql@*".into()]),
            since: Some(1_795_729_694_000),
            until: Some(1_795_729_699_999),
            ..q.clone()
        }
        .command()
        .unwrap();
        assert_eq!(
            j,
            "journalctl --no-pager -o short-iso -n 50 -u 'postgresql@*' --since @1795729694 --until @1795729699"
        );
        for bad in [
            LogQuery {
                lines: 0,
                ..q.clone()
            },
            LogQuery {
                lines: MAX_LINES + 1,
                ..q.clone()
            },
            LogQuery {
                since: Some(5),
                until: Some(5),
                ..q.clone()
            },
            LogQuery {
                follow: true,
                until: Some(5),
                ..q.clone()
            },
        ] {
            assert!(bad.command().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lines_are_kept_by_time() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let t = |s: &str| line_time(s, utc);
        let at = t(r#"10.0.0.1 - - [28/Nov/2026:01:52:09 +0000] "GET / HTTP/1.1" 200 5"#).unwrap();
        assert_eq!(at, 1_795_830_729_000);
        assert_eq!(
            t("2026/11/28 01:52:09 [error] 12#12: *1 open() failed"),
            Some(at)
        );
        assert_eq!(
            t("[28-Nov-2026 01:52:09] NOTICE: ready to handle connections"),
            Some(at)
        );
        assert_eq!(t("[28-Nov-2026 01:52:09 UTC] PHP Warning:  oops"), Some(at));
        assert_eq!(t("#0 {main}"), None);
        // The server's clock is an hour ahead of UTC: its local 02:52:09 is 01:52:09 UTC.
        let plus1 = FixedOffset::east_opt(3600).unwrap();
        assert_eq!(line_time("2026/11/28 02:52:09 [error] x", plus1), Some(at));

        let mut f = TimeFilter::new(Some(at), Some(at + 60_000));
        assert!(!f.keep("+0000"));
        assert!(!f.keep("2026/11/28 01:52:08 [error] before"));
        assert!(!f.keep("  continued before"));
        assert!(f.keep("2026/11/28 01:52:09 [error] inside"));
        assert!(f.keep("  continued inside"));
        assert!(!f.keep("2026/11/28 01:53:09 [error] after"));
    }
}
