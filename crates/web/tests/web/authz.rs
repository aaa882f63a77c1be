//! The authorization matrix, generated from the route tables (the API's and the pages'): every route that
//! reaches a team's objects, called by each role of the team, by tokens of each scope and by someone outside
//! the team, gets what the policy table says: 404 for outsiders, 403 `forbidden` for what the role (or the
//! token's scope) may not do, and never 403 for what it may. A route added without a policy entry cannot be
//! built (the tables require an action), and one the extractors see without an action is refused.

use brokeforge_core::{CredentialKind, TeamRole};
use brokeforge_domain::policy::{Action, allows};

use super::*;

/// One case's objects: a server of the team (its pinned host key is not the test SSH server's, so nothing
/// ever runs on it) with a site, a job and a deployment.
struct Objects {
    server: i64,
    site: i64,
    job: i64,
    deployment: i64,
}

async fn objects(app: &App, owner: i64, team: i64, ssh_port: u16, n: usize) -> Objects {
    let server = app
        .store
        .create_server_in(
            team,
            &brokeforge_store::NewServer {
                user_id: owner,
                name: format!("matrix-{n}"),
                public_ip: "127.0.0.1".into(),
                ssh_port,
                host_key_fingerprint: Some(
                    "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into(),
                ),
            },
        )
        .await
        .unwrap();
    let kp = brokeforge_ssh::keys::generate_ed25519("matrix").unwrap();
    for kind in [
        CredentialKind::Root,
        CredentialKind::User,
        CredentialKind::Worker,
    ] {
        app.store
            .put_credential(server.id, kind, &kp.public_openssh, &kp.private_openssh)
            .await
            .unwrap();
    }
    let site = app
        .store
        .create_site(&brokeforge_store::NewSite {
            server_id: server.id,
            domain: format!("m{n}.example.com"),
            document_root: format!("/home/brokeforge/m{n}.example.com"),
            php_version: Some("8.2".into()),
            status: brokeforge_core::ServiceStatus::Active,
            configuration: json!({}),
        })
        .await
        .unwrap();
    let job = app
        .store
        .enqueue(&NewJob::new("noop", Some(server.id), json!({})))
        .await
        .unwrap();
    let (dep, _) = app
        .store
        .queue_deployment(
            &site,
            "deploy",
            Some("main"),
            None,
            "test",
            NewJob::new("noop", Some(server.id), json!({})),
        )
        .await
        .unwrap();
    Objects {
        server: server.id,
        site: site.id,
        job: job.id,
        deployment: dep.id,
    }
}

/// The route with its parameters filled in; `None` for routes that reach no team object.
fn concrete(path: &str, o: &Objects, team: i64) -> Option<String> {
    let id = if path.starts_with("/servers/{id}") {
        o.server
    } else if path.starts_with("/sites/{id}") {
        o.site
    } else if path.starts_with("/jobs/{id}") {
        o.job
    } else if path.starts_with("/deployments/{id}") {
        o.deployment
    } else if path.starts_with("/teams/{id}") {
        team
    } else {
        return None;
    };
    Some(
        path.replace("{id}", &id.to_string())
            .replace("{name}", "redis")
            .replace("{plan}", "nope")
            .replace("{snapshot}", "abcd1234")
            .replace("{engine}", "mariadb")
            .replace("{kind}", "schemas")
            .replace("{package}", "redis")
            .replace("{rule}", "abcd1234")
            .replace("{email}", "nobody%40example.com")
            .replace("{key}", "nokey")
            .replace("{version}", "8.2"),
    )
}

/// Who calls: a role in the team (or none), and the scope of the token used.
#[derive(Clone, Copy, Debug)]
struct Caller {
    role: Option<TeamRole>,
    scope: &'static str,
}

/// What a token of `scope` may do, from the route's action (independent of the code under test's lists).
fn scope_allows(scope: &str, method: &str, action: Action) -> bool {
    let safe = method == "get";
    let secret = matches!(action, Action::ReadEnv | Action::ReadCredentials);
    match scope {
        "full" => true,
        "deploy" => !secret && (safe || matches!(action, Action::Deploy | Action::SiteCommand)),
        _ => !secret && safe,
    }
}

async fn scoped(app: &App, full: &Auth, scope: &str) -> Auth {
    if scope == "full" {
        return full.clone();
    }
    let r = full
        .call(
            app,
            "POST",
            "/tokens",
            Some(json!({"name": format!("matrix-{scope}"), "scope": scope})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    Auth::Token(r.json()["token"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_the_policy_says() {
    let ssh = TestSshServer::start().await;
    for app in apps().await {
        let n = app.name;
        let owner = user(&app, "owner@example.com", false).await;
        let owner_id = app
            .store
            .user_by_email("owner@example.com")
            .await
            .unwrap()
            .unwrap()
            .id;
        let team = app.store.create_team("agency", owner_id).await.unwrap();
        let mut callers: Vec<(Caller, Auth, String)> = Vec::new();
        for role in [TeamRole::Admin, TeamRole::Developer, TeamRole::Viewer] {
            let email = format!("{role}@example.com");
            let auth = user(&app, &email, false).await;
            let id = app.store.user_by_email(&email).await.unwrap().unwrap().id;
            app.store.put_member(team.id, id, role, None).await.unwrap();
            callers.push((
                Caller {
                    role: Some(role),
                    scope: "full",
                },
                auth,
                email,
            ));
        }
        for scope in ["full", "deploy", "read"] {
            callers.push((
                Caller {
                    role: Some(TeamRole::Owner),
                    scope,
                },
                scoped(&app, &owner, scope).await,
                "owner@example.com".into(),
            ));
        }
        let outsider = user(&app, "outsider@example.com", false).await;
        callers.push((
            Caller {
                role: None,
                scope: "full",
            },
            outsider,
            "outsider@example.com".into(),
        ));

        // The API, from its route table.
        let mut cases = 0;
        for (i, op) in brokeforge_web::api::operations().iter().enumerate() {
            if op.action == Action::Account {
                continue;
            }
            for (j, (caller, auth, email)) in callers.iter().enumerate() {
                let o = objects(&app, owner_id, team.id, ssh.port(), i * 100 + j).await;
                let Some(path) = concrete(op.path, &o, team.id) else {
                    panic!(
                        "{} {}: a team route the matrix cannot fill in",
                        op.method, op.path
                    );
                };
                let may = caller.role.is_some_and(|r| {
                    allows(r, op.action) && scope_allows(caller.scope, op.method, op.action)
                });
                // A live stream never ends: only refusals are checked there.
                if may && op.path.ends_with("/stream") {
                    continue;
                }
                let method = op.method.to_ascii_uppercase();
                let body = (method == "POST" || method == "PUT").then(|| json!({}));
                let r = auth.call(&app, &method, &path, body).await;
                cases += 1;
                // Leaving worked: back in, for the routes after this one.
                if may && op.path.ends_with("/leave") && r.status == 200 {
                    let id = app.store.user_by_email(email).await.unwrap().unwrap().id;
                    let role = caller.role.unwrap();
                    app.store.put_member(team.id, id, role, None).await.unwrap();
                }
                let what = format!("{n}: {caller:?} {method} {path}: {} {}", r.status, r.body);
                match caller.role {
                    None => assert_eq!(r.status, 404, "outsider got in: {what}"),
                    Some(_) if may => assert_ne!(r.status, 403, "refused: {what}"),
                    Some(_) => {
                        assert_eq!(r.status, 403, "let through: {what}");
                        assert_eq!(r.code(), "forbidden", "{what}");
                    }
                }
            }
        }
        assert!(cases > 300, "{n}: only {cases} API cases ran");

        // The pages and their forms, from the pages' table, with a session each.
        let mut sessions = Vec::new();
        for (caller, _, email) in &callers {
            if caller.scope != "full" && caller.role.is_some() {
                continue;
            }
            let r = login(&app, email, "correct horse battery").await;
            assert_eq!(r.status, 200, "{}", r.body);
            let Auth::Session { cookie, csrf } = session_of(&r) else {
                unreachable!()
            };
            sessions.push((*caller, cookie, csrf));
        }
        let owner_login = login(&app, "owner@example.com", "correct horse battery").await;
        let Auth::Session { cookie, csrf } = session_of(&owner_login) else {
            unreachable!()
        };
        sessions.push((
            Caller {
                role: Some(TeamRole::Owner),
                scope: "full",
            },
            cookie,
            csrf,
        ));
        let mut pages = 0;
        for (i, op) in brokeforge_web::pages::operations().iter().enumerate() {
            if op.action == Action::Account {
                continue;
            }
            for (j, (caller, cookie, csrf)) in sessions.iter().enumerate() {
                let o = objects(&app, owner_id, team.id, ssh.port(), 50_000 + i * 100 + j).await;
                let path = concrete(op.path, &o, team.id).unwrap_or_else(|| {
                    panic!(
                        "{} {}: a team page the matrix cannot fill in",
                        op.method, op.path
                    )
                });
                let may = caller.role.is_some_and(|r| allows(r, op.action));
                let r = if op.method == "get" {
                    http(&app.addr, "GET", &path, &[("Cookie", cookie)], "").await
                } else {
                    form(&app, &path, cookie, &[("_csrf", csrf)]).await
                };
                pages += 1;
                let what = format!("{n}: {caller:?} {} {path}: {}", op.method, r.status);
                match caller.role {
                    None => assert_eq!(r.status, 404, "outsider got in: {what}"),
                    Some(_) if may => assert_ne!(r.status, 403, "refused: {what}\n{}", r.body),
                    Some(_) => assert_eq!(r.status, 403, "let through: {what}"),
                }
            }
        }
        assert!(pages > 150, "{n}: only {pages} page cases ran");
    }
}
