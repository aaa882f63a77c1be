//! Two-factor sign-in through the API and the pages: set up with the app's first code, then a code is needed
//! to sign in, each code works once (a replay in the same window is refused), a recovery code works once,
//! turning it off takes the password and a code.

use serde_json::json;

use super::*;

/// The code an authenticator app shows `steps` periods from now for this base32 secret.
pub(super) fn code_for(secret: &str, steps: i64) -> String {
    let raw = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, secret).unwrap();
    let now = brokeforge_core::time::now_ms() / 1000;
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, raw)
        .unwrap()
        .generate((now + steps * 30) as u64)
}

/// A code none of the accepted periods (previous, current, next) has.
fn wrong_code(secret: &str) -> String {
    let taken = [
        code_for(secret, -1),
        code_for(secret, 0),
        code_for(secret, 1),
    ];
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !taken.contains(c))
        .unwrap()
}

async fn login_with(app: &App, email: &str, password: &str, code: &str) -> Resp {
    http(
        &app.addr,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &json!({"email": email, "password": password, "code": code}).to_string(),
    )
    .await
}

#[tokio::test]
async fn two_factor_codes_are_needed_and_work_once() {
    for app in apps().await {
        let n = app.name;
        let email = "tf@example.com";
        let pw = "correct horse battery";
        let auth = user(&app, email, false).await;
        let r = auth
            .call(&app, "POST", "/account/2fa", Some(json!({})))
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let secret = r.json()["secret"].as_str().unwrap().to_string();
        let uri = r.json()["otpauth_uri"].as_str().unwrap().to_string();
        assert!(
            uri.starts_with("otpauth://totp/BrokeForge:tf%40example.com?secret=")
                && uri.contains("&issuer=BrokeForge"),
            "{uri}"
        );
        // Not on until the app's code confirms it.
        let r = auth
            .call(
                &app,
                "POST",
                "/account/2fa/confirm",
                Some(json!({"code": wrong_code(&secret)})),
            )
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (422, "invalid_input"),
            "{n}: {}",
            r.body
        );
        assert_eq!(login(&app, email, pw).await.status, 200, "{n}");

        let first = code_for(&secret, 0);
        let r = auth
            .call(
                &app,
                "POST",
                "/account/2fa/confirm",
                Some(json!({"code": first})),
            )
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let codes: Vec<String> = r.json()["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(codes.len(), 10);
        let me = auth.call(&app, "GET", "/me", None).await;
        assert_eq!(me.json()["user"]["two_factor"], true, "{n}");

        // The password alone is not enough; the code the setup used is spent.
        let r = login(&app, email, pw).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "two_factor_required"),
            "{n}"
        );
        let r = login_with(&app, email, pw, &first).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "bad_credentials"),
            "{n}: replayed"
        );
        // The next period's code (a phone a little ahead) works, once.
        let next = code_for(&secret, 1);
        assert_eq!(login_with(&app, email, pw, &next).await.status, 200, "{n}");
        let r = login_with(&app, email, pw, &next).await;
        assert_eq!(r.status, 401, "{n}: the same code twice");
        // A wrong password with a right code is still wrong.
        let r = login_with(&app, email, "wrong password!", &code_for(&secret, 1)).await;
        assert_eq!(r.status, 401, "{n}");
        // A recovery code (typed in upper case with spaces) works once.
        let typed = codes[0].to_uppercase().replace('-', " ");
        assert_eq!(login_with(&app, email, pw, &typed).await.status, 200, "{n}");
        assert_eq!(
            login_with(&app, email, pw, &codes[0]).await.status,
            401,
            "{n}"
        );

        // Off: the password and a code are asked for.
        let r = auth
            .call(
                &app,
                "POST",
                "/account/2fa/disable",
                Some(json!({"password": "wrong password!", "code": codes[1]})),
            )
            .await;
        assert_eq!(r.status, 401, "{n}");
        let r = auth
            .call(
                &app,
                "POST",
                "/account/2fa/disable",
                Some(json!({"password": pw, "code": codes[1]})),
            )
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(login(&app, email, pw).await.status, 200, "{n}");
        // Nothing secret in the database in the clear: only sealed secrets and hashes.
        let dump = app.store.users().await.unwrap();
        assert!(!format!("{dump:?}").contains(&secret));
    }
}

/// The pages: the login form has the code field, the account page sets it up with a QR code and shows the
/// recovery codes once, and signing in through the form then needs the code.
#[tokio::test]
async fn two_factor_through_the_pages() {
    for app in apps().await {
        let n = app.name;
        user(&app, "page-tf@example.com", false).await;
        let r = page_form(
            &app,
            "/login",
            &[
                ("email", "page-tf@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        let cookie = cookie_of(&r);
        let account = http(&app.addr, "GET", "/account", &[("Cookie", &cookie)], "").await;
        assert!(
            account.body.contains("Two-factor sign-in")
                && account.body.contains("/account/2fa/setup")
        );
        let csrf = csrf_in(&account.body);
        let setup = form(&app, "/account/2fa/setup", &cookie, &[("_csrf", &csrf)]).await;
        assert_eq!(setup.status, 200, "{n}: {}", setup.body);
        assert!(setup.body.contains("<svg"), "{n}: no QR code");
        let secret = setup
            .body
            .split("id=\"totp-secret\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap()
            .to_string();
        let on = form(
            &app,
            "/account/2fa/confirm",
            &cookie,
            &[("_csrf", &csrf), ("code", &code_for(&secret, 0))],
        )
        .await;
        assert_eq!(on.status, 200, "{n}: {}", on.body);
        assert!(on.body.contains("id=\"recovery-codes\""), "{n}");
        let again = http(&app.addr, "GET", "/account", &[("Cookie", &cookie)], "").await;
        assert!(
            !again.body.contains("id=\"recovery-codes\""),
            "{n}: shown twice"
        );
        assert!(again.body.contains("10 recovery codes left"), "{n}");

        let r = page_form(
            &app,
            "/login",
            &[
                ("email", "page-tf@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
        assert_eq!(r.status, 401, "{n}");
        assert!(r.body.contains("two-factor"), "{n}: {}", r.body);
        let r = page_form(
            &app,
            "/login",
            &[
                ("email", "page-tf@example.com"),
                ("password", "correct horse battery"),
                ("code", &code_for(&secret, 1)),
            ],
        )
        .await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
    }
}
