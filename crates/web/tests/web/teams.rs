//! Teams: invitations that cannot be abused (reused, expired, for another email, beyond the inviter's role,
//! after the inviter lost the role), members who see the team's servers as their role allows, removal that
//! takes access away, a team that requires two-factor sign-in, and a team that keeps its last owner.

use super::*;

async fn id_of(app: &App, email: &str) -> i64 {
    app.store.user_by_email(email).await.unwrap().unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_roles_and_removal() {
    for app in apps().await {
        let n = app.name;
        let owner = user(&app, "owner@example.com", false).await;
        let dev = user(&app, "dev@example.com", false).await;
        let other = user(&app, "other@example.com", false).await;
        let co = user(&app, "co@example.com", false).await;

        let r = owner
            .call(&app, "POST", "/teams", Some(json!({"name": "agency"})))
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        let team = r.json()["team"]["id"].as_i64().unwrap();
        let r = owner
            .call(&app, "POST", "/teams", Some(json!({"name": " "})))
            .await;
        assert_eq!(r.status, 422);
        let made = owner
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "shop", "public_ip": "203.0.113.20", "team": "agency"})),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.body);
        let server = made.json()["server"]["id"].as_i64().unwrap();
        assert_eq!(made.json()["server"]["team_id"], team);
        // Only members add servers to a team.
        let r = dev
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "x", "public_ip": "203.0.113.21", "team": team.to_string()})),
            )
            .await;
        assert_eq!(r.status, 404, "{}", r.body);

        let invite = |who: &Auth, email: &str, role: &str| {
            let (who, email, role) = (who.clone(), email.to_string(), role.to_string());
            let app = &app;
            async move {
                who.call(
                    app,
                    "POST",
                    &format!("/teams/{team}/invitations"),
                    Some(json!({"email": email, "role": role})),
                )
                .await
            }
        };
        let r = invite(&owner, "dev@example.com", "developer").await;
        assert_eq!(r.status, 201, "{}", r.body);
        let path = r.json()["path"].as_str().unwrap().to_string();
        let token = path.trim_start_matches("/invitations/").to_string();
        assert_eq!(token.len(), 64);
        // Only its hash is stored.
        assert!(
            app.store
                .invitations(team)
                .await
                .unwrap()
                .iter()
                .all(|i| i.token_hash != token)
        );
        // Someone else signed in cannot take it.
        let r = other
            .call(&app, "POST", &format!("/invitations/{token}/accept"), None)
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "forbidden"),
            "{}",
            r.body
        );
        assert_eq!(
            other
                .call(&app, "GET", &format!("/servers/{server}"), None)
                .await
                .status,
            404
        );
        // The invited one can, once.
        let r = dev
            .call(&app, "POST", &format!("/invitations/{token}/accept"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = dev
            .call(&app, "POST", &format!("/invitations/{token}/accept"), None)
            .await;
        assert_eq!((r.status, r.code().as_str()), (409, "invitation_used"));
        let r = dev
            .call(&app, "POST", "/invitations/00ff/accept", None)
            .await;
        assert_eq!(r.status, 404);

        // A developer sees the team's server, deploys, but makes no root-level change and invites nobody.
        let list = dev.call(&app, "GET", "/servers", None).await;
        assert!(
            list.json()["servers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["server"]["id"] == server),
            "{}",
            list.body
        );
        let r = dev
            .call(
                &app,
                "POST",
                &format!("/servers/{server}/services"),
                Some(json!({"package": "redis"})),
            )
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "forbidden"),
            "{}",
            r.body
        );
        assert_eq!(invite(&dev, "x@example.com", "viewer").await.status, 403);
        let members = dev
            .call(&app, "GET", &format!("/teams/{team}/members"), None)
            .await;
        assert_eq!(members.status, 200);
        assert_eq!(members.json()["members"].as_array().unwrap().len(), 2);
        assert_eq!(
            members.json()["invitations"],
            json!([]),
            "only owners see invitations"
        );

        // An expired invitation is refused.
        app.store
            .create_invitation(
                team,
                "other@example.com",
                brokeforge_core::TeamRole::Viewer,
                &brokeforge_domain::accounts::sha256_hex("expired-token"),
                id_of(&app, "owner@example.com").await,
                1,
            )
            .await
            .unwrap();
        let r = other
            .call(&app, "POST", "/invitations/expired-token/accept", None)
            .await;
        assert_eq!((r.status, r.code().as_str()), (409, "invitation_expired"));

        // An inviter who lost the role cannot hand it out any more.
        let r = invite(&owner, "co@example.com", "owner").await;
        let co_token = r.json()["path"]
            .as_str()
            .unwrap()
            .trim_start_matches("/invitations/")
            .to_string();
        let r = co
            .call(
                &app,
                "POST",
                &format!("/invitations/{co_token}/accept"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = co
            .call(&app, "POST", "/teams", Some(json!({"name": "agency"})))
            .await;
        assert_eq!(r.status, 409, "one name per member: {}", r.body);
        let r = invite(&co, "other@example.com", "admin").await;
        let pending = r.json()["path"]
            .as_str()
            .unwrap()
            .trim_start_matches("/invitations/")
            .to_string();
        let r = owner
            .call(
                &app,
                "PUT",
                &format!("/teams/{team}/members"),
                Some(json!({"email": "co@example.com", "role": "viewer"})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        // The role change left exactly one audit record, by its actor, with no secret in it.
        let audit = owner
            .call(&app, "GET", "/audit?action=%2Fmembers", None)
            .await;
        let entries = audit.json();
        let changes: Vec<&Value> = entries["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "PUT /teams/{id}/members")
            .collect();
        assert_eq!(changes.len(), 1, "{}", audit.body);
        assert_eq!(changes[0]["actor"], "owner@example.com (API token)");
        assert_eq!(changes[0]["status"], 200);
        // Searchable by team: what happened on the team's servers.
        let by_team = owner
            .call(&app, "GET", &format!("/audit?team={team}"), None)
            .await;
        let by_team = by_team.json()["entries"].as_array().cloned().unwrap();
        assert!(!by_team.is_empty());
        assert!(
            by_team.iter().all(|e| e["server_id"] == server),
            "{by_team:#?}"
        );
        let all = owner.call(&app, "GET", "/audit?limit=1000", None).await;
        for secret in [&token, &co_token, &pending] {
            assert!(!all.body.contains(secret.as_str()), "{}", all.body);
        }
        let r = other
            .call(
                &app,
                "POST",
                &format!("/invitations/{pending}/accept"),
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "forbidden"),
            "{}",
            r.body
        );
        assert_eq!(
            other
                .call(&app, "GET", &format!("/servers/{server}"), None)
                .await
                .status,
            404
        );
        // Nor invite above their role.
        assert_eq!(invite(&co, "z@example.com", "viewer").await.status, 403);

        // The last owner stays.
        let r = owner
            .call(&app, "POST", &format!("/teams/{team}/leave"), None)
            .await;
        assert_eq!((r.status, r.code().as_str()), (409, "last_owner"));
        let r = owner
            .call(
                &app,
                "PUT",
                &format!("/teams/{team}/members"),
                Some(json!({"email": "owner@example.com", "role": "admin"})),
            )
            .await;
        assert_eq!((r.status, r.code().as_str()), (409, "last_owner"));

        // A team that requires two-factor sign-in keeps members without it out of its servers.
        let r = owner
            .call(
                &app,
                "PUT",
                &format!("/teams/{team}/settings"),
                Some(json!({"require_two_factor": true})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = dev
            .call(&app, "GET", &format!("/servers/{server}"), None)
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("two-factor"), "{}", r.body);
        owner
            .call(
                &app,
                "PUT",
                &format!("/teams/{team}/settings"),
                Some(json!({"require_two_factor": false})),
            )
            .await;

        // Removing a member takes their access away.
        let r = owner
            .call(
                &app,
                "DELETE",
                &format!("/teams/{team}/members/dev%40example.com"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            dev.call(&app, "GET", &format!("/servers/{server}"), None)
                .await
                .status,
            404
        );
        // Deleting the owner's account leaves the team's server with the team.
        app.store
            .delete_user(id_of(&app, "owner@example.com").await)
            .await
            .unwrap();
        let s = app.store.server(server).await.unwrap();
        assert_eq!(s.user_id, id_of(&app, "co@example.com").await);
        assert_eq!(s.team_id, team);
    }
}

/// The same through the pages: create a team, invite by link, open the link as the invited user, join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_through_the_pages() {
    for app in apps().await {
        let n = app.name;
        user(&app, "lead@example.com", false).await;
        user(&app, "new@example.com", false).await;
        let session = |email: &'static str| {
            let app = &app;
            async move {
                let r = login(app, email, "correct horse battery").await;
                let Auth::Session { cookie, csrf } = session_of(&r) else {
                    unreachable!()
                };
                (cookie, csrf)
            }
        };
        let (lead, lead_csrf) = session("lead@example.com").await;
        let r = form(
            &app,
            "/teams",
            &lead,
            &[("_csrf", &lead_csrf), ("op", "create"), ("name", "studio")],
        )
        .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert!(r.body.contains("Created team studio"), "{}", r.body);
        let team = app
            .store
            .teams_of(
                app.store
                    .user_by_email("lead@example.com")
                    .await
                    .unwrap()
                    .unwrap()
                    .id,
            )
            .await
            .unwrap()
            .into_iter()
            .find(|(t, _)| t.name == "studio")
            .unwrap()
            .0
            .id
            .to_string();
        let r = form(
            &app,
            "/teams",
            &lead,
            &[
                ("_csrf", &lead_csrf),
                ("op", "invite"),
                ("team", &team),
                ("email", "new@example.com"),
                ("role", "developer"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let at = r.body.find("/invitations/").expect("the link is shown");
        let token: String = r.body[at + 13..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        assert_eq!(token.len(), 64, "{}", r.body);
        let (new, new_csrf) = session("new@example.com").await;
        let page = http(
            &app.addr,
            "GET",
            &format!("/invitations/{token}"),
            &[("Cookie", &new)],
            "",
        )
        .await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("Join studio") && page.body.contains("developer"));
        let r = form(
            &app,
            &format!("/invitations/{token}/accept"),
            &new,
            &[("_csrf", &new_csrf)],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("You joined studio"), "{}", r.body);
        let page = http(&app.addr, "GET", "/teams", &[("Cookie", &new)], "").await;
        assert!(page.body.contains("you are developer"), "{}", page.body);
        // The dashboard shows each server's team and switches between teams.
        app.store
            .create_server_in(
                team.parse().unwrap(),
                &brokeforge_store::NewServer {
                    user_id: app
                        .store
                        .user_by_email("lead@example.com")
                        .await
                        .unwrap()
                        .unwrap()
                        .id,
                    name: "studio-web".into(),
                    public_ip: "203.0.113.40".into(),
                    ssh_port: 22,
                    host_key_fingerprint: None,
                },
            )
            .await
            .unwrap();
        let all = http(&app.addr, "GET", "/", &[("Cookie", &new)], "").await;
        assert!(
            all.body.contains("studio-web") && all.body.contains("Team:"),
            "{}",
            all.body
        );
        let one = http(
            &app.addr,
            "GET",
            &format!("/?team={team}"),
            &[("Cookie", &new)],
            "",
        )
        .await;
        assert!(one.body.contains("studio-web"));
        let personal = app
            .store
            .personal_team(
                app.store
                    .user_by_email("new@example.com")
                    .await
                    .unwrap()
                    .unwrap()
                    .id,
            )
            .await
            .unwrap();
        let other = http(
            &app.addr,
            "GET",
            &format!("/?team={personal}"),
            &[("Cookie", &new)],
            "",
        )
        .await;
        assert!(!other.body.contains("studio-web"), "{}", other.body);
        // A bad form answers with its message.
        let r = form(
            &app,
            "/teams",
            &new,
            &[
                ("_csrf", &new_csrf),
                ("op", "invite"),
                ("team", &team),
                ("email", "x@example.com"),
                ("role", "viewer"),
            ],
        )
        .await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
}

/// Personal SSH keys: checked when added, one's own only, root only for roles with root-level rights, and
/// deleting a key queues its removal from the servers it is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_ssh_keys_are_checked_and_owned() {
    for app in apps().await {
        let n = app.name;
        let owner = user(&app, "kowner@example.com", false).await;
        let dev = user(&app, "kdev@example.com", false).await;
        let team = app
            .store
            .create_team("keys", id_of(&app, "kowner@example.com").await)
            .await
            .unwrap();
        app.store
            .put_member(
                team.id,
                id_of(&app, "kdev@example.com").await,
                brokeforge_core::TeamRole::Developer,
                None,
            )
            .await
            .unwrap();
        let made = owner
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "k1", "public_ip": "203.0.113.30", "team": "keys"})),
            )
            .await;
        let server = made.json()["server"]["id"].as_i64().unwrap();
        let kp = brokeforge_ssh::keys::generate_ed25519("owner laptop").unwrap();
        let r = owner
            .call(
                &app,
                "POST",
                "/account/ssh-keys",
                Some(json!({"name": "laptop", "public_key": kp.public_openssh})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        assert!(!r.body.contains("owner laptop"), "the comment is not kept");
        for (body, field) in [
            (
                json!({"name": "x", "public_key": "ssh-ed25519 AAAA'; reboot"}),
                "public_key",
            ),
            (json!({"name": "", "public_key": kp.public_openssh}), "name"),
        ] {
            let r = owner
                .call(&app, "POST", "/account/ssh-keys", Some(body))
                .await;
            assert_eq!(r.status, 422, "{}", r.body);
            assert_eq!(r.json()["error"]["field"], field);
        }
        let r = owner
            .call(
                &app,
                "POST",
                "/account/ssh-keys",
                Some(json!({"name": "again", "public_key": kp.public_openssh})),
            )
            .await;
        assert_eq!(r.status, 409, "{}", r.body);

        // The developer cannot use the owner's key, nor root.
        let r = dev
            .call(
                &app,
                "POST",
                &format!("/servers/{server}/ssh-keys"),
                Some(json!({"key": "laptop"})),
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        let dk = brokeforge_ssh::keys::generate_ed25519("dev").unwrap();
        dev.call(
            &app,
            "POST",
            "/account/ssh-keys",
            Some(json!({"name": "dev", "public_key": dk.public_openssh})),
        )
        .await;
        let r = dev
            .call(
                &app,
                "POST",
                &format!("/servers/{server}/ssh-keys"),
                Some(json!({"key": "dev", "user": "root"})),
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        let r = dev
            .call(
                &app,
                "POST",
                &format!("/servers/{server}/ssh-keys"),
                Some(json!({"key": "dev"})),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.json()["job"]["kind"], "user_key_installer");
        let on = owner
            .call(&app, "GET", &format!("/servers/{server}/ssh-keys"), None)
            .await;
        assert_eq!(
            on.json()["keys"][0]["unix_user"],
            "brokeforge",
            "{}",
            on.body
        );
        // Deleting the key queues its removal from the server.
        let r = dev
            .call(&app, "DELETE", "/account/ssh-keys/dev", None)
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.json()["jobs"][0]["kind"], "user_key_remover");
        assert_eq!(r.json()["jobs"][0]["server_id"], server);
        let list = dev.call(&app, "GET", "/account/ssh-keys", None).await;
        assert_eq!(list.json()["keys"], json!([]));
    }
}

/// The account page's SSH keys: added with a clear error for a bad key, listed, deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_keys_on_the_account_page() {
    for app in apps().await {
        user(&app, "pagekeys@example.com", false).await;
        let r = login(&app, "pagekeys@example.com", "correct horse battery").await;
        let Auth::Session { cookie, csrf } = session_of(&r) else {
            unreachable!()
        };
        let r = form(
            &app,
            "/account/ssh-keys",
            &cookie,
            &[
                ("_csrf", &csrf),
                ("name", "laptop"),
                ("public_key", "ssh-rsa nope"),
            ],
        )
        .await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.body.contains("public_key"), "{}", r.body);
        let kp = brokeforge_ssh::keys::generate_ed25519("page").unwrap();
        let r = form(
            &app,
            "/account/ssh-keys",
            &cookie,
            &[
                ("_csrf", &csrf),
                ("name", "laptop"),
                ("public_key", &kp.public_openssh),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("Added laptop") && r.body.contains("on no server"));
        let id = app
            .store
            .user_keys(
                app.store
                    .user_by_email("pagekeys@example.com")
                    .await
                    .unwrap()
                    .unwrap()
                    .id,
            )
            .await
            .unwrap()[0]
            .id;
        let r = form(
            &app,
            &format!("/account/ssh-keys/{id}/delete"),
            &cookie,
            &[("_csrf", &csrf)],
        )
        .await;
        assert!(r.body.contains("Key deleted"), "{}", r.body);
    }
}

/// A member narrowed to some of the team's servers sees and acts on those only (the others are not
/// found); bad narrowing changes nothing; owners are never narrowed; `[]` gives back all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_narrowed_to_servers_see_only_those() {
    for app in apps().await {
        let n = app.name;
        let owner = user(&app, "owner@example.com", false).await;
        let dev = user(&app, "dev@example.com", false).await;
        let team = owner
            .call(&app, "POST", "/teams", Some(json!({"name": "agency"})))
            .await
            .json()["team"]["id"]
            .as_i64()
            .unwrap();
        let mut ids = Vec::new();
        for (name, ip) in [("shop", "203.0.113.50"), ("blog", "203.0.113.51")] {
            let r = owner
                .call(
                    &app,
                    "POST",
                    "/servers",
                    Some(json!({"name": name, "public_ip": ip, "team": "agency"})),
                )
                .await;
            assert_eq!(r.status, 201, "{n}: {}", r.body);
            ids.push(r.json()["server"]["id"].as_i64().unwrap());
        }
        let r = owner
            .call(
                &app,
                "POST",
                &format!("/teams/{team}/invitations"),
                Some(json!({"email": "dev@example.com", "role": "developer"})),
            )
            .await;
        let token = r.json()["path"]
            .as_str()
            .unwrap()
            .trim_start_matches("/invitations/")
            .to_string();
        let r = dev
            .call(&app, "POST", &format!("/invitations/{token}/accept"), None)
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let visible = || async {
            let mut v: Vec<i64> = dev.call(&app, "GET", "/servers", None).await.json()["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["server"]["id"].as_i64().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(visible().await, ids, "{n}");
        let members = format!("/teams/{team}/members");
        let set = |body: serde_json::Value| {
            let (owner, app, members) = (&owner, &app, members.clone());
            async move { owner.call(app, "PUT", &members, Some(body)).await }
        };
        // Bad narrowing: another team's server name, an owner narrowed.
        let r = set(json!({"email": "dev@example.com", "role": "developer", "servers": ["nope"]}))
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r =
            set(json!({"email": "owner@example.com", "role": "owner", "servers": ["shop"]})).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert_eq!(
            visible().await,
            ids,
            "{n}: a refused change narrowed anyway"
        );
        // The member's key is on both servers (as the app user) and on shop as root (as an admin).
        let dev_id = id_of(&app, "dev@example.com").await;
        let key = app
            .store
            .add_user_key(
                dev_id,
                "laptop",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDevLaptop dev",
                "SHA256:dev",
            )
            .await
            .unwrap();
        for (server, unix) in [
            (ids[0], "brokeforge"),
            (ids[1], "brokeforge"),
            (ids[0], "root"),
        ] {
            app.store
                .put_key_deployment(server, key.id, dev_id, unix, "active")
                .await
                .unwrap();
        }
        let removals = || async {
            let mut out = Vec::new();
            for s in &ids {
                for j in app.store.recent_jobs(*s, 20).await.unwrap() {
                    if j.kind == "user_key_remover" {
                        out.push((*s, j.payload["unix_user"].as_str().unwrap().to_string()));
                    }
                }
            }
            out.sort();
            out
        };
        let r = set(json!({"email": "dev@example.com", "role": "developer", "servers": ["shop"]}))
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(visible().await, vec![ids[0]], "{n}");
        // Narrowed away from blog, and a developer has no root: those two keys are taken off.
        assert_eq!(
            removals().await,
            vec![
                (ids[0], "root".to_string()),
                (ids[1], "brokeforge".to_string())
            ],
            "{n}"
        );
        let r = dev
            .call(&app, "GET", &format!("/servers/{}", ids[1]), None)
            .await;
        assert_eq!(r.status, 404, "{n}: {}", r.body);
        let r = dev
            .call(&app, "GET", &format!("/servers/{}/jobs", ids[1]), None)
            .await;
        assert_eq!(r.status, 404, "{n}: {}", r.body);
        assert_eq!(
            dev.call(&app, "GET", &format!("/servers/{}", ids[0]), None)
                .await
                .status,
            200
        );
        let listed = owner.call(&app, "GET", &members, None).await.json();
        let m = listed["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == "dev@example.com")
            .unwrap()
            .clone();
        assert_eq!(m["servers"], json!([ids[0]]), "{n}: {listed}");
        // A role change alone keeps the narrowing; [] lifts it.
        let r = set(json!({"email": "dev@example.com", "role": "viewer"})).await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(visible().await, vec![ids[0]], "{n}");
        let r = set(json!({"email": "dev@example.com", "role": "viewer", "servers": []})).await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(visible().await, ids, "{n}");
        // The teams page: the member's servers by name, changed by the form (empty: all).
        let Auth::Session { cookie, csrf } =
            session_of(&login(&app, "owner@example.com", "correct horse battery").await)
        else {
            unreachable!()
        };
        let page_set = |servers: &'static str| {
            let (app, cookie, csrf) = (&app, cookie.clone(), csrf.clone());
            let team = team.to_string();
            async move {
                form(
                    app,
                    "/teams",
                    &cookie,
                    &[
                        ("_csrf", csrf.as_str()),
                        ("op", "role"),
                        ("team", team.as_str()),
                        ("email", "dev@example.com"),
                        ("role", "developer"),
                        ("servers", servers),
                    ],
                )
                .await
            }
        };
        let r = page_set("blog").await;
        assert!(r.status < 400, "{n}: {} {}", r.status, r.body);
        assert_eq!(visible().await, vec![ids[1]], "{n}");
        let page = http(&app.addr, "GET", "/teams", &[("Cookie", &cookie)], "").await;
        assert!(page.body.contains("value=\"blog\""), "{n}: {}", page.body);
        // The header switches between the owner's teams (personal and agency).
        assert!(
            page.body
                .contains("<details class=\"menu\"><summary>Teams</summary>")
                && page
                    .body
                    .contains(&format!("<a href=\"/?team={team}\">agency</a>")),
            "{n}: {}",
            page.body
        );
        let r = page_set("").await;
        assert!(r.status < 400, "{n}: {} {}", r.status, r.body);
        assert_eq!(visible().await, ids, "{n}");
    }
}

/// Moving a server between teams: only into a team where the caller may make root-level changes; the new
/// team's members see it, the old team's channels and narrowing let go of it, and personal keys the new team
/// does not allow are taken off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_move_between_teams() {
    for app in apps().await {
        let n = app.name;
        let owner = user(&app, "owner@example.com", false).await;
        let dev = user(&app, "dev@example.com", false).await;
        let other = user(&app, "other@example.com", false).await;
        let agency = owner
            .call(&app, "POST", "/teams", Some(json!({"name": "agency"})))
            .await
            .json()["team"]["id"]
            .as_i64()
            .unwrap();
        let theirs = other
            .call(&app, "POST", "/teams", Some(json!({"name": "elsewhere"})))
            .await
            .json()["team"]["id"]
            .as_i64()
            .unwrap();
        // The server starts in the owner's personal team, with a rule telling a personal-team channel.
        let r = owner
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "shop", "public_ip": "203.0.113.60"})),
            )
            .await;
        let server = r.json()["server"]["id"].as_i64().unwrap();
        let personal = r.json()["server"]["team_id"].as_i64().unwrap();
        let r = owner
            .call(
                &app,
                "POST",
                &format!("/teams/{personal}/channels"),
                Some(json!({"name": "mine", "kind": "webhook", "url": "https://hooks.example.com/x"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        let r = owner
            .call(
                &app,
                "POST",
                &format!("/servers/{server}/alerts"),
                Some(json!({"metric": "load1", "above": 5, "channel": "mine"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        // The developer joins agency; their key is on the server as root (say, from before).
        let token = owner
            .call(
                &app,
                "POST",
                &format!("/teams/{agency}/invitations"),
                Some(json!({"email": "dev@example.com", "role": "developer"})),
            )
            .await
            .json()["path"]
            .as_str()
            .unwrap()
            .trim_start_matches("/invitations/")
            .to_string();
        dev.call(&app, "POST", &format!("/invitations/{token}/accept"), None)
            .await;
        let dev_id = id_of(&app, "dev@example.com").await;
        let key = app
            .store
            .add_user_key(
                dev_id,
                "laptop",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDevLaptop dev",
                "SHA256:dev",
            )
            .await
            .unwrap();
        for unix in ["brokeforge", "root"] {
            app.store
                .put_key_deployment(server, key.id, dev_id, unix, "active")
                .await
                .unwrap();
        }
        let path = format!("/servers/{server}/team");
        // Names are unique in a team: a second `shop` in the personal team is refused; with one in agency,
        // the first cannot move there.
        let r = owner
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "shop", "public_ip": "203.0.113.61"})),
            )
            .await;
        assert_eq!(r.status, 409, "{n}: {}", r.body);
        // (The store keeps names unique per creator too: the twin is the developer's.)
        let twin = app
            .store
            .create_server_in(
                agency,
                &brokeforge_store::NewServer {
                    user_id: dev_id,
                    name: "shop".into(),
                    public_ip: "203.0.113.61".into(),
                    ssh_port: 22,
                    host_key_fingerprint: None,
                },
            )
            .await
            .unwrap()
            .id;
        let r = owner
            .call(&app, "PUT", &path, Some(json!({"team": "agency"})))
            .await;
        assert_eq!(r.status, 409, "{n}: {}", r.body);
        let r = owner
            .call(&app, "DELETE", &format!("/servers/{twin}"), None)
            .await;
        assert!(r.status < 300, "{n}: {}", r.body);
        // Refused: a team of someone else's (not found), the team it is in.
        let r = owner
            .call(
                &app,
                "PUT",
                &path,
                Some(json!({"team": theirs.to_string()})),
            )
            .await;
        assert_eq!(r.status, 404, "{n}: {}", r.body);
        let r = owner
            .call(
                &app,
                "PUT",
                &path,
                Some(json!({"team": personal.to_string()})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert_eq!(
            dev.call(&app, "GET", &format!("/servers/{server}"), None)
                .await
                .status,
            404,
            "{n}"
        );
        let r = owner
            .call(&app, "PUT", &path, Some(json!({"team": "agency"})))
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(r.json()["server"]["team_id"], agency, "{n}");
        // The developer sees it now, and may not move it back.
        assert_eq!(
            dev.call(&app, "GET", &format!("/servers/{server}"), None)
                .await
                .status,
            200,
            "{n}"
        );
        let r = dev
            .call(&app, "PUT", &path, Some(json!({"team": "agency"})))
            .await;
        assert_eq!(r.status, 403, "{n}: {}", r.body);
        // The rule tells the new team's channels (all of them) instead of the old team's.
        let rules = owner
            .call(&app, "GET", &format!("/servers/{server}/alerts"), None)
            .await
            .json();
        assert_eq!(rules["alerts"][0]["channel"], Value::Null, "{n}: {rules}");
        // A developer has no root: that key goes; the app user's stays.
        let jobs: Vec<String> = app
            .store
            .recent_jobs(server, 20)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.kind == "user_key_remover")
            .map(|j| j.payload["unix_user"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(jobs, vec!["root".to_string()], "{n}");
    }
}
