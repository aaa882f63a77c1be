//! Firewall rules (`FirewallRuleInstaller`, `FirewallRuleRemover`): ufw on the server is the truth. BrokeForge
//! reads the rules from ufw's own rule files (`/etc/ufw/user*.rules`, whose `### tuple ###` lines are ufw's
//! machine-readable form of each rule), tags the rules it adds with a comment `brokeforge:ID NAME`, and removes
//! only those and its own baseline rules: rules someone else made are shown and left alone, and the SSH rule
//! BrokeForge reaches the server through is never removed.

use std::net::IpAddr;

use brokeforge_core::{CredentialKind, ServiceType, ValidationError, shell_quote};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base::package::{Gather, Package, PackageInstaller, PackageRemover};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(FirewallRuleInstaller);
    r.remover(FirewallRuleRemover);
}

milestones! {
    pub enum FirewallRuleInstallerMilestones {
        AddRule => ("add_rule", "Adding the firewall rule"),
        Complete => ("complete", "Firewall rule added"),
    }
}

milestones! {
    pub enum FirewallRuleRemoverMilestones {
        RemoveRule => ("remove_rule", "Removing the firewall rule"),
        Complete => ("complete", "Firewall rule removed"),
    }
}

/// The comment prefix of rules BrokeForge added.
const TAG: &str = "brokeforge:";

/// Reads ufw's state in one command: the status line, then each rule file's tuples under a marker.
pub const READ_COMMAND: &str = "LC_ALL=C ufw status | head -n 1; \
     for f in /etc/ufw/user.rules /etc/ufw/user6.rules; do echo \"### file $f\"; \
     grep '^### tuple ###' \"$f\" || true; done";

/// A rule as the user asks for it (and as a removal names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuleSpec {
    /// What the rule is for; shown in lists and kept in ufw's comment.
    #[serde(default)]
    pub name: String,
    /// `allow` or `deny` (BrokeForge adds these; ufw's `reject` and `limit` are shown when others made them).
    #[serde(default = "default_action")]
    pub action: String,
    /// `tcp`, `udp` or `any`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// A port (`8080`) or a range (`8000-8100` or `8000:8100`).
    pub port: String,
    /// An address or CIDR network; empty or `any` for anywhere.
    #[serde(default)]
    pub source: String,
}

fn default_action() -> String {
    "allow".into()
}
fn default_protocol() -> String {
    "tcp".into()
}

/// A rule to add: the id BrokeForge gives it (kept in ufw's comment) and what it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddRuleRequest {
    pub id: String,
    #[serde(flatten)]
    pub rule: RuleSpec,
}

/// A rule to remove, as read from the server just before: its id and what ufw must delete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveRuleRequest {
    pub id: String,
    #[serde(flatten)]
    pub rule: RuleSpec,
    /// ufw's comment on the rule (empty for baseline rules), so the delete names the same rule.
    #[serde(default)]
    pub comment: String,
}

/// A checked rule: every part safe to put on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub action: String,
    /// `None` for any protocol.
    pub protocol: Option<String>,
    /// ufw's form: `8080` or `8000:8100`.
    pub port: String,
    /// A CIDR network or `None` for anywhere.
    pub source: Option<String>,
}

impl Rule {
    /// The ufw arguments after the action, in its extended syntax (the same for add and delete).
    fn args(&self) -> String {
        let mut a = String::new();
        if let Some(p) = &self.protocol {
            a.push_str(&format!("proto {p} "));
        }
        a.push_str(&format!(
            "from {} to any port {}",
            self.source.as_deref().unwrap_or("any"),
            self.port
        ));
        a
    }

    /// Whether the rule covers `port` (for any protocol that includes TCP).
    pub fn covers(&self, port: u16) -> bool {
        if self.protocol.as_deref() == Some("udp") {
            return false;
        }
        let (lo, hi) = port_bounds(&self.port);
        (lo..=hi).contains(&port)
    }
}

fn port_bounds(port: &str) -> (u16, u16) {
    match port.split_once(':') {
        Some((a, b)) => (a.parse().unwrap_or(0), b.parse().unwrap_or(0)),
        None => {
            let p = port.parse().unwrap_or(0);
            (p, p)
        }
    }
}

/// Longest rule name.
pub const MAX_NAME: usize = 48;

/// The id of a rule BrokeForge adds: 8 random hex digits.
pub fn new_id() -> Result<String, PackageError> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| ValidationError::new("id", e.to_string()))?;
    Ok(hex::encode(b))
}

fn check_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > 16 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ValidationError::new("rule", "not a firewall rule id"));
    }
    Ok(())
}

/// Check a rule; `require_name` for rules BrokeForge adds (removals of baseline rules carry none).
pub fn validate(spec: &RuleSpec, require_name: bool) -> Result<Rule, ValidationError> {
    let name = spec.name.trim();
    if require_name && name.is_empty() {
        return Err(ValidationError::new(
            "name",
            "give the rule a name (what it is for)",
        ));
    }
    if name.chars().count() > MAX_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c))
    {
        return Err(ValidationError::new(
            "name",
            format!("at most {MAX_NAME} letters, digits, spaces, dots, dashes or underscores"),
        ));
    }
    let action = spec.action.trim().to_ascii_lowercase();
    if !matches!(action.as_str(), "allow" | "deny" | "reject" | "limit") {
        return Err(ValidationError::new("action", "allow or deny"));
    }
    if require_name && !matches!(action.as_str(), "allow" | "deny") {
        return Err(ValidationError::new("action", "allow or deny"));
    }
    let protocol = match spec.protocol.trim().to_ascii_lowercase().as_str() {
        "tcp" => Some("tcp".to_string()),
        "udp" => Some("udp".to_string()),
        "any" | "" => None,
        _ => return Err(ValidationError::new("protocol", "tcp, udp or any")),
    };
    let port = spec.port.trim();
    let bad_port = || {
        ValidationError::new(
            "port",
            format!("`{port}`: a port from 1 to 65535, or a range such as 8000-8100"),
        )
    };
    let number = |s: &str| -> Result<u16, ValidationError> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_port());
        }
        match s.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(bad_port()),
        }
    };
    let port = match port.split_once(['-', ':']) {
        Some((a, b)) => {
            let (lo, hi) = (number(a.trim())?, number(b.trim())?);
            if lo >= hi {
                return Err(ValidationError::new(
                    "port",
                    format!("`{port}`: the range must go from the lower port to the higher"),
                ));
            }
            if protocol.is_none() {
                return Err(ValidationError::new(
                    "protocol",
                    "a port range needs a protocol: tcp or udp",
                ));
            }
            format!("{lo}:{hi}")
        }
        None => number(port)?.to_string(),
    };
    let source = parse_source(&spec.source)?;
    Ok(Rule {
        name: name.to_string(),
        action,
        protocol,
        port,
        source,
    })
}

/// An address or CIDR network (normalised to the network's form); `None` for anywhere.
pub fn parse_source(value: &str) -> Result<Option<String>, ValidationError> {
    let raw = value.trim();
    if raw.is_empty() || raw.eq_ignore_ascii_case("any") || raw.eq_ignore_ascii_case("anywhere") {
        return Ok(None);
    }
    let bad = || {
        ValidationError::new(
            "source",
            format!("`{raw}` is not an IP address or CIDR network (such as 10.0.0.0/8)"),
        )
    };
    let (ip, prefix) = match raw.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (raw, None),
    };
    let addr: IpAddr = ip.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits: u8 = match prefix {
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse().map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
        None => max,
    };
    if bits > max {
        return Err(bad());
    }
    if bits == 0 {
        return Ok(None);
    }
    // The network itself, as ufw would store it.
    let net = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Ok(Some(if bits == max {
        net.to_string()
    } else {
        format!("{net}/{bits}")
    }))
}

/// Where a rule on the server came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleOrigin {
    /// Added through BrokeForge's firewall rules (tagged).
    Brokeforge,
    /// Base provisioning's rules: SSH, HTTP, HTTPS.
    Baseline,
    /// Made by someone or something else (including a database's remote-access rules): left alone.
    Other,
}

/// A rule as ufw has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FirewallRule {
    /// BrokeForge's id for rules it added; a digest of the rule for the others (stable while it is there).
    pub id: String,
    pub name: String,
    pub action: String,
    /// `tcp`, `udp` or `any`.
    pub protocol: String,
    /// `8080`, `8000:8100`, `80,443` or `any`.
    pub port: String,
    /// A network, or `anywhere`.
    pub source: String,
    /// `in` or `out` (with an interface when the rule names one).
    pub direction: String,
    /// `v4`, `v6` or both.
    pub families: Vec<String>,
    pub origin: RuleOrigin,
    /// Whether BrokeForge will remove it, and if not, why.
    pub removable: bool,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub note: String,
    /// ufw's comment on the rule.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub comment: String,
}

/// The firewall as read from the server.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FirewallState {
    /// ufw is enabled.
    pub active: bool,
    pub rules: Vec<FirewallRule>,
}

impl FirewallRule {
    /// The rule as a removal names it.
    pub fn spec(&self) -> RuleSpec {
        RuleSpec {
            name: self.name.clone(),
            action: self.action.clone(),
            protocol: self.protocol.clone(),
            port: self.port.clone(),
            source: if self.source == "anywhere" {
                String::new()
            } else {
                self.source.clone()
            },
        }
    }
}

fn is_anywhere(addr: &str) -> bool {
    addr == "0.0.0.0/0" || addr == "::/0"
}

/// Parse what [`READ_COMMAND`] printed. `ssh_port` is the port BrokeForge reaches the server on.
pub fn parse_state(text: &str, ssh_port: u16) -> FirewallState {
    let active = text
        .lines()
        .next()
        .is_some_and(|l| l.trim() == "Status: active");
    let mut family = "v4";
    let mut rules: Vec<FirewallRule> = Vec::new();
    for line in text.lines() {
        if let Some(file) = line.strip_prefix("### file ") {
            family = if file.contains("user6") { "v6" } else { "v4" };
            continue;
        }
        let Some(rest) = line.strip_prefix("### tuple ###") else {
            continue;
        };
        let (body, comment) = match rest.split_once(" comment=") {
            Some((b, hexed)) => (
                b,
                hex::decode(hexed.trim())
                    .ok()
                    .and_then(|c| String::from_utf8(c).ok())
                    .unwrap_or_default(),
            ),
            None => (rest, String::new()),
        };
        let f: Vec<&str> = body.split_whitespace().collect();
        // action proto dport dst sport src [dapp sapp] direction
        if f.len() != 7 && f.len() != 9 {
            continue;
        }
        let action = f[0].split('_').next().unwrap_or(f[0]).to_string();
        let (protocol, port, dst, src) = (f[1], f[2], f[3], f[5]);
        let direction = f[f.len() - 1].replace('_', " on ");
        let source = if is_anywhere(src) {
            "anywhere".to_string()
        } else {
            src.to_string()
        };
        let dst_any = is_anywhere(dst);
        let (id, name, origin) = match comment.strip_prefix(TAG) {
            Some(tagged) => {
                let (id, name) = tagged.split_once(' ').unwrap_or((tagged, ""));
                (id.to_string(), name.to_string(), RuleOrigin::Brokeforge)
            }
            None => {
                let baseline = action == "allow"
                    && protocol == "tcp"
                    && source == "anywhere"
                    && dst_any
                    && direction == "in"
                    && f.len() == 7
                    && (port == ssh_port.to_string() || port == "80" || port == "443");
                let digest = Sha256::digest(format!(
                    "{action} {protocol} {port} {} {} {source} {direction} {comment}",
                    if dst_any { "any" } else { dst },
                    f[4]
                ));
                let name = if baseline {
                    match port {
                        "80" => "http".to_string(),
                        "443" => "https".to_string(),
                        _ => "ssh".to_string(),
                    }
                } else {
                    comment.clone()
                };
                (
                    hex::encode(&digest[..4]),
                    name,
                    if baseline {
                        RuleOrigin::Baseline
                    } else {
                        RuleOrigin::Other
                    },
                )
            }
        };
        if let Some(same) = rules.iter_mut().find(|r| r.id == id) {
            if !same.families.iter().any(|x| x == family) {
                same.families.push(family.to_string());
            }
            continue;
        }
        let plain = dst_any && f[4] == "any" && f.len() == 7 && direction == "in";
        let (removable, note) = match origin {
            RuleOrigin::Other => (
                false,
                "not made by BrokeForge: left alone (change it on the server)".to_string(),
            ),
            _ if !plain => (false, "a form BrokeForge does not manage".to_string()),
            RuleOrigin::Baseline
                if port == ssh_port.to_string() || (protocol != "udp" && covers(port, ssh_port)) =>
            {
                (
                    false,
                    "BrokeForge reaches the server through this rule".to_string(),
                )
            }
            _ => (true, String::new()),
        };
        rules.push(FirewallRule {
            id,
            name,
            action,
            protocol: protocol.to_string(),
            port: port.to_string(),
            source,
            direction,
            families: vec![family.to_string()],
            origin,
            removable,
            note,
            comment,
        });
    }
    FirewallState { active, rules }
}

fn covers(port: &str, p: u16) -> bool {
    port.split(',').any(|part| {
        let (lo, hi) = port_bounds(part);
        (lo..=hi).contains(&p)
    })
}

pub struct FirewallRuleInstaller;
pub struct FirewallRuleRemover;

/// A rule to add or remove, checked, with its ufw comment.
pub struct RuleChange {
    pub rule: Rule,
    pub comment: String,
}

impl Package for FirewallRuleInstaller {
    type Milestones = FirewallRuleInstallerMilestones;
    type Request = AddRuleRequest;
    type Input = RuleChange;
    const JOB: &'static str = "firewall_rule_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &AddRuleRequest) -> Result<RuleChange, PackageError> {
        check_id(&r.id)?;
        let rule = validate(&r.rule, true)?;
        if rule.action == "deny" && rule.covers(cx.server.ssh_port) {
            return Err(ValidationError::new(
                "port",
                format!(
                    "a deny rule on port {} could lock BrokeForge (and you) out of SSH",
                    cx.server.ssh_port
                ),
            )
            .into());
        }
        let comment = if rule.name.is_empty() {
            format!("{TAG}{}", r.id)
        } else {
            format!("{TAG}{} {}", r.id, rule.name)
        };
        Ok(RuleChange { rule, comment })
    }

    fn commands(&self, i: &RuleChange) -> Result<Plan, PackageError> {
        use FirewallRuleInstallerMilestones as M;
        Ok(self
            .plan()
            .track(M::AddRule)
            .run(format!(
                "ufw {} {} comment {}",
                i.rule.action,
                i.rule.args(),
                shell_quote(&i.comment)
            ))
            .track(M::Complete))
    }
}

impl PackageInstaller for FirewallRuleInstaller {}

impl Package for FirewallRuleRemover {
    type Milestones = FirewallRuleRemoverMilestones;
    type Request = RemoveRuleRequest;
    type Input = RuleChange;
    const JOB: &'static str = "firewall_rule_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        r: &RemoveRuleRequest,
    ) -> Result<RuleChange, PackageError> {
        check_id(&r.id)?;
        let rule = validate(&r.rule, false)?;
        // The payload is checked again here: a job is only as safe as what it runs.
        if rule.action == "allow"
            && rule.source.is_none()
            && rule.covers(cx.server.ssh_port)
            && !r.comment.starts_with(TAG)
        {
            return Err(ValidationError::new(
                "rule",
                "BrokeForge reaches the server through this rule: it stays",
            )
            .into());
        }
        if !r.comment.is_empty()
            && (!r.comment.starts_with(TAG)
                || r.comment.contains(['\n', '\r', '\0'])
                || r.comment.len() > 80)
        {
            return Err(ValidationError::new("rule", "not a rule BrokeForge added").into());
        }
        Ok(RuleChange {
            rule,
            comment: r.comment.clone(),
        })
    }

    fn commands(&self, i: &RuleChange) -> Result<Plan, PackageError> {
        use FirewallRuleRemoverMilestones as M;
        let comment = if i.comment.is_empty() {
            String::new()
        } else {
            format!(" comment {}", shell_quote(&i.comment))
        };
        Ok(self
            .plan()
            .track(M::RemoveRule)
            .run(format!(
                "ufw delete {} {}{comment}",
                i.rule.action,
                i.rule.args()
            ))
            .track(M::Complete))
    }
}

impl PackageRemover for FirewallRuleRemover {}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(port: &str, protocol: &str, source: &str) -> RuleSpec {
        RuleSpec {
            name: "app".into(),
            action: "allow".into(),
            protocol: protocol.into(),
            port: port.into(),
            source: source.into(),
        }
    }

    #[test]
    fn rules_are_validated_before_anything_runs() {
        let r = validate(&spec("8080", "tcp", "10.1.2.3/8"), true).unwrap();
        assert_eq!(r.source.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(r.args(), "proto tcp from 10.0.0.0/8 to any port 8080");
        let r = validate(&spec("8000-8100", "udp", ""), true).unwrap();
        assert_eq!(r.args(), "proto udp from any to any port 8000:8100");
        let r = validate(&spec("53", "any", "2001:db8::1"), true).unwrap();
        assert_eq!(r.args(), "from 2001:db8::1 to any port 53");
        assert_eq!(
            validate(&spec("80", "tcp", "0.0.0.0/0"), true).unwrap().source,
            None
        );
        for (port, proto, source, field) in [
            ("0", "tcp", "", "port"),
            ("65536", "tcp", "", "port"),
            ("80; ufw disable", "tcp", "", "port"),
            ("90-80", "tcp", "", "port"),
            ("8000-8100", "any", "", "protocol"),
            ("80", "icmp", "", "protocol"),
            ("80", "tcp", "10.0.0.0/33", "source"),
            ("80", "tcp", "example.com", "source"),
            ("80", "tcp", "1.2.3.4 to any port 22", "source"),
            ("80", "tcp", "$(reboot)", "source"),
        ] {
            let e = validate(&spec(port, proto, source), true).unwrap_err();
            assert_eq!(e.field, field, "{port} {proto} {source}: {e}");
        }
        let mut s = spec("80", "tcp", "");
        s.name = "it's; rm -rf /".into();
        assert_eq!(validate(&s, true).unwrap_err().field, "name");
        s.name = String::new();
        assert_eq!(validate(&s, true).unwrap_err().field, "name");
        s.name = "x".into();
        s.action = "limit".into();
        assert_eq!(validate(&s, true).unwrap_err().field, "action");
    }

    #[test]
    fn plans_add_and_delete_the_same_rule() {
        let rule = validate(&spec("8080", "tcp", "10.0.0.0/8"), true).unwrap();
        let change = RuleChange {
            rule,
            comment: "brokeforge:ab12cd34 app".into(),
        };
        let add = FirewallRuleInstaller.commands(&change).unwrap().to_string();
        assert!(
            add.contains(
                "ufw allow proto tcp from 10.0.0.0/8 to any port 8080 comment 'brokeforge:ab12cd34 app'"
            ),
            "{add}"
        );
        let del = FirewallRuleRemover.commands(&change).unwrap().to_string();
        assert!(
            del.contains(
                "ufw delete allow proto tcp from 10.0.0.0/8 to any port 8080 comment 'brokeforge:ab12cd34 app'"
            ),
            "{del}"
        );
    }

    #[test]
    fn ufw_rule_files_are_read_with_origins() {
        let comment = hex::encode("brokeforge:ab12cd34 app");
        let text = format!(
            "Status: active\n### file /etc/ufw/user.rules\n\
             ### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n\
             ### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in\n\
             ### tuple ### allow tcp 8080 0.0.0.0/0 any 10.0.0.0/8 in comment={comment}\n\
             ### tuple ### allow tcp 5432 0.0.0.0/0 any 203.0.113.7 in\n\
             ### tuple ### deny_log any 25 0.0.0.0/0 any 0.0.0.0/0 in_eth0\n\
             ### tuple ### allow any 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in\n\
             ### file /etc/ufw/user6.rules\n\
             ### tuple ### allow tcp 22 ::/0 any ::/0 in\n\
             ### tuple ### allow udp 9000:9100 ::/0 any ::/0 in comment={}\n",
            hex::encode("brokeforge:0011aabb")
        );
        let s = parse_state(&text, 22);
        assert!(s.active);
        let by_port = |p: &str| s.rules.iter().find(|r| r.port == p).unwrap();
        let ssh = by_port("22");
        assert_eq!(ssh.origin, RuleOrigin::Baseline);
        assert_eq!(ssh.families, ["v4", "v6"]);
        assert!(!ssh.removable && ssh.note.contains("reaches"));
        let http = by_port("80");
        assert_eq!((http.origin, http.removable), (RuleOrigin::Baseline, true));
        let app = by_port("8080");
        assert_eq!(app.id, "ab12cd34");
        assert_eq!(app.name, "app");
        assert_eq!(app.source, "10.0.0.0/8");
        assert!(app.removable);
        assert_eq!(app.spec().source, "10.0.0.0/8");
        let db = by_port("5432");
        assert_eq!((db.origin, db.removable), (RuleOrigin::Other, false));
        let smtp = by_port("25");
        assert_eq!(smtp.action, "deny");
        assert_eq!(smtp.direction, "in on eth0");
        let range = by_port("9000:9100");
        assert_eq!((range.id.as_str(), range.name.as_str()), ("0011aabb", ""));
        assert_eq!(range.families, ["v6"]);
        // The application-profile rule is someone else's and never confused with the baseline one.
        assert_eq!(s.rules.iter().filter(|r| r.port == "22").count(), 2);
        assert!(!parse_state("Status: inactive\n", 22).active);
    }

    #[test]
    fn milestones() {
        use crate::base::Milestones;
        assert_eq!(FirewallRuleInstallerMilestones::total_steps(), 2);
        assert_eq!(FirewallRuleRemoverMilestones::RemoveRule.key(), "remove_rule");
    }
}
