//! Site types: a type's input is checked before anything is stored or queued (the type, its port, the
//! packages it needs); a Node.js site is given a free port; the page's form takes a type and shows it.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_types_are_checked_and_given_ports() {
    for app in apps().await {
        let n = app.name;
        let owner = user(&app, "types@example.com", false).await;
        let made = owner
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "web", "public_ip": "203.0.113.40"})),
            )
            .await;
        assert_eq!(made.status, 201, "{n}: {}", made.body);
        let server = made.json()["server"]["id"].as_i64().unwrap();
        let service = |name: &'static str, config: Value| {
            let store = app.store.clone();
            async move {
                store
                    .upsert_service(
                        server,
                        name,
                        brokeforge_core::ServiceType::Webserver,
                        &config,
                        brokeforge_core::ServiceStatus::Active,
                    )
                    .await
                    .unwrap();
            }
        };
        service(
            "webserver",
            json!({"php_versions": ["8.2"], "cli_default": "8.2"}),
        )
        .await;
        let path = format!("/servers/{server}/sites");
        let create = |body: Value| owner.call(&app, "POST", &path, Some(body));
        for (body, says) in [
            (
                json!({"domain": "a.test", "type": "wordpress2"}),
                "is not a site type",
            ),
            (
                json!({"domain": "a.test", "type": "proxy"}),
                "needs the port",
            ),
            (
                json!({"domain": "a.test", "type": "proxy", "proxy_port": 443}),
                "privileged",
            ),
            (
                json!({"domain": "a.test", "type": "static", "proxy_port": 8080}),
                "takes no port",
            ),
            (
                json!({"domain": "a.test", "type": "php", "spa_fallback": true}),
                "only a static site",
            ),
            (
                json!({"domain": "a.test", "type": "node"}),
                "install the `nodejs` package",
            ),
            (
                json!({"domain": "a.test", "type": "wordpress"}),
                "install the `mariadb` package",
            ),
            (
                json!({"domain": "a.test", "isolated": false, "pm": "ondemand"}),
                "only an isolated PHP site",
            ),
            (
                json!({"domain": "a.test", "type": "static", "max_children": 4}),
                "only an isolated PHP site",
            ),
            (
                json!({"domain": "a.test", "pm": "forking"}),
                "not a process manager mode",
            ),
            (
                json!({"domain": "a.test", "max_children": 0}),
                "give 1 to 200",
            ),
        ] {
            let r = create(body.clone()).await;
            assert_eq!(r.status, 422, "{n}: {body} {}", r.body);
            assert!(r.body.contains(says), "{n}: {body} {}", r.body);
        }
        let r = create(json!({"domain": "a.test", "type": "proxy", "proxy_port": 70000})).await;
        assert_eq!(r.status, 400, "{n}: {}", r.body);
        assert!(app.store.sites(server).await.unwrap().is_empty(), "{n}");
        assert!(
            app.store.jobs_for_server(server).await.unwrap().is_empty(),
            "{n}"
        );

        service("nodejs", json!({})).await;
        let config = |r: &Resp| r.json()["site"]["configuration"].clone();
        let first = create(json!({"domain": "one.test", "type": "node"})).await;
        assert_eq!(first.status, 202, "{n}: {}", first.body);
        assert_eq!(config(&first)["type"], "node", "{n}");
        assert_eq!(config(&first)["proxy_port"], 3000, "{n}");
        assert_eq!(config(&first)["shared_paths"], json!([".env"]), "{n}");
        let second = create(json!({"domain": "two.test", "type": "node"})).await;
        assert_eq!(config(&second)["proxy_port"], 3001, "{n}: {}", second.body);
        let taken =
            create(json!({"domain": "three.test", "type": "node", "proxy_port": 3000})).await;
        assert_eq!(taken.status, 422, "{n}: {}", taken.body);
        assert!(taken.body.contains("already runs on port 3000"), "{n}");
        let proxy = create(json!({"domain": "p.test", "type": "proxy", "proxy_port": 3000})).await;
        assert_eq!(proxy.status, 202, "{n}: {}", proxy.body);
        let laravel = create(json!({"domain": "lara.test", "type": "laravel"})).await;
        assert_eq!(laravel.status, 202, "{n}: {}", laravel.body);
        let laravel_id = laravel.json()["site"]["id"].as_i64().unwrap();
        let plain = create(json!({"domain": "php.test"})).await;
        assert_eq!(config(&plain)["type"], "php", "{n}");
        assert_eq!(config(&plain)["web_directory"], "public", "{n}");
        // New sites are isolated: their own user's home (named after the id), their own pool.
        let plain_id = plain.json()["site"]["id"].as_i64().unwrap();
        assert_eq!(config(&plain)["isolated"], true, "{n}");
        assert_eq!(
            plain.json()["site"]["document_root"],
            format!("/home/site{plain_id}/php.test"),
            "{n}"
        );
        let tuned =
            create(json!({"domain": "tuned.test", "pm": "static", "max_children": 12})).await;
        assert_eq!(
            config(&tuned)["pool"],
            json!({"pm": "static", "max_children": 12}),
            "{n}: {}",
            tuned.body
        );
        let shared = create(json!({"domain": "shared.test", "isolated": false})).await;
        assert_eq!(config(&shared)["isolated"], false, "{n}");
        assert_eq!(
            shared.json()["site"]["document_root"],
            "/home/brokeforge/shared.test",
            "{n}"
        );
        // The pool of an isolated PHP site changes once the site is installed; a shared site has none.
        let pool = |id: i64, body: Value| {
            let (owner, app) = (&owner, &app);
            async move {
                owner
                    .call(app, "PUT", &format!("/sites/{id}/pool"), Some(body))
                    .await
            }
        };
        let r = pool(plain_id, json!({"pm": "static"})).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert!(r.body.contains("not active"), "{n}: {}", r.body);
        let shared_id = shared.json()["site"]["id"].as_i64().unwrap();
        for id in [plain_id, shared_id] {
            app.store
                .set_site_status(id, brokeforge_core::ServiceStatus::Active)
                .await
                .unwrap();
        }
        let r = pool(shared_id, json!({"pm": "static"})).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert!(
            r.body.contains("only an isolated PHP site"),
            "{n}: {}",
            r.body
        );
        let r = pool(plain_id, json!({"pm": "ondemand", "max_children": 5})).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert!(r.body.contains("already"), "{n}: {}", r.body);
        let r = pool(plain_id, json!({"pm": "static", "workers": 3})).await;
        assert_eq!(r.status, 400, "{n}: unknown field {}", r.body);
        let r = pool(plain_id, json!({"pm": "static", "max_children": 3})).await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);

        // The page: a static single-page site through the form, a bad port refused and shown again.
        let session = session_of(&login(&app, "types@example.com", "correct horse battery").await);
        let Auth::Session { cookie, csrf } = session else {
            unreachable!()
        };
        let r = form(
            &app,
            &path,
            &cookie,
            &[
                ("_csrf", &csrf),
                ("domain", "spa.test"),
                ("type", "proxy"),
                ("proxy_port", "abc"),
                ("php_version", "8.2"),
            ],
        )
        .await;
        assert_eq!(r.status, 422, "{n}");
        assert!(
            r.body.contains("is not a port number") && r.body.contains("spa.test"),
            "{n}"
        );
        let r = form(
            &app,
            &path,
            &cookie,
            &[
                ("_csrf", &csrf),
                ("domain", "spa.test"),
                ("type", "static"),
                ("spa_fallback", "true"),
                ("web_directory", ""),
                ("php_version", "8.2"),
            ],
        )
        .await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        let spa = app
            .store
            .sites(server)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.domain == "spa.test")
            .unwrap();
        let c = brokeforge_packages::services::sites::config::SiteConfig::of(&spa);
        assert_eq!(
            (c.kind.as_str(), c.spa_fallback, c.web_directory.as_str()),
            ("static", true, ""),
            "{n}"
        );
        let page = http(
            &app.addr,
            "GET",
            &format!("/servers/{server}"),
            &[("Cookie", &cookie)],
            "",
        )
        .await;
        // A Laravel site is offered its scheduler and queue worker as presets; a plain PHP site is not.
        let site_page = |id: i64| {
            let cookie = cookie.clone();
            let addr = app.addr.clone();
            async move {
                http(
                    &addr,
                    "GET",
                    &format!("/sites/{id}/tasks"),
                    &[("Cookie", &cookie)],
                    "",
                )
                .await
                .body
            }
        };
        let lara = site_page(laravel_id).await;
        assert!(
            lara.contains("value=\"* * * * * php artisan schedule:run\n\"")
                && lara.contains("scheduler</button>")
                && lara.contains("php artisan queue:work --sleep=3"),
            "{n}: no presets on the Laravel site's page"
        );
        let plain_id = plain.json()["site"]["id"].as_i64().unwrap();
        assert!(
            !site_page(plain_id).await.contains("scheduler</button>"),
            "{n}"
        );
        for shown in [
            "Node.js application · port 3001",
            "Reverse proxy to a port · port 3000",
            "Static files",
            "PHP 8.2",
        ] {
            assert!(
                page.body.contains(shown),
                "{n}: {shown} not on the server page"
            );
        }
    }
}

/// PHP settings and extensions: names, values and versions are checked before a job is queued; good changes
/// queue one job each and say what they will do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_changes_are_checked_before_they_queue() {
    for app in apps().await {
        let n = app.name;
        let owner = user(&app, "php@example.com", false).await;
        let made = owner
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "web", "public_ip": "203.0.113.41"})),
            )
            .await;
        let server = made.json()["server"]["id"].as_i64().unwrap();
        let settings = format!("/servers/{server}/php/8.2/settings");
        let extensions = format!("/servers/{server}/php/8.2/extensions");
        // No web server yet: nothing to change.
        let r = owner
            .call(
                &app,
                "PUT",
                &settings,
                Some(json!({"set": {"memory_limit": "512M"}})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert!(
            r.body.contains("install the `webserver` package"),
            "{n}: {}",
            r.body
        );
        app.store
            .upsert_service(
                server,
                "webserver",
                brokeforge_core::ServiceType::Webserver,
                &json!({"php_versions": ["8.2"], "cli_default": "8.2"}),
                brokeforge_core::ServiceStatus::Active,
            )
            .await
            .unwrap();
        for (path, method, body, says) in [
            (
                &settings,
                "PUT",
                json!({"set": {"extension": "evil.so"}}),
                "is not a setting BrokeForge sets",
            ),
            (
                &settings,
                "PUT",
                json!({"set": {"memory_limit": "512M\nextension=evil.so"}}),
                "is not a size",
            ),
            (
                &settings,
                "PUT",
                json!({"set": {"date.timezone": "$(reboot)"}}),
                "time zone",
            ),
            (&settings, "PUT", json!({}), "nothing to change"),
            (
                &extensions,
                "POST",
                json!({"add": ["intl;reboot"]}),
                "is not an extension name",
            ),
            (
                &extensions,
                "POST",
                json!({"remove": ["fpm"]}),
                "comes with the web server",
            ),
        ] {
            let r = owner.call(&app, method, path, Some(body.clone())).await;
            assert_eq!(r.status, 422, "{n}: {body} {}", r.body);
            assert!(r.body.contains(says), "{n}: {body} {}", r.body);
        }
        let r = owner
            .call(
                &app,
                "PUT",
                &format!("/servers/{server}/php/8.3/settings"),
                Some(json!({"set": {"memory_limit": "512M"}})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert!(
            r.body.contains("PHP 8.3 is not installed"),
            "{n}: {}",
            r.body
        );
        let r = owner
            .call(
                &app,
                "PUT",
                &settings,
                Some(json!({"set": {"memory_limit": "1G"}, "bogus": 1})),
            )
            .await;
        assert_eq!(r.status, 400, "{n}: {}", r.body);
        assert!(
            app.store.jobs_for_server(server).await.unwrap().is_empty(),
            "{n}"
        );

        // A site moves between installed versions only.
        app.store
            .upsert_service(
                server,
                "webserver",
                brokeforge_core::ServiceType::Webserver,
                &json!({"php_versions": ["8.2", "8.3"], "cli_default": "8.2"}),
                brokeforge_core::ServiceStatus::Active,
            )
            .await
            .unwrap();
        let site = |domain: &'static str, kind: &'static str| {
            let store = app.store.clone();
            async move {
                store
                    .create_site(&brokeforge_store::NewSite {
                        server_id: server,
                        domain: domain.into(),
                        document_root: format!("/home/brokeforge/{domain}"),
                        php_version: Some("8.2".into()),
                        status: brokeforge_core::ServiceStatus::Active,
                        configuration: json!({"type": kind}),
                    })
                    .await
                    .unwrap()
                    .id
            }
        };
        let (php_site, static_site) = (site("p.test", "php").await, site("s.test", "static").await);
        for (id, version, says) in [
            (php_site, "8.2", "runs PHP 8.2 already"),
            (php_site, "8.4", "PHP 8.4 is not installed"),
            (php_site, "8.3;id", "PHP version"),
            (static_site, "8.3", "runs no PHP"),
        ] {
            let r = owner
                .call(
                    &app,
                    "PUT",
                    &format!("/sites/{id}/php"),
                    Some(json!({"version": version})),
                )
                .await;
            assert_eq!(r.status, 422, "{n}: {version} {}", r.body);
            assert!(r.body.contains(says), "{n}: {version} {}", r.body);
        }
        assert!(
            app.store.jobs_for_server(server).await.unwrap().is_empty(),
            "{n}"
        );
        let r = owner
            .call(
                &app,
                "PUT",
                &format!("/sites/{php_site}/php"),
                Some(json!({"version": "8.3"})),
            )
            .await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        assert_eq!(r.json()["job"]["kind"], "site_php_version_installer", "{n}");

        let r = owner
            .call(
                &app,
                "PUT",
                &settings,
                Some(json!({"set": {"memory_limit": "512m"}})),
            )
            .await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        let r = owner
            .call(&app, "POST", &extensions, Some(json!({"add": ["bz2"]})))
            .await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        let kinds: Vec<String> = app
            .store
            .jobs_for_server(server)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.kind)
            .collect();
        assert_eq!(kinds.len(), 3, "{n}: {kinds:?}");
        assert!(
            kinds.contains(&"php_settings_installer".to_string())
                && kinds.contains(&"php_extension_installer".to_string()),
            "{n}: {kinds:?}"
        );
    }
}
