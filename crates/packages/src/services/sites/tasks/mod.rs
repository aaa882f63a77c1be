//! A site's background work: scheduled commands (cron, e.g. Laravel's `schedule:run`) and daemons (systemd
//! services kept running, e.g. `queue:work`), each run as the app user in the live release. The site's
//! configuration holds the wanted set; `SiteTasksInstaller` makes the server match it exactly (what is no
//! longer wanted is stopped and removed). Deployments and rollbacks restart the daemons in the new release.

use brokeforge_core::{CredentialKind, ServiceType, shell_quote, validate};
use brokeforge_store::{ServerSite, Store};
use serde_json::json;

use super::common::{
    SiteRef, SiteUser, on_server, read_live, require_active, tasks_remove_command,
};
use super::config::SiteConfig;
use super::schedule::SiteTasks;
use crate::base::executor::{Executor, RunContext, RunReport};
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(SiteTasksInstaller);
}

milestones! {
    pub enum SiteTasksInstallerMilestones {
        StopOld => ("stop_old", "Stopping what is no longer wanted"),
        ConfigureSchedules => ("configure_schedules", "Writing the schedule"),
        StartDaemons => ("start_daemons", "Starting the daemons"),
        Complete => ("complete", "Background work in place"),
    }
}

/// Store the wanted set and queue the job that applies it.
pub async fn set_tasks(
    store: &Store,
    site: &ServerSite,
    tasks: &SiteTasks,
) -> Result<brokeforge_store::Job, PackageError> {
    let tasks = tasks.validated()?;
    require_active(site)?;
    SiteConfig::update(store, site.id, |c| c.tasks = tasks.clone()).await?;
    Ok(store
        .enqueue(&job::<SiteTasksInstaller>(
            site.server_id,
            &SiteRef { site_id: site.id },
        )?)
        .await?)
}

pub struct SiteTasksInstaller;

impl Package for SiteTasksInstaller {
    type Milestones = SiteTasksInstallerMilestones;
    type Request = SiteRef;
    type Input = ServerSite;
    const JOB: &'static str = "site_tasks_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        // cron.d and systemd units are root's; what they run, runs as the app user.
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &SiteRef) -> Result<ServerSite, PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        Ok(site)
    }

    fn commands(&self, site: &ServerSite) -> Result<Plan, PackageError> {
        self.tasks_plan(site, &SiteConfig::of(site).tasks)
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        site: ServerSite,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        let t = SiteConfig::of(&site).tasks;
        Ok(json!({"site_id": site.id, "schedules": t.schedules.len(), "daemons": t.daemons.len()}))
    }
}

impl PackageInstaller for SiteTasksInstaller {}

impl SiteTasksInstaller {
    /// The newest lines the site's scheduled commands and daemons wrote (from the journal), at most `lines`.
    /// Read live as root and never stored: it is the application's own output.
    pub async fn recent_output(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        site: &ServerSite,
        lines: u32,
    ) -> Result<String, PackageError> {
        on_server(ctx.server.id, site)?;
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
        read_live(executor, ctx, self.plan(), command).await
    }

    /// Applies the whole set (also the empty one: everything the site had is stopped and removed).
    pub fn tasks_plan(&self, site: &ServerSite, tasks: &SiteTasks) -> Result<Plan, PackageError> {
        use SiteTasksInstallerMilestones as M;
        let tasks = tasks.validated()?;
        let q = shell_quote;
        let domain = validate::domain(&site.domain)?;
        let id = site.id;
        let dir = format!("/etc/brokeforge/sites/{id}");
        let user = SiteUser::of(site);
        let current = format!("{}/current", user.site_root(&domain));
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
            tasks_remove_command(id),
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
                "{} {} {file} 2>&1 | logger -t brokeforge-site-{id}-schedule-{i}\n",
                s.cron, user.name
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
                         [Service]\nUser={u}\nGroup={u}\nExecStart={file}\nRestart=always\nRestartSec=3\n\
                         SyslogIdentifier={name}\n\n[Install]\nWantedBy=multi-user.target\n",
                        u = user.name
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
    use crate::services::sites::schedule::Schedule;

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
                .tasks_plan(&site, &tasks)
                .unwrap()
                .to_string()
        );
    }
}
