//! Monitoring: a collector's reports are accepted only with its own token; metrics are read back; channels
//! and alert rules refuse bad input; a rule fires once, signed, to a real local HTTP receiver, stays quiet
//! while it keeps firing, and sends "resolved" once; a failed delivery is retried and logged.

use super::receiver::{next, receiver, signed_by};
use super::*;

/// ops@example.com with a server "web" at `ip`: (the owner, the server's id, its team's id).
async fn owner_with_server(app: &App, ip: &str) -> (Auth, i64, i64) {
    let owner = user(app, "ops@example.com", false).await;
    let made = owner
        .call(
            app,
            "POST",
            "/servers",
            Some(json!({"name": "web", "public_ip": ip})),
        )
        .await;
    assert_eq!(made.status, 201, "{}: {}", app.name, made.body);
    let server = &made.json()["server"];
    (
        owner,
        server["id"].as_i64().unwrap(),
        server["team_id"].as_i64().unwrap(),
    )
}

async fn ingest(app: &App, token: &str, body: &str) -> Resp {
    http(
        &app.addr,
        "POST",
        "/ingest/metrics",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "text/plain"),
        ],
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_channels_and_alerts() {
    for app in apps_with(WebConfig {
        insecure_provisioning: true,
        allow_http_channels: true,
        ..WebConfig::default()
    })
    .await
    {
        let n = app.name;
        let (owner, server, team) = owner_with_server(&app, "203.0.113.30").await;

        // Reports: only with the server's own token.
        let r = http(&app.addr, "POST", "/ingest/metrics", &[], "load1 1").await;
        assert_eq!(r.status, 401, "{n}: {}", r.body);
        let token = "bfm_0123456789abcdef0123456789abcdef";
        assert_eq!(ingest(&app, token, "load1 1").await.status, 401);
        app.store
            .put_monitoring_agent(server, token, 10)
            .await
            .unwrap();
        assert_eq!(ingest(&app, "bfm_other", "load1 1").await.status, 401);
        let r = ingest(&app, token, "nothing useful").await;
        assert_eq!(r.status, 400, "{n}: {}", r.body);
        let r = ingest(
            &app,
            token,
            "disk_used_percent 42.5\ndisk_used_percent:/ 42.5\nload1 0.25\nservice_up:nginx 1\n$(reboot) 1\n",
        )
        .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(
            (r.json()["accepted"].as_i64(), r.json()["skipped"].as_i64()),
            (Some(4), Some(1))
        );
        // Reports change no setting: they are not in the audit log.
        let audit = app
            .store
            .audit_page(&brokeforge_store::AuditFilter {
                action: Some("ingest".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(audit.is_empty(), "{n}: {audit:?}");
        let m = owner
            .call(
                &app,
                "GET",
                &format!("/servers/{server}/metrics?metrics=disk_used_percent&since=1h"),
                None,
            )
            .await;
        assert_eq!(m.status, 200, "{n}: {}", m.body);
        let m = m.json();
        assert_eq!(m["installed"], true);
        let disk = m["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["metric"] == "disk_used_percent:/")
            .unwrap();
        assert_eq!(disk["value"], 42.5);
        assert_eq!(m["series"][0]["points"].as_array().unwrap().len(), 1);
        let r = owner
            .call(
                &app,
                "GET",
                &format!("/servers/{server}/metrics?metrics=a%20b"),
                None,
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);

        // Channels: bad input changes nothing.
        let channels = format!("/teams/{team}/channels");
        for bad in [
            json!({"name": "x", "kind": "pager", "url": "https://example.com"}),
            json!({"name": "x", "kind": "webhook", "url": "ftp://example.com/x"}),
            json!({"name": "x", "kind": "webhook", "url": "https://user:pw@example.com/x"}),
            json!({"name": "x", "kind": "webhook", "url": "https://example.com/x", "secret": "short"}),
            json!({"name": "Bad Name", "kind": "slack", "url": "https://hooks.slack.com/services/x"}),
            json!({"name": "x", "kind": "telegram", "secret": "123:abc"}),
        ] {
            let r = owner.call(&app, "POST", &channels, Some(bad.clone())).await;
            assert_eq!(r.status, 422, "{n}: {bad} {}", r.body);
        }
        let (url, mut rx) = receiver(1).await;
        let r = owner
            .call(
                &app,
                "POST",
                &channels,
                Some(json!({"name": "hook", "kind": "webhook", "url": url})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        let key = r.json()["signing_secret"].as_str().unwrap().to_string();
        // The list shows where it sends, never the URL's path or the key.
        let list = owner.call(&app, "GET", &channels, None).await;
        assert!(
            !list.body.contains("/hook") && !list.body.contains(&key),
            "{}",
            list.body
        );
        let r = owner
            .call(
                &app,
                "POST",
                &channels,
                Some(json!({"name": "hook", "kind": "webhook", "url": url})),
            )
            .await;
        assert_eq!(r.status, 409, "{n}: {}", r.body);

        // A test message: the receiver fails the first attempt, the retry is delivered and logged.
        let r = owner
            .call(&app, "POST", &format!("{channels}/hook/test"), None)
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(r.json()["delivery"]["status"], "sent", "{}", r.body);
        assert_eq!(r.json()["delivery"]["attempts"], 2, "{}", r.body);
        let first = next(&mut rx).await;
        let second = next(&mut rx).await;
        assert!(signed_by(&first, &key) && signed_by(&second, &key));
        assert_eq!(second.header("x-brokeforge-event"), Some("test"));

        // Rules: bad input refused.
        let alerts = format!("/servers/{server}/alerts");
        for bad in [
            json!({"metric": "disk_used_percent"}),
            json!({"metric": "disk_used_percent", "above": 1, "below": 2}),
            json!({"metric": "disk used", "above": 1}),
            json!({"metric": "load1", "above": 1, "for": "5 parsecs"}),
            json!({"metric": "load1", "above": 1, "channel": "nope"}),
            json!({"kind": "service_down", "metric": "load1"}),
            json!({"kind": "sometimes"}),
        ] {
            let r = owner.call(&app, "POST", &alerts, Some(bad.clone())).await;
            assert_eq!(r.status, 422, "{n}: {bad} {}", r.body);
        }
        let r = owner
            .call(
                &app,
                "POST",
                &alerts,
                Some(json!({"metric": "disk_used_percent", "above": 40, "channel": "hook"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        let rule = r.json()["alert"]["id"].as_i64().unwrap();

        // The evaluator: fires once, signed; stays quiet while firing; resolves once.
        let mut domain = brokeforge_domain::Domain::new(app.store.clone());
        domain.allow_http_channels = true;
        assert_eq!(domain.evaluate_alerts().await.unwrap(), 1, "{n}");
        let fired = next(&mut rx).await;
        assert!(signed_by(&fired, &key), "{n}");
        let body: Value = serde_json::from_str(&fired.body).unwrap();
        assert_eq!(body["event"], "firing");
        assert_eq!(body["rule_id"], rule);
        assert_eq!(body["server"]["name"], "web");
        assert_eq!(
            domain.evaluate_alerts().await.unwrap(),
            0,
            "{n}: notified twice"
        );
        let state = owner.call(&app, "GET", &alerts, None).await.json();
        assert_eq!(state["alerts"][0]["state"], "firing", "{state}");
        assert_eq!(state["alerts"][0]["channel"], "hook", "{state}");
        assert_eq!(
            ingest(&app, token, "disk_used_percent 10").await.status,
            200
        );
        assert_eq!(domain.evaluate_alerts().await.unwrap(), 1, "{n}");
        let resolved = next(&mut rx).await;
        assert!(signed_by(&resolved, &key));
        assert_eq!(resolved.header("x-brokeforge-event"), Some("resolved"));
        assert_eq!(domain.evaluate_alerts().await.unwrap(), 0, "{n}");
        let state = owner.call(&app, "GET", &alerts, None).await.json();
        assert_eq!(state["alerts"][0]["state"], "resolved", "{state}");
        // Changing the rule keeps its state: a lowered threshold fires, a raised one resolves.
        let rule_path = format!("{alerts}/{rule}");
        let r = owner
            .call(
                &app,
                "PUT",
                &rule_path,
                Some(json!({"metric": "disk_used_percent", "above": 1, "below": 2})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = owner
            .call(
                &app,
                "PUT",
                &format!("{alerts}/{}", rule + 1000),
                Some(json!({"metric": "load1", "above": 1})),
            )
            .await;
        assert_eq!(r.status, 404, "{n}: {}", r.body);
        let set = |above: f64| {
            let (owner, path, app) = (owner.clone(), rule_path.clone(), &app);
            async move {
                owner
                    .call(app, "PUT", &path, Some(json!({"metric": "disk_used_percent", "above": above, "channel": "hook"})))
                    .await
            }
        };
        let r = set(5.0).await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(r.json()["alert"]["state"], "resolved");
        assert_eq!(domain.evaluate_alerts().await.unwrap(), 1, "{n}");
        assert_eq!(
            next(&mut rx).await.header("x-brokeforge-event"),
            Some("firing")
        );
        assert_eq!(set(50.0).await.status, 200);
        assert_eq!(domain.evaluate_alerts().await.unwrap(), 1, "{n}");
        assert_eq!(
            next(&mut rx).await.header("x-brokeforge-event"),
            Some("resolved")
        );

        // Removing the channel leaves the rule (it then notifies all the team's channels: none).
        let r = owner
            .call(&app, "DELETE", &format!("{channels}/hook"), None)
            .await;
        assert_eq!(r.status, 204, "{n}: {}", r.body);
        let r = owner
            .call(&app, "DELETE", &format!("{alerts}/{rule}"), None)
            .await;
        assert_eq!(r.status, 204, "{n}: {}", r.body);
        let r = owner
            .call(&app, "DELETE", &format!("{alerts}/{rule}"), None)
            .await;
        assert_eq!(r.status, 404, "{n}: {}", r.body);
        // A revoked collector is refused.
        app.store.delete_monitoring_agent(server).await.unwrap();
        assert_eq!(ingest(&app, token, "load1 1").await.status, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_post_over_https_only_unless_the_operator_allows_http() {
    for app in apps().await {
        let owner = user(&app, "ops@example.com", false).await;
        let teams = owner.call(&app, "GET", "/teams", None).await.json();
        let team = teams["teams"][0]["id"].as_i64().unwrap();
        let r = owner
            .call(
                &app,
                "POST",
                &format!("/teams/{team}/channels"),
                Some(json!({"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/hook"})),
            )
            .await;
        assert_eq!(r.status, 422, "{}: {}", app.name, r.body);
        assert!(r.body.contains("https"), "{}", r.body);
        assert!(
            owner
                .call(&app, "GET", &format!("/teams/{team}/channels"), None)
                .await
                .json()["channels"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
}

/// Email notifications through a real SMTP server (aiosmtpd from Debian, `scripts/test-smtp.sh`): a test
/// message and an alert arrive in its Maildir with their subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_smtp),
    ignore = "needs an SMTP sink: eval \"$(scripts/test-smtp.sh)\" (as root)"
)]
async fn email_channels_send_through_the_mail_relay() {
    let (Ok(relay), Ok(maildir)) = (
        std::env::var("BROKEFORGE_TEST_SMTP"),
        std::env::var("BROKEFORGE_TEST_SMTP_MAILDIR"),
    ) else {
        brokeforge_store::testing::backend_missing("BROKEFORGE_TEST_SMTP");
        return;
    };
    // Without a relay, email channels are refused with the reason.
    for app in apps().await {
        let owner = user(&app, "ops@example.com", false).await;
        let team = owner.call(&app, "GET", "/teams", None).await.json()["teams"][0]["id"]
            .as_i64()
            .unwrap();
        let r = owner
            .call(
                &app,
                "POST",
                &format!("/teams/{team}/channels"),
                Some(json!({"name": "mail", "kind": "email", "url": "ops@example.com"})),
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.body.contains("BROKEFORGE_SMTP_URL"), "{}", r.body);
    }
    let smtp = std::sync::Arc::new(
        brokeforge_domain::monitoring::Smtp::new(
            &format!("smtp://{relay}"),
            "BrokeForge <alerts@example.com>",
        )
        .unwrap(),
    );
    for app in apps_with(WebConfig {
        insecure_provisioning: true,
        smtp: Some(smtp.clone()),
        ..WebConfig::default()
    })
    .await
    {
        let n = app.name;
        let owner = user(&app, "ops@example.com", false).await;
        let team = owner.call(&app, "GET", "/teams", None).await.json()["teams"][0]["id"]
            .as_i64()
            .unwrap();
        let channels = format!("/teams/{team}/channels");
        let r = owner
            .call(
                &app,
                "POST",
                &channels,
                Some(json!({"name": "mail", "kind": "email", "url": "not an address"})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        // A recipient unique to this run, to find its messages among others'.
        let to = format!("ops-{}-{}@example.com", n, brokeforge_core::time::now_ms());
        let r = owner
            .call(
                &app,
                "POST",
                &channels,
                Some(json!({"name": "mail", "kind": "email", "url": to})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        assert_eq!(r.json()["channel"]["target"], to.as_str());
        let r = owner
            .call(&app, "POST", &format!("{channels}/mail/test"), None)
            .await;
        assert_eq!(r.json()["delivery"]["status"], "sent", "{n}: {}", r.body);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let message = loop {
            let found = ["new", "cur"].iter().find_map(|sub| {
                std::fs::read_dir(std::path::Path::new(&maildir).join(sub))
                    .ok()?
                    .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .find(|m| m.contains(&to))
            });
            if let Some(m) = found {
                break m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n}: no message for {to} in {maildir}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            message.contains("Subject: [BrokeForge] Test message"),
            "{message}"
        );
        assert!(message.contains("alerts@example.com"), "{message}");

        // With the relay, an invitation's link goes to the invited address too.
        let r = owner
            .call(&app, "POST", "/teams", Some(json!({"name": "agency"})))
            .await;
        let agency = r.json()["team"]["id"].as_i64().unwrap();
        let invited = format!("dev-{}-{}@example.com", n, brokeforge_core::time::now_ms());
        let r = owner
            .call(
                &app,
                "POST",
                &format!("/teams/{agency}/invitations"),
                Some(json!({"email": invited, "role": "developer"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        assert_eq!(r.json()["emailed"], true, "{n}: {}", r.body);
        let path = r.json()["path"].as_str().unwrap().to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mail = loop {
            let found = ["new", "cur"].iter().find_map(|sub| {
                std::fs::read_dir(std::path::Path::new(&maildir).join(sub))
                    .ok()?
                    .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .find(|m| m.contains(&invited))
            });
            if let Some(m) = found {
                break m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n}: no invitation for {invited} in {maildir}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The body is quoted-printable: soft line breaks end in `=`.
        let text = mail.replace("=\r\n", "").replace("=\n", "");
        assert!(
            text.contains(&format!("http://{}{path}", app.addr)) && text.contains("agency"),
            "{n}: {mail}"
        );
    }
}

/// The monitoring page: charts drawn from the reports, rules and channels added through its forms, bad input
/// shown with its message and stored nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitoring_page_draws_reports_and_takes_rules() {
    for app in apps().await {
        let n = app.name;
        let (owner, server, _) = owner_with_server(&app, "203.0.113.31").await;
        let page = format!("/servers/{server}/monitoring");
        let Auth::Session { cookie, csrf } =
            session_of(&login(&app, "ops@example.com", "correct horse battery").await)
        else {
            unreachable!()
        };
        let get = |path: String| {
            let (addr, cookie) = (app.addr.clone(), cookie.clone());
            async move { http(&addr, "GET", &path, &[("Cookie", &cookie)], "").await }
        };
        // Not installed yet: the page offers the install.
        let r = get(page.clone()).await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert!(r.body.contains("Install monitoring"), "{n}");
        // Reports over the last minutes: a line per chart, the newest value, the services.
        let token = "bfm_page_test_token_0123456789abcdef";
        app.store
            .put_monitoring_agent(server, token, 10)
            .await
            .unwrap();
        for v in ["20", "40"] {
            let r = ingest(&app, token, &format!("cpu_percent {v}\nmemory_used_percent 50\ndisk_used_percent 61.5\nservice_up:nginx 1\nservice_up:mariadb 0")).await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
        let r = get(page.clone()).await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert!(r.body.contains("<svg class=\"chart\""), "{n}");
        assert!(r.body.contains("61.5 %"), "{n}: the newest disk value");
        assert!(
            r.body.contains("mariadb down") && r.body.contains("nginx up"),
            "{n}"
        );
        assert!(
            r.body.contains("no reports in this range"),
            "{n}: network charts have none yet"
        );
        assert_eq!(get(format!("{page}?range=30d")).await.status, 200);
        // The dashboard: the server's CPU line, newest figures, ok; then a firing rule shows.
        let r = get("/".into()).await;
        assert!(r.body.contains("<svg class=\"spark\""), "{n}: {}", r.body);
        assert!(
            r.body.contains("CPU 40 % · memory 50 %")
                && r.body
                    .contains("aria-label=\"CPU over the last hour, now 40 %\""),
            "{n}: {}",
            r.body
        );
        assert!(r.body.contains("<span class=\"badge ok\">ok</span>"), "{n}");
        let alerts = format!("/servers/{server}/alerts");
        let rule = owner
            .call(
                &app,
                "POST",
                &alerts,
                Some(json!({"metric": "memory_used_percent", "above": 10})),
            )
            .await
            .json()["alert"]["id"]
            .as_i64()
            .unwrap();
        brokeforge_domain::Domain::new(app.store.clone())
            .evaluate_alerts()
            .await
            .unwrap();
        let r = get("/".into()).await;
        assert!(
            r.body
                .contains("<span class=\"badge firing\">1 alert firing</span>"),
            "{n}: {}",
            r.body
        );
        let gone = owner
            .call(&app, "DELETE", &format!("{alerts}/{rule}"), None)
            .await;
        assert_eq!(gone.status, 204, "{n}: {}", gone.body);
        // Forms: a bad value changes nothing; a good rule and channel appear.
        let r = form(
            &app,
            &format!("{page}/alerts"),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("kind", "metric"),
                ("metric", "disk_used_percent"),
                ("comparison", "above"),
                ("value", "lots"),
            ],
        )
        .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert!(
            owner
                .call(&app, "GET", &format!("/servers/{server}/alerts"), None)
                .await
                .json()["alerts"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let r = form(
            &app,
            &format!("{page}/channels"),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("name", "hook"),
                ("kind", "webhook"),
                ("url", "https://hooks.example.com/x"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert!(r.body.contains("shown once"), "{n}: the signing key");
        let r = form(
            &app,
            &format!("{page}/alerts"),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("kind", "metric"),
                ("metric", "disk_used_percent"),
                ("comparison", "above"),
                ("value", "90"),
                ("for", "5m"),
                ("channel", "hook"),
            ],
        )
        .await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        let r = get(page.clone()).await;
        assert!(
            r.body.contains("disk_used_percent above 90 for 300 s"),
            "{n}: {}",
            r.body
        );
        assert!(r.body.contains("id=\"channel-hook\""), "{n}");
        // Another user's server is not found.
        let other = user(&app, "other@example.com", false).await;
        let theirs = other
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "x", "public_ip": "203.0.113.32"})),
            )
            .await;
        let theirs = theirs.json()["server"]["id"].as_i64().unwrap();
        assert_eq!(
            get(format!("/servers/{theirs}/monitoring")).await.status,
            404,
            "{n}"
        );
    }
}

/// Site checks: bad settings are refused; a check comes with its rule; a site that does not answer (nothing
/// listens on the server's port 80 here) is failing, recorded as samples, and fires the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_checks_are_validated_recorded_and_alert() {
    for app in apps().await {
        let n = app.name;
        let (owner, server, _) = owner_with_server(&app, "127.0.0.1").await;
        let site = app
            .store
            .create_site(&brokeforge_store::NewSite {
                server_id: server,
                domain: "shop.example.com".into(),
                document_root: "/home/brokeforge/shop.example.com".into(),
                php_version: Some("8.2".into()),
                status: brokeforge_core::ServiceStatus::Active,
                configuration: json!({}),
            })
            .await
            .unwrap();
        let path = format!("/sites/{}/check", site.id);
        assert_eq!(owner.call(&app, "GET", &path, None).await.status, 404);
        for bad in [
            json!({"path": "health"}),
            json!({"path": "/a b"}),
            json!({"path": "/'$(reboot)'"}),
            json!({"expect": 42}),
            json!({"interval_seconds": 5}),
            json!({"interval_seconds": 10, "timeout_seconds": 10}),
        ] {
            let r = owner.call(&app, "PUT", &path, Some(bad.clone())).await;
            assert_eq!(r.status, 422, "{n}: {bad} {}", r.body);
        }
        let r = owner
            .call(&app, "PUT", &path, Some(json!({"when": "always"})))
            .await;
        assert_eq!(r.status, 400, "{n}: {}", r.body);
        let r = owner
            .call(
                &app,
                "PUT",
                &path,
                Some(json!({"path": "/health", "interval_seconds": 10, "timeout_seconds": 2})),
            )
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(r.json()["check"]["state"], "unknown");
        let rules = owner
            .call(&app, "GET", &format!("/servers/{server}/alerts"), None)
            .await
            .json();
        let rule = rules["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"] == "http_up:shop.example.com")
            .cloned();
        let rule = rule.unwrap_or_else(|| panic!("{n}: no rule came with the check: {rules}"));
        assert_eq!(rule["comparison"], "below");

        let domain = brokeforge_domain::Domain::new(app.store.clone());
        assert_eq!(domain.run_due_checks().await.unwrap(), 1, "{n}");
        // Claimed: not due again until its interval passed.
        assert_eq!(domain.run_due_checks().await.unwrap(), 0, "{n}");
        let r = owner.call(&app, "GET", &path, None).await;
        let check = &r.json()["check"];
        assert_eq!(check["state"], "failing", "{n}: {}", r.body);
        assert!(
            check["last_error"].as_str().unwrap().contains("connection"),
            "{n}: {}",
            r.body
        );
        assert_eq!(
            r.json()["history"][0]["points"][0]["value"],
            0.0,
            "{n}: {}",
            r.body
        );
        domain.evaluate_alerts().await.unwrap();
        let rules = owner
            .call(&app, "GET", &format!("/servers/{server}/alerts"), None)
            .await
            .json();
        let fired = rules["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == rule["id"])
            .unwrap()
            .clone();
        assert_eq!(fired["state"], "firing", "{n}: {fired}");

        // After deploys: only off, fail or rollback; shown and changed on the site's page too.
        let r = owner
            .call(
                &app,
                "PUT",
                &path,
                Some(json!({"after_deploy": "sometimes"})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = owner
            .call(
                &app,
                "PUT",
                &path,
                Some(json!({"path": "/health", "after_deploy": "rollback"})),
            )
            .await;
        assert_eq!(
            r.json()["check"]["after_deploy"],
            "rollback",
            "{n}: {}",
            r.body
        );
        let Auth::Session { cookie, csrf } =
            session_of(&login(&app, "ops@example.com", "correct horse battery").await)
        else {
            unreachable!()
        };
        let page = format!("/sites/{}/health", site.id);
        let r = http(&app.addr, "GET", &page, &[("Cookie", &cookie)], "").await;
        assert!(
            r.body.contains("<h2>Health check</h2>")
                && r.body.contains("<option value=\"rollback\" selected>"),
            "{n}: {}",
            r.body
        );
        let r = form(
            &app,
            &format!("/sites/{}/check", site.id),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("path", "/up"),
                ("interval_seconds", "often"),
            ],
        )
        .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert_eq!(
            owner.call(&app, "GET", &path, None).await.json()["check"]["path"],
            "/health",
            "{n}: a bad form changed the check"
        );
        let r = form(
            &app,
            &format!("/sites/{}/check", site.id),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("path", "/up"),
                ("interval_seconds", "30"),
                ("after_deploy", "fail"),
            ],
        )
        .await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        let c = owner.call(&app, "GET", &path, None).await.json();
        assert_eq!(
            (&c["check"]["path"], &c["check"]["after_deploy"]),
            (&json!("/up"), &json!("fail")),
            "{n}: {c}"
        );

        let r = owner.call(&app, "DELETE", &path, None).await;
        assert_eq!(r.status, 204, "{n}: {}", r.body);
        let rules = owner
            .call(&app, "GET", &format!("/servers/{server}/alerts"), None)
            .await
            .json();
        assert!(
            rules["alerts"].as_array().unwrap().is_empty(),
            "{n}: the check's rule stayed: {rules}"
        );
    }
}

/// A job_failed rule: the newest finished job decides; a failure fires (with the job and its error), a
/// later success resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_fire_and_a_success_resolves() {
    for app in apps().await {
        let n = app.name;
        let (owner, server, _) = owner_with_server(&app, "203.0.113.40").await;
        let alerts = format!("/servers/{server}/alerts");
        let r = owner
            .call(
                &app,
                "POST",
                &alerts,
                Some(json!({"kind": "job_failed", "above": 1})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = owner
            .call(&app, "POST", &alerts, Some(json!({"kind": "job_failed"})))
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        let domain = brokeforge_domain::Domain::new(app.store.clone());
        let run = |kind: &'static str| {
            let store = app.store.clone();
            async move {
                let job = store
                    .enqueue(&NewJob::new(kind, Some(server), json!({})))
                    .await
                    .unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                loop {
                    let j = store.job(job.id).await.unwrap();
                    if matches!(j.status, JobStatus::Done | JobStatus::Failed) {
                        return j;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "job {kind} did not finish"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let state =
            || async { owner.call(&app, "GET", &alerts, None).await.json()["alerts"][0].clone() };
        domain.evaluate_alerts().await.unwrap();
        assert_eq!(state().await["state"], "ok", "{n}: no job yet");
        let failed = run("no_such_job_kind").await;
        assert_eq!(failed.status, JobStatus::Failed, "{n}");
        domain.evaluate_alerts().await.unwrap();
        let s = state().await;
        assert_eq!(s["state"], "firing", "{n}: {s}");
        assert!(
            s["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("job {}", failed.id)),
            "{n}: {s}"
        );
        let done = run(brokeforge_packages::services::NoopJob::KIND).await;
        assert_eq!(done.status, JobStatus::Done, "{n}");
        domain.evaluate_alerts().await.unwrap();
        assert_eq!(state().await["state"], "resolved", "{n}");
    }
}

/// A cert_expiring rule: checked as given; fires on the soonest expiry among the sites' readings (naming the
/// site) and resolves when the certificate is renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_certificates_fire_and_renewals_resolve() {
    for app in apps().await {
        let n = app.name;
        let (owner, server, _) = owner_with_server(&app, "203.0.113.41").await;
        let alerts = format!("/servers/{server}/alerts");
        for bad in [
            json!({"kind": "cert_expiring", "days": 0}),
            json!({"kind": "cert_expiring", "metric": "load1"}),
            json!({"kind": "metric", "metric": "load1", "above": 1, "days": 3}),
            json!({"kind": "service_down", "days": 3}),
        ] {
            let r = owner.call(&app, "POST", &alerts, Some(bad.clone())).await;
            assert_eq!(r.status, 422, "{n}: {bad} {}", r.body);
        }
        let r = owner
            .call(
                &app,
                "POST",
                &alerts,
                Some(json!({"kind": "cert_expiring"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        assert!(
            r.json()["alert"]["description"]
                .as_str()
                .unwrap()
                .contains("within 14 days"),
            "{n}: {}",
            r.body
        );
        let domain = brokeforge_domain::Domain::new(app.store.clone());
        let state =
            || async { owner.call(&app, "GET", &alerts, None).await.json()["alerts"][0].clone() };
        domain.evaluate_alerts().await.unwrap();
        assert_eq!(state().await["state"], "ok", "{n}: no reading yet");
        let now = brokeforge_core::time::now_ms();
        app.store
            .put_samples(
                server,
                now,
                &[
                    ("cert_days:a.test".into(), 30.0),
                    ("cert_days:b.test".into(), 3.5),
                ],
            )
            .await
            .unwrap();
        domain.evaluate_alerts().await.unwrap();
        let s = state().await;
        assert_eq!(s["state"], "firing", "{n}: {s}");
        assert_eq!(s["detail"], "b.test expires in 3.5 days", "{n}: {s}");
        app.store
            .put_samples(server, now + 1, &[("cert_days:b.test".into(), 89.0)])
            .await
            .unwrap();
        domain.evaluate_alerts().await.unwrap();
        assert_eq!(state().await["state"], "resolved", "{n}");
    }
}

/// Slack, Discord and Telegram channels post what each service expects (a local HTTP server stands in for
/// each: a Slack or Discord incoming webhook, Telegram's Bot API at `BROKEFORGE_TELEGRAM_API`); the bot token
/// goes only into Telegram's URL path, never into the body or the channel's shown target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_channels_post_what_each_service_expects() {
    let (url, mut rx) = receiver(0).await;
    let api = url.trim_end_matches("/hook").to_string();
    for app in apps_with(WebConfig {
        insecure_provisioning: true,
        allow_http_channels: true,
        telegram_api: Some(api.clone()),
        ..WebConfig::default()
    })
    .await
    {
        let n = app.name;
        let (owner, _, team) = owner_with_server(&app, "203.0.113.42").await;
        let channels = format!("/teams/{team}/channels");
        let token = "123456:AAbbCC_dd-ee";
        for spec in [
            json!({"name": "sl", "kind": "slack", "url": url}),
            json!({"name": "dc", "kind": "discord", "url": url}),
            json!({"name": "tg", "kind": "telegram", "secret": token, "chat_id": "-100123"}),
        ] {
            let r = owner
                .call(&app, "POST", &channels, Some(spec.clone()))
                .await;
            assert_eq!(r.status, 201, "{n}: {spec} {}", r.body);
            assert!(
                !r.body.contains(token),
                "{n}: the bot token is shown: {}",
                r.body
            );
        }
        for bad in [
            json!({"name": "tg2", "kind": "telegram", "secret": "tok en", "chat_id": "1"}),
            json!({"name": "tg3", "kind": "telegram", "secret": token, "chat_id": "1; rm"}),
        ] {
            let r = owner.call(&app, "POST", &channels, Some(bad.clone())).await;
            assert_eq!(r.status, 422, "{n}: {bad} {}", r.body);
        }
        let send = |name: &'static str| {
            let (owner, app, channels) = (&owner, &app, channels.clone());
            async move {
                let r = owner
                    .call(app, "POST", &format!("{channels}/{name}/test"), None)
                    .await;
                assert_eq!(r.status, 200, "{}", r.body);
                assert_eq!(r.json()["delivery"]["status"], "sent", "{}", r.body);
            }
        };
        send("sl").await;
        let got = next(&mut rx).await;
        let body: serde_json::Value = serde_json::from_str(&got.body).unwrap();
        assert_eq!(got.path, "/hook", "{n}");
        assert!(
            body["text"].as_str().unwrap().contains("Test message"),
            "{n}: {body}"
        );
        assert_eq!(body.as_object().unwrap().len(), 1, "{n}: {body}");
        send("dc").await;
        let got = next(&mut rx).await;
        let body: serde_json::Value = serde_json::from_str(&got.body).unwrap();
        assert!(body["content"].is_string(), "{n}: {body}");
        send("tg").await;
        let got = next(&mut rx).await;
        assert_eq!(got.path, format!("/bot{token}/sendMessage"), "{n}");
        let body: serde_json::Value = serde_json::from_str(&got.body).unwrap();
        assert_eq!(body["chat_id"], "-100123", "{n}: {body}");
        assert!(
            body["text"].is_string() && !got.body.contains(token),
            "{n}: {body}"
        );
        let listed = owner.call(&app, "GET", &channels, None).await;
        assert!(
            listed.body.contains("telegram chat -100123") && !listed.body.contains(token),
            "{n}: {}",
            listed.body
        );
    }
}

/// The plan preview of the collector is what an install would run: it reports to this BrokeForge, and the
/// token it would get is masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_plan_reports_here_with_the_token_masked() {
    for app in apps_with(WebConfig {
        insecure_provisioning: true,
        ..WebConfig::default()
    })
    .await
    {
        let n = app.name;
        let (owner, server, _) = owner_with_server(&app, "203.0.113.43").await;
        let r = owner
            .call(
                &app,
                "POST",
                &format!("/servers/{server}/plan/monitoring"),
                Some(json!({})),
            )
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let plan = r.json()["plan"].to_string();
        assert!(
            plan.contains(&format!("http://{}/ingest/metrics", app.addr)),
            "{n}: {plan}"
        );
        assert!(
            !plan.contains("bfm_"),
            "{n}: a token in the preview: {plan}"
        );
    }
}
