//! The one command that reads a server's state, and the comparison of what it printed with what is wanted.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use brokeforge_core::shell_quote;
use sha2::{Digest, Sha256};

use super::super::firewall::{READ_COMMAND, RuleOrigin, parse_state};

use super::*;
use crate::services::sites::certificate::custom::chrono_like;

impl Expected {
    /// The one command that reads it all: markers `#BF# ...` per item, the firewall's state last.
    pub fn script(&self) -> String {
        let q = shell_quote;
        let mut s = String::from(
            "set +e\nexport LC_ALL=C\n\
             bf_file() { if [ ! -f \"$2\" ]; then echo \"#BF# file $1 missing\"; \
             elif [ \"$(sha256sum < \"$2\" | cut -c1-64)\" = \"$3\" ]; then echo \"#BF# file $1 ok\"; \
             else echo \"#BF# file $1 changed $(head -c ",
        );
        s.push_str(&DIFF_LIMIT.to_string());
        s.push_str(
            " \"$2\" | base64 -w0) $(wc -c < \"$2\")\"; fi; }\n\
             bf_sum() { if [ ! -f \"$2\" ]; then echo \"#BF# file $1 missing\"; \
             elif [ \"$(sha256sum < \"$2\" | cut -c1-64)\" = \"$3\" ]; then echo \"#BF# file $1 ok\"; \
             else echo \"#BF# file $1 changed\"; fi; }\n\
             bf_link() { t=$(readlink \"$2\"); if [ -z \"$t\" ]; then echo \"#BF# link $1 missing\"; \
             elif [ \"$t\" = \"$3\" ]; then echo \"#BF# link $1 ok\"; \
             else echo \"#BF# link $1 changed $(printf %s \"$t\" | base64 -w0)\"; fi; }\n",
        );
        for (i, (path, w)) in self.files.iter().enumerate() {
            let sum = hex::encode(Sha256::digest(w.value.as_bytes()));
            let f = if self.secret_files.contains(path) {
                "bf_sum"
            } else {
                "bf_file"
            };
            s.push_str(&format!("{f} {i} {} {sum}\n", q(path)));
        }
        for (i, (path, w)) in self.links.iter().enumerate() {
            s.push_str(&format!("bf_link {i} {} {}\n", q(path), q(&w.value)));
        }
        s.push_str("echo '#BF# packages'\n");
        if !self.packages.is_empty() {
            let names: Vec<String> = self.packages.iter().map(|p| q(&p.value)).collect();
            s.push_str(&format!(
                "dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' {} 2>/dev/null\n",
                names.join(" ")
            ));
        }
        s.push_str("echo '#BF# units'\n");
        for u in &self.units {
            s.push_str(&format!(
                "echo \"{u} $(systemctl is-enabled {u} 2>/dev/null | head -n 1) $(systemctl is-active {u} 2>/dev/null | head -n 1)\"\n",
                u = q(&u.value)
            ));
        }
        s.push_str("echo '#BF# users'\n");
        for u in &self.users {
            s.push_str(&format!(
                "id -u {u} >/dev/null 2>&1 && echo {u}\n",
                u = q(&u.value)
            ));
        }
        // A certificate's end as Unix seconds (openssl comes with ca-certificates, a base package).
        s.push_str("echo '#BF# certs'\n");
        for (i, c) in self.certs.iter().enumerate() {
            s.push_str(&format!(
                "if e=$(openssl x509 -noout -enddate -in {} 2>/dev/null); then echo \"{i} $(date -u -d \"${{e#notAfter=}}\" +%s)\"; else echo '{i} missing'; fi\n",
                q(&c.path)
            ));
        }
        s.push_str(
            "echo '#BF# sites-enabled'\nls -1A /etc/nginx/sites-enabled 2>/dev/null\n\
             echo '#BF# cron.d'\nls -1A /etc/cron.d 2>/dev/null | grep '^brokeforge-'\n\
             echo '#BF# firewall'\n",
        );
        s.push_str(READ_COMMAND);
        s.push_str("\nexit 0\n");
        s
    }

    /// Compare what the script printed with what is wanted.
    pub fn compare(&self, output: &str) -> DriftReport {
        let mut sections: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut found: BTreeMap<(String, usize), (String, String)> = BTreeMap::new();
        let mut section = "";
        for line in output.lines() {
            let Some(marker) = line.strip_prefix("#BF# ") else {
                sections.entry(section).or_default().push(line);
                continue;
            };
            let f: Vec<&str> = marker.splitn(4, ' ').collect();
            match f.as_slice() {
                [kind @ ("file" | "link"), i, state, rest @ ..] => {
                    if let Ok(i) = i.parse::<usize>() {
                        found.insert(
                            (kind.to_string(), i),
                            (state.to_string(), rest.first().copied().unwrap_or("").into()),
                        );
                    }
                }
                [name] => section = name,
                _ => {}
            }
        }
        let mut items = Vec::new();
        let item = |w: &Wanted, kind: &str, state: DriftState, detail: String| DriftItem {
            item: w.item.clone(),
            kind: kind.into(),
            what: w.what.clone(),
            state,
            detail,
            diff: None,
            repair: w.repair.clone(),
            by_hand: false,
        };
        for (i, (path, w)) in self.files.iter().enumerate() {
            let (state, rest) = found
                .get(&("file".to_string(), i))
                .cloned()
                .unwrap_or_else(|| ("missing".into(), String::new()));
            items.push(match state.as_str() {
                "ok" => item(w, "file", DriftState::Ok, path.clone()),
                "changed" if self.secret_files.contains(path) => item(
                    w,
                    "file",
                    DriftState::Changed,
                    format!("{path} was edited (not shown: it holds a secret)"),
                ),
                "changed" => {
                    let (b64, size) = rest.split_once(' ').unwrap_or((&rest, ""));
                    let size: usize = size.trim().parse().unwrap_or(0);
                    let mut it = item(w, "file", DriftState::Changed, format!("{path} was edited"));
                    if size <= DIFF_LIMIT {
                        let actual = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default();
                        it.diff = Some(diff(&w.value, &actual, path));
                    } else {
                        it.detail = format!("{path} was edited ({size} bytes: too long to show)");
                    }
                    it
                }
                _ => item(w, "file", DriftState::Missing, format!("{path} is gone")),
            });
        }
        for (i, (path, w)) in self.links.iter().enumerate() {
            let (state, rest) = found
                .get(&("link".to_string(), i))
                .cloned()
                .unwrap_or_else(|| ("missing".into(), String::new()));
            items.push(match state.as_str() {
                "ok" => item(w, "link", DriftState::Ok, path.clone()),
                "changed" => {
                    let target = base64::engine::general_purpose::STANDARD
                        .decode(rest.trim())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    item(
                        w,
                        "link",
                        DriftState::Changed,
                        format!("{path} points at {target}, not {}", w.value),
                    )
                }
                _ => item(w, "link", DriftState::Missing, format!("{path} is gone")),
            });
        }
        let installed: BTreeMap<&str, &str> = sections
            .get("packages")
            .into_iter()
            .flatten()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, s)| (n.trim(), s.trim()))
            .collect();
        for p in &self.packages {
            items.push(match installed.get(p.value.as_str()) {
                Some(s) if s.starts_with("ii") => item(p, "package", DriftState::Ok, String::new()),
                Some(s) => item(
                    p,
                    "package",
                    DriftState::Missing,
                    format!("{} is not installed (dpkg status {s}); install the service again", p.value),
                ),
                None => item(
                    p,
                    "package",
                    DriftState::Missing,
                    format!("{} is not installed; install the service again", p.value),
                ),
            });
        }
        let units: BTreeMap<&str, (&str, &str)> = sections
            .get("units")
            .into_iter()
            .flatten()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some((f.next()?, (f.next().unwrap_or(""), f.next().unwrap_or(""))))
            })
            .collect();
        for u in &self.units {
            let (enabled, active) = units.get(u.value.as_str()).copied().unwrap_or(("", ""));
            items.push(if active == "active" {
                item(u, "unit", DriftState::Ok, format!("{enabled}, active"))
            } else if enabled.is_empty() || enabled == "not-found" {
                item(u, "unit", DriftState::Missing, format!("{} does not exist", u.value))
            } else {
                item(
                    u,
                    "unit",
                    DriftState::Changed,
                    format!(
                        "{} is {} and {enabled}",
                        u.value,
                        if active.is_empty() { "unknown" } else { active }
                    ),
                )
            });
        }
        let users: BTreeSet<&str> = sections
            .get("users")
            .into_iter()
            .flatten()
            .map(|l| l.trim())
            .collect();
        for u in &self.users {
            items.push(if users.contains(u.value.as_str()) {
                item(u, "user", DriftState::Ok, String::new())
            } else {
                item(
                    u,
                    "user",
                    DriftState::Missing,
                    format!("there is no user {}", u.value),
                )
            });
        }
        let ends = cert_ends(output);
        let now = brokeforge_core::time::now_ms() / 1000;
        for (i, c) in self.certs.iter().enumerate() {
            let w = &c.wanted;
            let Some(&end) = ends.get(&i) else {
                items.push(item(
                    w,
                    "certificate",
                    DriftState::Missing,
                    format!("no readable certificate at {}", c.path),
                ));
                continue;
            };
            let day = chrono::DateTime::from_timestamp(end, 0)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| end.to_string());
            let days = (end - now).div_euclid(86_400);
            if days < CERT_WARN_DAYS {
                let when = if end <= now {
                    format!("expired on {day}")
                } else {
                    format!("expires on {day}, in {days} days")
                };
                let todo = if c.custom {
                    "upload a renewed certificate"
                } else {
                    "certbot has not renewed it: see `systemctl status certbot.timer` and `certbot renew --dry-run` on the server"
                };
                items.push(item(w, "certificate", DriftState::Changed, format!("{when}; {todo}")));
            } else {
                let mut detail = format!("expires on {day}, in {days} days");
                // certbot renews on the server by itself: the check brings the record up to date.
                if !w.value.is_empty() && Some(&w.value) != chrono_like(end).as_ref() {
                    detail.push_str(&format!(
                        " (renewed on the server; BrokeForge's record said {} and now follows)",
                        w.value
                    ));
                }
                items.push(item(w, "certificate", DriftState::Ok, detail));
            }
        }
        let unexpected = |item: String, kind: &str, what: String, detail: String| DriftItem {
            item,
            kind: kind.into(),
            what,
            state: DriftState::Unexpected,
            detail,
            diff: None,
            repair: None,
            by_hand: false,
        };
        for name in sections.get("sites-enabled").into_iter().flatten() {
            let name = name.trim();
            if !name.is_empty() && !self.enabled_vhosts.contains(name) {
                items.push(unexpected(
                    format!("vhost-enabled:{name}"),
                    "link",
                    format!("vhost {name}"),
                    format!("/etc/nginx/sites-enabled/{name} is not a site of BrokeForge's"),
                ));
            }
        }
        for name in sections.get("cron.d").into_iter().flatten() {
            let name = name.trim();
            if !name.is_empty() && !self.cron_files.contains(name) {
                items.push(unexpected(
                    format!("file:/etc/cron.d/{name}"),
                    "file",
                    format!("schedule {name}"),
                    format!("/etc/cron.d/{name} belongs to no site BrokeForge knows"),
                ));
            }
        }
        if self.firewall {
            let text = sections.get("firewall").map(|l| l.join("\n")).unwrap_or_default();
            let state = parse_state(&text, self.ssh_port);
            let fw = |item: &str, what: &str, st: DriftState, detail: String| DriftItem {
                item: format!("firewall:{item}"),
                kind: "firewall".into(),
                what: what.into(),
                state: st,
                detail,
                diff: None,
                repair: None,
                by_hand: false,
            };
            items.push(if state.active {
                fw("active", "ufw enabled", DriftState::Ok, String::new())
            } else {
                fw(
                    "active",
                    "ufw enabled",
                    DriftState::Changed,
                    "ufw is not active: the server accepts any connection".into(),
                )
            });
            for (port, name) in [(self.ssh_port.to_string(), "ssh"), ("80".into(), "http"), ("443".into(), "https")] {
                let there = state
                    .rules
                    .iter()
                    .any(|r| r.origin == RuleOrigin::Baseline && r.port == port);
                items.push(if there {
                    fw(&format!("baseline:{port}"), &format!("firewall rule {name}"), DriftState::Ok, format!("allow {port}/tcp"))
                } else {
                    fw(
                        &format!("baseline:{port}"),
                        &format!("firewall rule {name}"),
                        DriftState::Missing,
                        format!("allow {port}/tcp from anywhere is gone; add it with `brokeforge firewall add`"),
                    )
                });
            }
            for r in &state.rules {
                if r.origin == RuleOrigin::Other && !self.service_ports.contains(&r.port) {
                    items.push(unexpected(
                        format!("firewall:{}", r.id),
                        "firewall",
                        format!("firewall rule {}", r.id),
                        format!(
                            "{} {}/{} from {} ({}) was not made by BrokeForge",
                            r.action, r.port, r.protocol, r.source, r.direction
                        ),
                    ));
                }
            }
        }
        for i in &mut items {
            i.by_hand = self.by_hand.contains(&i.item);
        }
        DriftReport::new(items)
    }
}

/// Each certificate's end (Unix seconds) by its index, from the `#BF# certs` section of the check's output.
fn cert_ends(output: &str) -> BTreeMap<usize, i64> {
    output
        .lines()
        .skip_while(|l| *l != "#BF# certs")
        .skip(1)
        .take_while(|l| !l.starts_with("#BF# "))
        .filter_map(|l| {
            let (i, end) = l.trim().split_once(' ')?;
            Some((i.parse().ok()?, end.parse().ok()?))
        })
        .collect()
}

impl Expected {
    /// Sites whose certificate on the server ends at another time than BrokeForge recorded (certbot renewed
    /// it), with the end to record.
    pub(super) fn renewed(&self, output: &str) -> Vec<(i64, String)> {
        let ends = cert_ends(output);
        self.certs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let end = chrono_like(*ends.get(&i)?)?;
                (end != c.wanted.value).then_some((c.site_id, end))
            })
            .collect()
    }
}

/// Lines that look like they carry a secret keep their name and lose their value.
fn mask(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let secret = ["password", "passwd", "secret", "token", "api_key", "apikey", "private"]
        .iter()
        .any(|w| lower.contains(w));
    if !secret {
        return line.to_string();
    }
    match line.find(['=', ':']) {
        Some(i) => format!("{} ********", &line[..=i]),
        None => {
            let keep: String = line.chars().take(1).collect();
            format!("{keep} ******** (masked)")
        }
    }
}

/// A unified diff from BrokeForge's rendering to the server's file, secrets masked.
pub fn diff(wanted: &str, actual: &str, path: &str) -> String {
    let d = similar::TextDiff::from_lines(wanted, actual);
    let text = d
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (BrokeForge)"), &format!("{path} (server)"))
        .to_string();
    text.lines().map(mask).collect::<Vec<_>>().join("\n")
}
