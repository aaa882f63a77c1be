//! `brokeforge account 2fa` and `brokeforge login --code` against a real `serve`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use super::{Panel, text};

fn code_for(secret: &str, steps: i64) -> String {
    let raw = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, secret).unwrap();
    let now = brokeforge_core::time::now_ms() / 1000;
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, raw)
        .unwrap()
        .generate((now + steps * 30) as u64)
}

/// Enabling prints the URI, asks for the app's code and prints ten recovery codes; then signing in from the
/// CLI needs `--code`, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_two_factor_and_login_with_a_code() {
    let p = Panel::start().await;
    let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args(["account", "2fa", "enable"])
        .env("BROKEFORGE_URL", &p.url)
        .env("BROKEFORGE_TOKEN", &p.token)
        .env("XDG_CONFIG_HOME", p.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut uri = String::new();
    out.read_line(&mut uri).unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap()
        .to_string();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", code_for(&secret, 0)).as_bytes())
        .unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(c.wait().unwrap().success(), "{rest}");
    assert_eq!(rest.lines().count(), 10, "{rest}");

    let status = p.cli(&["account", "2fa", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("is on"),
        "{}",
        text(&status)
    );
    let login = |code: Option<&str>| {
        let home = tempfile::tempdir().unwrap();
        let mut args = vec![
            "login",
            "--url",
            p.url.as_str(),
            "--email",
            "ops@example.com",
            "--password-stdin",
        ];
        if let Some(c) = code {
            args.extend(["--code", c]);
        }
        let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(&args)
            .env("XDG_CONFIG_HOME", home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(b"a long enough password\n")
            .unwrap();
        c.wait_with_output().unwrap()
    };
    let without = login(None);
    assert!(!without.status.success());
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("--code"),
        "{}",
        text(&without)
    );
    let with = login(Some(&code_for(&secret, 1)));
    assert!(with.status.success(), "{}", text(&with));
    let first_recovery = rest.lines().next().unwrap().trim().to_string();
    let by_recovery = login(Some(&first_recovery));
    assert!(by_recovery.status.success(), "{}", text(&by_recovery));
    assert!(
        !login(Some(&first_recovery)).status.success(),
        "a recovery code worked twice"
    );
}
