//! A site's wanted background work as data: scheduled commands (cron) and daemons, with the validation and
//! the text forms people type. The tasks package applies it on the server.

use brokeforge_core::ValidationError;
use serde::{Deserialize, Serialize};

/// At most this many of each per site, and processes per daemon.
pub const MAX_TASKS: usize = 20;
pub const MAX_PROCESSES: u32 = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Schedule {
    /// Five cron fields (`* * * * *`) or `@hourly`, `@daily`, `@weekly`, `@monthly`.
    pub cron: String,
    pub command: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Daemon {
    pub command: String,
    #[serde(default = "one")]
    pub processes: u32,
}

fn one() -> u32 {
    1
}

/// What a user asks for: the whole wanted set (it replaces the current one).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(default)]
pub struct SiteTasks {
    pub schedules: Vec<Schedule>,
    pub daemons: Vec<Daemon>,
}

fn command(field: &'static str, c: &str) -> Result<String, ValidationError> {
    let c = c.trim();
    if c.is_empty() || c.len() > 1000 {
        return Err(ValidationError::new(
            field,
            "give a command of 1 to 1000 characters",
        ));
    }
    // One line: a newline would end the cron entry and start another (run as whoever it names).
    if c.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "a command is one line without control characters",
        ));
    }
    Ok(c.to_string())
}

fn cron(value: &str) -> Result<String, ValidationError> {
    let v = value.split_whitespace().collect::<Vec<_>>();
    let ok = match v.as_slice() {
        [m] => ["@hourly", "@daily", "@weekly", "@monthly"].contains(m),
        fields if fields.len() == 5 => fields
            .iter()
            .all(|f| f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c))),
        _ => false,
    };
    if ok {
        Ok(v.join(" "))
    } else {
        Err(ValidationError::new(
            "schedules",
            format!(
                "`{value}` is not a schedule: use five cron fields like `*/5 * * * *`, or @hourly, @daily, @weekly, @monthly"
            ),
        ))
    }
}

impl SiteTasks {
    /// Validated and normalised (trimmed commands, single-spaced cron fields).
    pub fn validated(&self) -> Result<SiteTasks, ValidationError> {
        if self.schedules.len() > MAX_TASKS || self.daemons.len() > MAX_TASKS {
            return Err(ValidationError::new(
                "tasks",
                format!("at most {MAX_TASKS} schedules and {MAX_TASKS} daemons per site"),
            ));
        }
        let mut out = SiteTasks::default();
        for s in &self.schedules {
            out.schedules.push(Schedule {
                cron: cron(&s.cron)?,
                command: command("schedules", &s.command)?,
            });
        }
        for d in &self.daemons {
            if !(1..=MAX_PROCESSES).contains(&d.processes) {
                return Err(ValidationError::new(
                    "daemons",
                    format!("processes must be between 1 and {MAX_PROCESSES}"),
                ));
            }
            out.daemons.push(Daemon {
                command: command("daemons", &d.command)?,
                processes: d.processes,
            });
        }
        Ok(out)
    }

    /// Read the text forms people type: schedules as crontab lines (`* * * * * php artisan schedule:run`),
    /// daemons one per line with an optional process count (`3: php artisan queue:work`). Blank lines and
    /// lines starting with `#` are skipped.
    pub fn parse(schedules: &str, daemons: &str) -> Result<SiteTasks, ValidationError> {
        let lines = |t: &str| -> Vec<String> {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        let mut out = SiteTasks::default();
        for l in lines(schedules) {
            let words: Vec<&str> = l.split_whitespace().collect();
            let n = if words[0].starts_with('@') { 1 } else { 5 };
            if words.len() <= n {
                return Err(ValidationError::new(
                    "schedules",
                    format!(
                        "`{l}` needs a schedule and a command, like `* * * * * php artisan schedule:run`"
                    ),
                ));
            }
            out.schedules.push(Schedule {
                cron: words[..n].join(" "),
                command: words[n..].join(" "),
            });
        }
        for l in lines(daemons) {
            let (processes, cmd) = match l.split_once(':') {
                Some((n, rest))
                    if !n.is_empty() && n.trim().chars().all(|c| c.is_ascii_digit()) =>
                {
                    (
                        n.trim().parse().map_err(|_| {
                            ValidationError::new("daemons", format!("`{n}` is not a process count"))
                        })?,
                        rest.trim().to_string(),
                    )
                }
                _ => (1, l.clone()),
            };
            out.daemons.push(Daemon {
                command: cmd,
                processes,
            });
        }
        out.validated()
    }

    /// The text forms of [`SiteTasks::parse`].
    pub fn to_text(&self) -> (String, String) {
        let schedules = self
            .schedules
            .iter()
            .map(|s| format!("{} {}\n", s.cron, s.command))
            .collect();
        let daemons = self
            .daemons
            .iter()
            .map(|d| {
                if d.processes == 1 {
                    format!("{}\n", d.command)
                } else {
                    format!("{}: {}\n", d.processes, d.command)
                }
            })
            .collect();
        (schedules, daemons)
    }
}
