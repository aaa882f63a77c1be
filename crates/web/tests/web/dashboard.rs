//! The dashboard as a fleet overview: each server's sites with their newest deployment, and a filter by part of
//! a name or address, or a whole tag, that never shows another user's servers and takes `%` literally.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_filters_servers_and_shows_their_sites() {
    for app in apps().await {
        let n = app.name;
        let alice = user(&app, "fleet@example.com", false).await;
        user(&app, "fleet-other@example.com", false).await;
        let me = app
            .store
            .user_by_email("fleet@example.com")
            .await
            .unwrap()
            .unwrap();
        let other = app
            .store
            .user_by_email("fleet-other@example.com")
            .await
            .unwrap()
            .unwrap();
        let add = |user_id: i64, name: &str, ip: &str| {
            let new = brokeforge_store::NewServer {
                user_id,
                name: name.into(),
                public_ip: ip.into(),
                ssh_port: 22,
                host_key_fingerprint: None,
            };
            let store = app.store.clone();
            async move { store.create_server(&new).await.unwrap() }
        };
        let web = add(me.id, "Web-Shop", "10.0.0.5").await;
        let db = add(me.id, "db-1", "10.0.1.7").await;
        let odd = add(me.id, "100%-odd", "10.0.2.9").await;
        add(other.id, "web-theirs", "10.0.0.6").await;
        app.store
            .change_server_tags(db.id, &["production".into()], &[])
            .await
            .unwrap();
        let site = |server_id: i64, domain: &str| brokeforge_store::NewSite {
            server_id,
            domain: domain.into(),
            document_root: format!("/home/brokeforge/{domain}"),
            php_version: Some("8.2".into()),
            status: brokeforge_core::ServiceStatus::Active,
            configuration: json!({}),
        };
        let shop = app
            .store
            .create_site(&site(web.id, "shop.example.com"))
            .await
            .unwrap();
        app.store
            .create_site(&site(web.id, "blog.example.com"))
            .await
            .unwrap();
        app.store
            .queue_deployment(
                &shop,
                "deploy",
                Some("main"),
                None,
                "test",
                NewJob::new("noop", Some(web.id), json!({})),
            )
            .await
            .unwrap();

        let Auth::Session { cookie, .. } =
            session_of(&login(&app, "fleet@example.com", "correct horse battery").await)
        else {
            unreachable!()
        };
        let page = |q: &str| {
            let (addr, cookie) = (app.addr.clone(), cookie.clone());
            let path = format!("/?q={q}");
            async move { http(&addr, "GET", &path, &[("Cookie", &cookie)], "").await }
        };
        let names = |body: &str| -> Vec<&'static str> {
            ["Web-Shop", "db-1", "100%-odd", "web-theirs"]
                .into_iter()
                .filter(|s| body.contains(&format!("<strong>{s}</strong>")))
                .collect()
        };

        let all = page("").await;
        assert_eq!(all.status, 200, "{n}: {}", all.body);
        assert_eq!(names(&all.body), ["Web-Shop", "db-1", "100%-odd"], "{n}");
        // Each site with its newest deployment (or none yet), linked to its deployments.
        let deployed = format!(
            "<a href=\"/sites/{}/deployments\">shop.example.com</a> <span class=\"badge ",
            shop.id
        );
        assert!(
            all.body.contains(&deployed)
                && all
                    .body
                    .contains("blog.example.com</a> <span class=\"muted\">never deployed</span>"),
            "{n}: {}",
            all.body
        );
        // Part of a name (any case), part of an address, a whole tag; another user's never.
        assert_eq!(names(&page("WEB").await.body), ["Web-Shop"], "{n}");
        assert_eq!(names(&page("10.0.1.").await.body), ["db-1"], "{n}");
        assert_eq!(names(&page("production").await.body), ["db-1"], "{n}");
        assert_eq!(names(&page("theirs").await.body), Vec::<&str>::new(), "{n}");
        // `%` and `_` are matched as themselves, not as wildcards.
        assert_eq!(names(&page("0%25-").await.body), ["100%-odd"], "{n}");
        assert_eq!(names(&page("%25").await.body), ["100%-odd"], "{n}");
        let none = page("b_1").await;
        assert!(
            names(&none.body).is_empty() && none.body.contains("No server matches “b_1”."),
            "{n}: {}",
            none.body
        );
        // The API takes the same filter.
        let r = alice
            .call(&app, "GET", "/servers?search=production", None)
            .await;
        let found: Vec<Value> = r.json()["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["server"]["name"].clone())
            .collect();
        assert_eq!(found, [json!("db-1")], "{n}: {}", r.body);
        let _ = odd;
    }
}
