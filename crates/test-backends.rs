//! Build script shared by the crates whose tests need a backend that is not always there: it turns the
//! test switches into cfgs, so a test whose backend is missing is reported by the test harness as
//! `ignored, <what to set>` (visible in every run's output) instead of passing without doing anything.

fn main() {
    for (var, cfg) in [
        ("BROKEFORGE_E2E", "bf_e2e"),
        ("BROKEFORGE_BROWSER_TESTS", "bf_browser"),
        ("BROKEFORGE_TEST_POSTGRES_URL", "bf_postgres"),
        ("BROKEFORGE_TEST_SSHD", "bf_sshd"),
        ("BROKEFORGE_TEST_SMTP", "bf_smtp"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0") {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    println!("cargo::rerun-if-changed=../test-backends.rs");
}
