//! The real binary, driven as a user would.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn bin(data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"));
    c.env("BROKEFORGE_DATA_DIR", data)
        .env_remove("BROKEFORGE_DATABASE_URL")
        .env_remove("BROKEFORGE_MASTER_KEY");
    c
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("serve") && text.contains("migrate") && text.contains("BROKEFORGE_DATA_DIR"),
        "{text}"
    );
    let bad = bin(dir.path()).arg("frobnicate").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn migrate_creates_the_database_and_a_private_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("brokeforge.db").exists());
    let key = dir.path().join("master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Running again keeps the same key and succeeds.
    let before = std::fs::read_to_string(&key).unwrap();
    assert!(
        bin(dir.path())
            .arg("migrate")
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), before);

    // Another key for the same database is refused with advice.
    let out = bin(dir.path())
        .arg("migrate")
        .env("BROKEFORGE_MASTER_KEY", "11".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master key does not match"), "{err}");
    let out = bin(dir.path())
        .arg("migrate")
        .env("BROKEFORGE_MASTER_KEY", "nothex")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hexadecimal"));
}

#[test]
fn serve_reports_health() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    // SIGTERM shuts down gracefully.
    send_sigterm(child.id());
    let status = child.wait().unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""database":"ok""#), "{resp}");
    assert!(status.success(), "{status:?}");
}

fn send_sigterm(pid: u32) {
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
}
