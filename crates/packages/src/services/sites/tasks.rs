//! A site's background work: scheduled commands (cron, e.g. Laravel's `schedule:run`) and daemons (systemd
//! services kept running, e.g. `queue:work`), each run as the app user in the live release. The site's
//! configuration holds the wanted set; `SiteTasksInstaller` makes the server match it exactly (what is no
//! longer wanted is stopped and removed). Deployments and rollbacks restart the daemons in the new release.

use brokeforge_core::{CredentialKind, ServiceType, ValidationError, shell_quote, validate};
use brokeforge_store::{ServerSite, Store};
use serde::{Deserialize, Serialize};

use super::site::{APP_HOME, SiteConfig};
use crate::base::executor::{Executor, RunContext};
use crate::base::{FileContents, FileStep, Package, PackageError, PackageInstaller, Plan};
use crate::milestones;

milestones! {
    pub enum SiteTasksInstallerMilestones {
        StopOld => ("stop_old", "Stopping what is no longer wanted"),
        ConfigureSchedules => ("configure_schedules", "Writing the schedule"),
        StartDaemons => ("start_daemons", "Starting the daemons"),
        Complete => ("complete", "Background work in place"),
    }
}

/// At most this many of each per site, and processes per daemon.
pub const MAX_TASKS: usize = 20;
pub const MAX_PROCESSES: u32 = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Schedule {
    /// Five cron fields (`* * * * *`) or `@hourly`, `@daily`, `@weekly`, `@monthly`.
    pub cron: String,
    pub command: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Daemon {
    pub command: String,
    #[serde(default = "one")]
    pub processes: u32,
}

fn one() -> u32 {
    1
}

/// What a user asks for: the whole wanted set (it replaces the current one).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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

/// The units of a site's daemons (a glob systemctl understands).
pub fn daemon_units(site_id: i64) -> String {
    format!("brokeforge-site-{site_id}-daemon-*")
}

/// Restart the site's daemons in the release that is now live (a deploy or rollback step, as root).
pub fn restart_daemons_command(site_id: i64) -> String {
    // The release is live by now: a daemon that will not restart is reported, not a failed deployment.
    format!(
        "if systemctl restart {}; then echo 'daemons restarted'; else echo 'warning: the daemons did not restart; see the site page' >&2; fi",
        shell_quote(&daemon_units(site_id))
    )
}

/// Stop and remove all of a site's scheduled commands and daemons (before applying a new set, and when the
/// site is removed).
pub fn remove_command(site_id: i64) -> String {
    let units = shell_quote(&daemon_units(site_id));
    format!(
        "systemctl stop {units} 2>/dev/null; \
         rm -f /etc/systemd/system/multi-user.target.wants/brokeforge-site-{site_id}-daemon-* \
         /etc/systemd/system/brokeforge-site-{site_id}-daemon-* /etc/cron.d/brokeforge-site-{site_id} \
         /etc/brokeforge/sites/{site_id}/*.sh; systemctl daemon-reload; systemctl reset-failed {units} 2>/dev/null; true"
    )
}

/// Store the wanted set and queue the job that applies it.
pub async fn set_tasks(
    store: &Store,
    site: &ServerSite,
    tasks: &SiteTasks,
) -> Result<brokeforge_store::Job, PackageError> {
    let tasks = tasks.validated()?;
    super::require_active(site)?;
    SiteConfig::update(store, site.id, |c| c.tasks = tasks.clone()).await?;
    Ok(store
        .enqueue(&brokeforge_store::NewJob::new(
            super::SiteTasksInstallerJob::KIND,
            Some(site.server_id),
            serde_json::json!({"site_id": site.id}),
        ))
        .await?)
}

pub struct SiteTasksInstaller;

impl Package for SiteTasksInstaller {
    type Milestones = SiteTasksInstallerMilestones;
    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        // cron.d and systemd units are root's; what they run, runs as the app user.
        CredentialKind::Root
    }
}

impl PackageInstaller for SiteTasksInstaller {}

impl SiteTasksInstaller {
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        site: &ServerSite,
    ) -> Result<(), PackageError> {
        super::on_server(ctx, site)?;
        let plan = self.commands(site, &SiteConfig::of(site).tasks)?;
        self.install(executor, ctx, plan).await?;
        Ok(())
    }

    /// The newest lines the site's scheduled commands and daemons wrote (from the journal), at most `lines`.
    /// Read live as root and never stored: it is the application's own output.
    pub async fn recent_output(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        site: &ServerSite,
        lines: u32,
    ) -> Result<String, PackageError> {
        super::on_server(ctx, site)?;
        let tasks = SiteConfig::of(site).tasks;
        let mut tags: Vec<String> = (0..tasks.schedules.len())
            .map(|i| format!("brokeforge-site-{}-schedule-{i}", site.id))
            .collect();
        tags.extend(
            (0..tasks.daemons.len()).map(|i| format!("brokeforge-site-{}-daemon-{i}", site.id)),
        );
        if tags.is_empty() {
            return Ok(String::new());
        }
        let command = format!(
            "journalctl --no-pager -q -o short-iso -n {} {}",
            lines.clamp(1, 1000),
            tags.iter()
                .map(|t| format!("-t {t}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        super::read_live(executor, ctx, self.plan(), command).await
    }

    /// Applies the whole set (also the empty one: everything the site had is stopped and removed).
    pub fn commands(&self, site: &ServerSite, tasks: &SiteTasks) -> Result<Plan, PackageError> {
        use SiteTasksInstallerMilestones as M;
        let tasks = tasks.validated()?;
        let q = shell_quote;
        let domain = validate::domain(&site.domain)?;
        let id = site.id;
        let dir = format!("/etc/brokeforge/sites/{id}");
        let current = format!("{APP_HOME}/{domain}/current");
        let cron_file = format!("/etc/cron.d/brokeforge-site-{id}");
        let script = |body: &str| {
            // The command runs as the user typed it, in the live release; the file keeps it away from cron's
            // and systemd's own quoting rules.
            format!(
                "#!/bin/sh\n# Managed by BrokeForge for {domain}.\ncd {} || exit 1\n{body}\n",
                q(&current)
            )
        };
        let mut plan = self.plan().track(M::StopOld).run(format!(
            "{}; install -d -m 755 {}",
            remove_command(id),
            q(&dir)
        ));
        plan = plan.track(M::ConfigureSchedules);
        let mut crontab = format!(
            "# Managed by BrokeForge: scheduled commands of {domain}. Edit them in BrokeForge.\n\
             SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        );
        for (i, s) in tasks.schedules.iter().enumerate() {
            let file = format!("{dir}/schedule-{i}.sh");
            plan = plan.put_file(FileStep::new(
                file.clone(),
                FileContents::Text(script(&s.command)),
                0o755,
            ));
            crontab.push_str(&format!(
                "{} brokeforge {file} 2>&1 | logger -t brokeforge-site-{id}-schedule-{i}\n",
                s.cron
            ));
        }
        if !tasks.schedules.is_empty() {
            plan = plan.put_file(FileStep::new(cron_file, FileContents::Text(crontab), 0o644));
        }
        plan = plan.track(M::StartDaemons);
        let mut units = Vec::new();
        for (i, d) in tasks.daemons.iter().enumerate() {
            let file = format!("{dir}/daemon-{i}.sh");
            let name = format!("brokeforge-site-{id}-daemon-{i}");
            plan = plan
                .put_file(FileStep::new(
                    file.clone(),
                    FileContents::Text(script(&format!("exec /bin/sh -c {}", q(&d.command)))),
                    0o755,
                ))
                .put_file(FileStep::new(
                    format!("/etc/systemd/system/{name}@.service"),
                    FileContents::Text(format!(
                        "# Managed by BrokeForge: a daemon of {domain}. Edit it in BrokeForge.\n\
                         [Unit]\nDescription=BrokeForge daemon {i} of {domain} (process %i)\nAfter=network.target\n\n\
                         [Service]\nUser=brokeforge\nGroup=brokeforge\nExecStart={file}\nRestart=always\nRestartSec=3\n\
                         SyslogIdentifier={name}\n\n[Install]\nWantedBy=multi-user.target\n"
                    )),
                    0o644,
                ));
            for n in 1..=d.processes {
                units.push(format!("{name}@{n}"));
            }
        }
        if !units.is_empty() {
            plan = plan.run(format!(
                "systemctl daemon-reload && systemctl enable --now {} && sleep 1 && systemctl is-active {}",
                units.join(" "),
                units.join(" ")
            ));
        }
        Ok(plan.track(M::Complete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_parse_and_print_back() {
        let t = SiteTasks::parse(
            "# Laravel\n* * * * *   php artisan schedule:run\n@daily  php artisan backup:run --only-db\n",
            "3: php artisan queue:work --tries=3\nphp artisan horizon\n",
        )
        .unwrap();
        assert_eq!(
            t.schedules,
            [
                Schedule {
                    cron: "* * * * *".into(),
                    command: "php artisan schedule:run".into()
                },
                Schedule {
                    cron: "@daily".into(),
                    command: "php artisan backup:run --only-db".into()
                }
            ]
        );
        assert_eq!(t.daemons[0].processes, 3);
        assert_eq!(t.daemons[1].command, "php artisan horizon");
        let (s, d) = t.to_text();
        assert_eq!(SiteTasks::parse(&s, &d).unwrap(), t);
    }

    #[test]
    fn bad_tasks_are_refused() {
        for (s, d) in [
            ("* * * * php artisan x", ""),
            ("* * * * * ", ""),
            ("@yearly php x", ""),
            ("* * * * $(id) php x", ""),
            ("", "0: php artisan queue:work"),
            ("", "99: php artisan queue:work"),
        ] {
            assert!(SiteTasks::parse(s, d).is_err(), "{s:?} {d:?} accepted");
        }
        // A newline smuggled into a command through the API would start another cron line.
        let bad = SiteTasks {
            schedules: vec![Schedule {
                cron: "* * * * *".into(),
                command: "true\n* * * * * root rm -rf /".into(),
            }],
            daemons: vec![],
        };
        assert!(bad.validated().is_err());
    }

    #[test]
    fn plan_snapshot() {
        let site = crate::services::sites::site::tests::site();
        let tasks = SiteTasks::parse(
            "* * * * * php artisan schedule:run",
            "2: php artisan queue:work --sleep=3 'a b'",
        )
        .unwrap();
        insta::assert_snapshot!(
            SiteTasksInstaller
                .commands(&site, &tasks)
                .unwrap()
                .to_string()
        );
    }
}
