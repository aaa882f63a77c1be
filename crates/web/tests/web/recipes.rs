//! Recipes over several servers (in-process SSH servers): tags make the set, the plan shows it, a failure
//! stops new servers at the threshold and the run shows which; resume finishes the rest; outsiders see
//! nothing.

use brokeforge_core::CredentialKind;

use super::*;

/// Wait until the run is no longer moving: not running, or running with nothing queued (a condition, not a
/// time).
async fn settled(app: &App, who: &Auth, run: i64, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        let r = who
            .call(app, "GET", &format!("/recipe-runs/{run}"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        last = r.json();
        let busy = last["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| matches!(s["state"].as_str(), Some("queued" | "running")));
        if last["run"]["status"] == want && !busy {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run} did not become {want}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipe_runs_in_waves_stops_at_the_threshold_and_resumes() {
    for app in apps().await {
        let n = app.name;
        let alice = user(&app, "chef@example.com", false).await;
        let bob = user(&app, "outsider@example.com", false).await;
        let mut hosts = Vec::new();
        let mut ids = Vec::new();
        for i in 1..=3 {
            let (ssh, server) = server_on_test_ssh(
                &app,
                "chef@example.com",
                &format!("r{i}"),
                CredentialKind::User,
            )
            .await;
            let r = alice
                .call(
                    &app,
                    "PUT",
                    &format!("/servers/{}/tags", server.id),
                    Some(json!({"add": ["web"]})),
                )
                .await;
            assert_eq!(r.status, 200, "{n}: {}", r.body);
            assert_eq!(r.json()["tags"], json!(["web"]), "{n}");
            ids.push(server.id);
            hosts.push(ssh);
        }
        let r = alice
            .call(
                &app,
                "PUT",
                &format!("/servers/{}/tags", ids[0]),
                Some(json!({"add": ["Bad Tag"]})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        // The second server's part fails (exit 3).
        std::fs::write(hosts[1].dir().join("fail-here"), "").unwrap();

        let script = "if [ -e fail-here ]; then echo 'no luck' >&2; exit 3; fi\ntouch ran; echo \"ran as $(id -un)\"\n";
        let r = alice
            .call(
                &app,
                "POST",
                "/recipes",
                Some(json!({"name": "check", "script": script, "user": "worker"})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = alice
            .call(
                &app,
                "POST",
                "/recipes",
                Some(json!({"name": "check", "script": script})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        assert_eq!(r.json()["recipe"]["run_as"], "brokeforge", "{n}");

        let run_body = json!({"tag": "web", "parallel": 1, "canary": 1, "max_failures": 0});
        let mut plan_body = run_body.clone();
        plan_body["plan"] = json!(true);
        let r = alice
            .call(&app, "POST", "/recipes/check/runs", Some(plan_body))
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let plan = r.json()["plan"].clone();
        let planned: Vec<(&str, &str)> = plan["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap(), s["wave"].as_str().unwrap()))
            .collect();
        assert_eq!(
            planned,
            [("r1", "canary"), ("r2", "rest"), ("r3", "rest")],
            "{n}"
        );
        assert!(
            hosts.iter().all(|h| !h.dir().join("ran").exists()),
            "{n}: the plan ran something"
        );
        let r = alice
            .call(
                &app,
                "POST",
                "/recipes/check/runs",
                Some(json!({"tag": "web", "all": true})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}: two ways of choosing: {}", r.body);

        let r = alice
            .call(&app, "POST", "/recipes/check/runs", Some(run_body))
            .await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        let run = r.json()["run"]["id"].as_i64().unwrap();
        let view = settled(&app, &alice, run, "stopped").await;
        let states: Vec<(&str, &str, Value)> = view["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap(),
                    s["shown_state"].as_str().unwrap(),
                    s["exit_code"].clone(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [
                ("r1", "done", json!(0)),
                ("r2", "failed", json!(3)),
                ("r3", "skipped", Value::Null)
            ],
            "{n}: {view}"
        );
        assert!(
            hosts[0].dir().join("ran").exists() && !hosts[2].dir().join("ran").exists(),
            "{n}"
        );
        // The failed server's job holds its output.
        let job = view["servers"][1]["job_id"].as_i64().unwrap();
        let logs = app.store.logs(ids[1], 0).await.unwrap();
        assert!(
            logs.iter()
                .any(|l| l.job_id == Some(job) && l.chunk.contains("no luck")),
            "{n}: the failure's output is not in its job's log"
        );

        // A developer of the team may not run a root recipe (refused before anything is stored), and a
        // member narrowed to r1 plans over r1 alone.
        let r = alice
            .call(
                &app,
                "POST",
                "/recipes",
                Some(json!({"name": "rooty", "script": "id -un\n", "user": "root"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        let rooty = r.json()["recipe"]["id"].as_i64().unwrap();
        let carol = user(&app, "dev@example.com", false).await;
        let owner = app
            .store
            .user_by_email("chef@example.com")
            .await
            .unwrap()
            .unwrap();
        let dev = app
            .store
            .user_by_email("dev@example.com")
            .await
            .unwrap()
            .unwrap();
        let team = app.store.personal_team(owner.id).await.unwrap();
        app.store
            .put_member(
                team,
                dev.id,
                brokeforge_core::TeamRole::Developer,
                Some(&ids[..1]),
            )
            .await
            .unwrap();
        let r = carol
            .call(
                &app,
                "POST",
                "/recipes/rooty/runs",
                Some(json!({"all": true})),
            )
            .await;
        assert_eq!(r.status, 403, "{n}: {}", r.body);
        assert!(
            app.store
                .recipe_runs_of(&[rooty], 100)
                .await
                .unwrap()
                .is_empty(),
            "{n}: a refused run was stored"
        );
        let r = carol
            .call(
                &app,
                "POST",
                "/recipes/check/runs",
                Some(json!({"all": true, "plan": true})),
            )
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let plan = r.json();
        let names: Vec<&str> = plan["plan"]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["r1"], "{n}");

        // Outsiders see nothing of it.
        let r = bob
            .call(&app, "GET", &format!("/recipe-runs/{run}"), None)
            .await;
        assert_eq!(r.status, 404, "{n}");
        let r = bob
            .call(&app, "POST", &format!("/recipe-runs/{run}/resume"), None)
            .await;
        assert_eq!(r.status, 404, "{n}");
        let r = bob
            .call(
                &app,
                "POST",
                "/recipes/check/runs",
                Some(json!({"all": true})),
            )
            .await;
        assert_eq!(r.status, 404, "{n}");
        assert!(
            bob.call(&app, "GET", "/recipe-runs", None).await.json()["runs"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{n}"
        );

        // Resume: the rest runs; the run ends failed (one server did).
        let r = alice
            .call(&app, "POST", &format!("/recipe-runs/{run}/resume"), None)
            .await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        let view = settled(&app, &alice, run, "failed").await;
        assert_eq!(view["servers"][2]["state"], "done", "{n}: {view}");
        assert_eq!(view["summary"], json!({"done": 2, "failed": 1}), "{n}");
        assert!(hosts[2].dir().join("ran").exists(), "{n}");
        let r = alice
            .call(&app, "POST", &format!("/recipe-runs/{run}/resume"), None)
            .await;
        assert_eq!(r.status, 409, "{n}: a finished run resumed: {}", r.body);
    }
}
