//! How `brokeforge site list` and `site show` print sites for people (`--json` prints the API's answer).

use serde_json::Value;

/// The site's type runs PHP (its PHP version and pool mean something).
fn runs_php(cfg: &Value) -> bool {
    matches!(
        cfg["type"].as_str().unwrap_or("php"),
        "php" | "laravel" | "wordpress"
    )
}

pub fn print_sites(v: &Value) {
    for s in v["sites"].as_array().into_iter().flatten() {
        let cfg = &s["configuration"];
        let runs = match cfg["type"].as_str().unwrap_or("php") {
            "php" | "laravel" | "wordpress" => format!(
                "{} {}",
                cfg["type"].as_str().unwrap_or("php"),
                s["php_version"].as_str().unwrap_or("-")
            ),
            "node" | "proxy" => format!(
                "{} :{}",
                cfg["type"].as_str().unwrap_or_default(),
                cfg["proxy_port"]
            ),
            other => other.to_string(),
        };
        println!(
            "{:<6} {:<36} {:<14} {}",
            s["id"],
            s["domain"].as_str().unwrap_or_default(),
            runs,
            s["status"].as_str().unwrap_or_default()
        );
    }
}

pub fn print_site(v: &Value) {
    let s = &v["site"];
    let cfg = &s["configuration"];
    println!(
        "{} (id {}) {}",
        s["domain"].as_str().unwrap_or_default(),
        s["id"],
        s["status"].as_str().unwrap_or_default()
    );
    println!("  type         {}", cfg["type"].as_str().unwrap_or("php"));
    match cfg["type"].as_str().unwrap_or("php") {
        "php" | "laravel" | "wordpress" => println!(
            "  php          {}",
            s["php_version"].as_str().unwrap_or("-")
        ),
        "node" | "proxy" => println!("  port         {}", cfg["proxy_port"]),
        _ => {}
    }
    println!(
        "  root         {}",
        s["document_root"].as_str().unwrap_or_default()
    );
    println!(
        "  runs as      {}",
        if cfg["isolated"].as_bool().unwrap_or(false) {
            format!("site{} (isolated)", s["id"])
        } else {
            "brokeforge (shared)".to_string()
        }
    );
    if cfg["isolated"].as_bool().unwrap_or(false) && runs_php(cfg) {
        println!(
            "  php pool     pm {}, at most {} workers",
            cfg["pool"]["pm"].as_str().unwrap_or("ondemand"),
            cfg["pool"]["max_children"]
        );
    }
    println!(
        "  repository   {}",
        cfg["repository"]["url"].as_str().unwrap_or("none")
    );
    println!(
        "  live release {}",
        cfg["current_release"].as_str().unwrap_or("none yet")
    );
    let cert = &cfg["certificate"];
    if cert.is_object() {
        println!(
            "  https        {} (expires {})",
            cert["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            cert["expires"].as_str().unwrap_or("unknown")
        );
    } else {
        println!("  https        none (plain HTTP)");
    }
}
