//! Drift through the API (an in-process SSH server stands for the host; the real comparison is proven on a
//! Debian host by the cli e2e story): no report before a check; a check reports the site's vhost missing with
//! the package that repairs it; the plan queues nothing, the repair queues that package; by-hand marks are
//! checked and change the plan; outsiders see nothing. The page shows the same and takes the same marks; a
//! drift alert rule fires on items not managed by hand and resolves when none are left.

use brokeforge_core::CredentialKind;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_planned_and_repaired_by_its_package() {
    for app in apps().await {
        let n = app.name;
        let alice = user(&app, "drift@example.com", false).await;
        let bob = user(&app, "drift-outsider@example.com", false).await;
        let (_ssh, server) =
            server_on_test_ssh(&app, "drift@example.com", "drifty", CredentialKind::Root).await;
        let site = app
            .store
            .create_site(&brokeforge_store::NewSite {
                server_id: server.id,
                domain: "drift.test".into(),
                document_root: "/home/brokeforge/drift.test".into(),
                php_version: None,
                status: brokeforge_core::ServiceStatus::Active,
                configuration: json!({"type": "static"}),
            })
            .await
            .unwrap();
        let base = format!("/servers/{}/drift", server.id);

        let r = alice.call(&app, "GET", &base, None).await;
        assert_eq!(
            (r.status, r.json()["job_id"].clone()),
            (200, Value::Null),
            "{n}: {}",
            r.body
        );
        let r = alice
            .call(
                &app,
                "POST",
                &format!("{base}/repair"),
                Some(json!({"plan": true})),
            )
            .await;
        assert_eq!(r.status, 409, "{n}: no report yet: {}", r.body);
        for who in [&bob] {
            for (m, p, b) in [("GET", base.clone(), None), ("POST", base.clone(), None)] {
                assert_eq!(
                    who.call(&app, m, &p, b).await.status,
                    404,
                    "{n}: outsider {m} {p}"
                );
            }
        }

        let r = alice.call(&app, "POST", &base, None).await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        let job = r.json()["job"]["id"].as_i64().unwrap();
        let done = app
            .store
            .wait_for_job(job, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            done.status,
            brokeforge_store::JobStatus::Done,
            "{n}: {done:?}"
        );
        let report = alice.call(&app, "GET", &base, None).await.json();
        assert_eq!(report["job_id"], job, "{n}");
        let vhost = report["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["item"] == "file:/etc/nginx/sites-available/drift.test.conf")
            .unwrap_or_else(|| panic!("{n}: {report:#}"))
            .clone();
        assert_eq!(vhost["state"], "missing", "{n}");
        assert_eq!(
            vhost["repair"],
            json!({"package": "site_vhost", "site_id": site.id, "domain": "drift.test"}),
            "{n}"
        );
        assert_eq!(
            report["summary"]["missing"], 2,
            "{n}: the vhost and its link: {report:#}"
        );

        // Bad bodies and unknown items change nothing.
        let r = alice
            .call(
                &app,
                "POST",
                &format!("{base}/repair"),
                Some(json!({"plan": true, "x": 1})),
            )
            .await;
        assert_eq!(r.status, 400, "{n}: {}", r.body);
        let r = alice
            .call(
                &app,
                "PUT",
                &format!("{base}/by-hand"),
                Some(json!({"item": "file:/etc/shadow", "by_hand": true})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);

        let r = alice
            .call(
                &app,
                "POST",
                &format!("{base}/repair"),
                Some(json!({"plan": true})),
            )
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let plan = r.json();
        assert_eq!(plan["steps"].as_array().unwrap().len(), 1, "{n}: {plan:#}");
        assert_eq!(
            plan["steps"][0]["items"].as_array().unwrap().len(),
            2,
            "{n}: {plan:#}"
        );
        assert!(plan["steps"][0]["job_id"].is_null(), "{n}");
        let before = app.store.jobs_for_server(server.id).await.unwrap().len();

        // Both items managed by hand: the repair has nothing to queue and says why.
        for item in [
            "file:/etc/nginx/sites-available/drift.test.conf",
            "vhost-enabled:drift.test",
        ] {
            let r = alice
                .call(
                    &app,
                    "PUT",
                    &format!("{base}/by-hand"),
                    Some(json!({"item": item, "by_hand": true})),
                )
                .await;
            assert_eq!(r.status, 200, "{n}: {}", r.body);
        }
        let r = alice
            .call(&app, "POST", &format!("{base}/repair"), Some(json!({})))
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let plan = r.json();
        assert!(
            plan["steps"].as_array().unwrap().is_empty(),
            "{n}: {plan:#}"
        );
        assert_eq!(plan["left"][0]["why"], "managed by hand", "{n}: {plan:#}");
        assert_eq!(
            app.store.jobs_for_server(server.id).await.unwrap().len(),
            before,
            "{n}: nothing queued"
        );

        // Mine again: the repair queues the site's vhost package.
        let r = alice
            .call(
                &app,
                "PUT",
                &format!("{base}/by-hand"),
                Some(json!({"item": "vhost-enabled:drift.test", "by_hand": false})),
            )
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let r = alice
            .call(&app, "POST", &format!("{base}/repair"), Some(json!({})))
            .await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        let plan = r.json();
        let queued = plan["steps"][0]["job_id"].as_i64().unwrap();
        assert_eq!(
            app.store.job(queued).await.unwrap().kind,
            "site_vhost_installer",
            "{n}"
        );
        assert_eq!(
            plan["steps"][0]["items"],
            json!(["vhost-enabled:drift.test"]),
            "{n}: {plan:#}"
        );
        // The page: the report's drifted items, the repair plan before anything is queued, by-hand marks.
        let session = session_of(&login(&app, "drift@example.com", "correct horse battery").await);
        let Auth::Session { cookie, csrf } = session else {
            unreachable!()
        };
        let page = |cookie: String| {
            let (addr, base) = (app.addr.clone(), base.clone());
            async move { http(&addr, "GET", &base, &[("Cookie", &cookie)], "").await }
        };
        let p = page(cookie.clone()).await;
        assert_eq!(p.status, 200, "{n}: {}", p.body);
        assert!(
            p.body.contains("data-item=\"vhost-enabled:drift.test\"")
                && p.body.contains("Write the vhost of drift.test again")
                && p.body.contains("By hand: yes")
                && p.body.contains(&format!("action=\"{base}/repair\"")),
            "{n}: {}",
            p.body
        );
        let r = form(
            &app,
            &format!("{base}/by-hand"),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("item", "file:/etc/passwd"),
                ("by_hand", "1"),
            ],
        )
        .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert!(r.body.contains("has no item"), "{n}: {}", r.body);
        let r = form(
            &app,
            &format!("{base}/by-hand"),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("item", "vhost-enabled:drift.test"),
                ("by_hand", "1"),
            ],
        )
        .await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        assert_eq!(
            app.store.drift_by_hand(server.id).await.unwrap(),
            vec![
                "file:/etc/nginx/sites-available/drift.test.conf".to_string(),
                "vhost-enabled:drift.test".to_string()
            ],
            "{n}"
        );
        let p = page(cookie.clone()).await;
        assert!(
            !p.body.contains(&format!("action=\"{base}/repair\""))
                && p.body.contains("managed by hand"),
            "{n}: nothing to repair, both left alone: {}",
            p.body
        );
        let before = app.store.jobs_for_server(server.id).await.unwrap().len();
        let r = form(
            &app,
            &format!("{base}/repair"),
            &cookie,
            &[("_csrf", &csrf)],
        )
        .await;
        assert!(
            r.status == 200 && r.body.contains("Nothing to repair"),
            "{n}: {}",
            r.body
        );
        assert_eq!(
            app.store.jobs_for_server(server.id).await.unwrap().len(),
            before,
            "{n}: nothing queued"
        );

        // A drift alert rule: quiet while every drifted item is managed by hand, fires naming the item once
        // one is not, resolves when it is marked again.
        let alerts = format!("/servers/{}/alerts", server.id);
        let r = alice
            .call(
                &app,
                "POST",
                &alerts,
                Some(json!({"kind": "drift", "above": 1})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = alice
            .call(&app, "POST", &alerts, Some(json!({"kind": "drift"})))
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        let domain = brokeforge_domain::Domain::new(app.store.clone());
        let rule =
            || async { alice.call(&app, "GET", &alerts, None).await.json()["alerts"][0].clone() };
        domain.evaluate_alerts().await.unwrap();
        assert_eq!(rule().await["state"], "ok", "{n}");
        let (app_ref, alice_ref, server_id) = (&app, &alice, server.id);
        let mark = |on: bool| async move {
            let r = alice_ref
                .call(
                    app_ref,
                    "PUT",
                    &format!("/servers/{server_id}/drift/by-hand"),
                    Some(json!({"item": "vhost-enabled:drift.test", "by_hand": on})),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
        };
        mark(false).await;
        domain.evaluate_alerts().await.unwrap();
        let s = rule().await;
        assert_eq!(s["state"], "firing", "{n}: {s}");
        assert!(
            s["detail"]
                .as_str()
                .unwrap()
                .contains("1 drifted: vhost-enabled:drift.test missing"),
            "{n}: {s}"
        );
        mark(true).await;
        domain.evaluate_alerts().await.unwrap();
        assert_eq!(rule().await["state"], "resolved", "{n}");

        // Check now: queues a check and goes to its job.
        let r = form(&app, &format!("{base}/check"), &cookie, &[("_csrf", &csrf)]).await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        let to = r.header("location").unwrap_or_default().to_string();
        let job: i64 = to
            .trim_start_matches("/jobs/")
            .parse()
            .unwrap_or_else(|_| panic!("{n}: {to}"));
        assert_eq!(app.store.job(job).await.unwrap().kind, "drift_check", "{n}");
        app.store
            .wait_for_job(job, Duration::from_secs(60))
            .await
            .unwrap();
    }
}

/// The daily schedule: only provisioned servers older than the period and without a check in it are queued
/// (at most the batch), and a check in the period keeps a server out.
#[tokio::test]
async fn the_schedule_checks_provisioned_servers_without_a_recent_check() {
    for app in apps().await {
        let n = app.name;
        user(&app, "drift-schedule@example.com", false).await;
        let u = app
            .store
            .user_by_email("drift-schedule@example.com")
            .await
            .unwrap()
            .unwrap();
        let mut ids = Vec::new();
        for (i, name) in ["ready", "also-ready", "new"].iter().enumerate() {
            let s = app
                .store
                .create_server(&brokeforge_store::NewServer {
                    user_id: u.id,
                    name: (*name).into(),
                    public_ip: format!("203.0.113.{}", 60 + i),
                    ssh_port: 22,
                    host_key_fingerprint: None,
                })
                .await
                .unwrap();
            ids.push(s.id);
        }
        for id in &ids[..2] {
            app.store
                .set_provision_status(*id, brokeforge_core::ProvisionStatus::Provisioned)
                .await
                .unwrap();
        }
        let newest = app.store.server(ids[2]).await.unwrap().created_at;
        // "Older than the period" is strict: wait for the clock to pass the servers' creation.
        while brokeforge_core::time::now_ms() <= newest {
            tokio::task::yield_now().await;
        }
        let domain = brokeforge_domain::Domain::new(app.store.clone());
        // A batch of one: the first provisioned server only; the pending one never.
        assert_eq!(domain.queue_due_drift_checks(0, 1).await.unwrap(), 1, "{n}");
        let kinds = |id: i64| {
            let store = app.store.clone();
            async move {
                store
                    .jobs_for_server(id)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|j| j.kind == "drift_check")
                    .collect::<Vec<_>>()
            }
        };
        let first = kinds(ids[0]).await;
        assert_eq!(first.len(), 1, "{n}");
        assert!(kinds(ids[1]).await.is_empty(), "{n}: past the batch");
        assert!(kinds(ids[2]).await.is_empty(), "{n}: not provisioned");
        // A check inside the period keeps the server out; one before it does not.
        let at = first[0].created_at;
        let due = |since: i64| {
            let store = app.store.clone();
            async move {
                store
                    .servers_without_recent_job("drift_check", since, 100)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(due(at).await, vec![ids[1]], "{n}");
        assert_eq!(due(at + 1).await, vec![ids[0], ids[1]], "{n}");
        // A server created inside the period waits for the next one.
        app.store
            .set_provision_status(ids[2], brokeforge_core::ProvisionStatus::Provisioned)
            .await
            .unwrap();
        assert!(!due(newest).await.contains(&ids[2]), "{n}");
        assert!(due(newest + 1).await.contains(&ids[2]), "{n}");
    }
}
