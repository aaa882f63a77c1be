//! The client side of the CLI: talks to a BrokeForge server through its JSON API, follows jobs over SSE
//! with a progress bar per job (plain lines when the output is not a terminal).

use brokeforge_core::ProvisionType;
use brokeforge_store::{Job, JobStatus, JobTarget};
use brokeforge_web::api::types::{JobResponse, ServerEntry, ServerList};
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the CLI finds its server: flags, then the environment, then the saved login.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientArgs {
    /// BrokeForge's address, e.g. http://127.0.0.1:8080 (default: BROKEFORGE_URL, else the saved login).
    #[arg(long, global = true, env = "BROKEFORGE_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// An API token (default: BROKEFORGE_TOKEN, else the saved login). Prefer the environment: argv is visible
    /// to other users of the machine.
    #[arg(long, global = true, env = "BROKEFORGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Serialize, Deserialize, Default)]
pub struct SavedLogin {
    pub url: String,
    pub token: String,
}

/// `$XDG_CONFIG_HOME/brokeforge/client.json`, else `~/.config/brokeforge/client.json`.
pub fn login_file() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("brokeforge/client.json")
}

pub fn save_login(login: &SavedLogin) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = login_file();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(login)?.as_bytes())?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

pub struct Client {
    pub base: String,
    token: Option<String>,
    agent: ureq::Agent,
    pub json: bool,
}

/// An API error as the server reported it.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ApiFailure {}

impl Client {
    pub fn new(args: &ClientArgs) -> Result<Client> {
        let saved: Option<SavedLogin> = std::fs::read_to_string(login_file())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let base = args
            .url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| saved.as_ref().map(|s| s.url.clone()))
            .ok_or_else(|| {
                anyhow!(
                    "no BrokeForge server given: pass --url http://HOST:8080, set BROKEFORGE_URL, or run `brokeforge login --url ...`"
                )
            })?;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--url must start with http:// or https:// (got `{base}`)");
        }
        let token = args
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| saved.map(|s| s.token).filter(|t| !t.is_empty()));
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)));
        // A BrokeForge whose certificate comes from a private CA (or is self-signed).
        if let Some(path) = std::env::var_os("BROKEFORGE_CA_FILE").filter(|p| !p.is_empty()) {
            use rustls_pki_types::pem::PemObject;
            let pem = std::fs::read(&path)
                .with_context(|| format!("cannot read BROKEFORGE_CA_FILE {}", path.display()))?;
            let roots = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                .map(|c| c.map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned()))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("BROKEFORGE_CA_FILE {} is not PEM", path.display()))?;
            if roots.is_empty() {
                bail!("BROKEFORGE_CA_FILE {} holds no certificate", path.display());
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
                    .build(),
            );
        }
        let agent: ureq::Agent = config.build().into();
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
            json: args.json,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach BrokeForge at {}: {e}. Is `brokeforge serve` running there? (set --url or BROKEFORGE_URL)",
            self.base
        )
    }

    fn finish(&self, resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value> {
        let text = self.finish_text(resp)?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The body of a successful answer as text (a recovery kit); an error answer as [`ApiFailure`].
    fn finish_text(
        &self,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String> {
        let mut resp = resp.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or("http_error")
            .to_string();
        let mut message = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("BrokeForge answered HTTP {status}"));
        if let Some(field) = body["error"]["field"].as_str() {
            message = format!("{field}: {message}");
        }
        if status == 401 {
            message = format!(
                "{message} (run `brokeforge login --url {}`, or set BROKEFORGE_TOKEN to a token from `brokeforge admin create-token`)",
                self.base
            );
        }
        Err(ApiFailure {
            status,
            code,
            message,
        }
        .into())
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.finish(self.auth(self.agent.get(&self.url(path))).call())
    }

    /// A GET read into one of the API's types (`brokeforge_web::api::types`).
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        typed(path, self.get(path)?)
    }

    /// A POST of one of the API's request types, its answer read into one of its answer types.
    pub fn post_as<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        typed(path, self.post(path, body)?)
    }

    /// A PUT of one of the API's request types, its answer read into one of its answer types.
    pub fn put_as<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        typed(path, self.put(path, body)?)
    }

    /// A DELETE, its answer read into one of the API's answer types.
    pub fn delete_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        typed(path, self.delete(path)?)
    }

    /// A GET whose answer is copied to `to` as it arrives (a download); the byte count.
    pub fn download(&self, path: &str, to: &mut dyn std::io::Write) -> Result<u64> {
        let resp = self
            .auth(self.agent.get(&self.url(path)))
            .call()
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            // An error answer is small JSON: let the usual path word it.
            self.finish_text(Ok(resp))?;
            anyhow::bail!("the download was refused");
        }
        let mut resp = resp;
        let n = std::io::copy(&mut resp.body_mut().as_reader(), to)
            .context("the download was cut off")?;
        Ok(n)
    }

    /// A GET whose answer is text, not JSON.
    pub fn get_text(&self, path: &str) -> Result<String> {
        self.finish_text(self.auth(self.agent.get(&self.url(path))).call())
    }

    /// A POST of a request body: one of the API's request types (`brokeforge_web::api::types`, the domain's
    /// and packages' requests), so the CLI sends what the document describes.
    pub fn post<B: serde::Serialize>(&self, path: &str, body: B) -> Result<Value> {
        self.finish(self.auth(self.agent.post(&self.url(path))).send_json(body))
    }

    /// A POST of a route that takes no body.
    pub fn post_empty(&self, path: &str) -> Result<Value> {
        self.post(path, serde_json::Map::new())
    }

    pub fn put<B: serde::Serialize>(&self, path: &str, body: B) -> Result<Value> {
        self.finish(self.auth(self.agent.put(&self.url(path))).send_json(body))
    }

    pub fn delete(&self, path: &str) -> Result<Value> {
        self.finish(self.auth(self.agent.delete(&self.url(path))).call())
    }

    /// Sign in with a password and create an API token named `name`.
    pub fn login(
        &self,
        email: &str,
        password: &str,
        code: Option<&str>,
        name: &str,
    ) -> Result<String> {
        let mut resp = self
            .agent
            .post(&self.url("/login"))
            .send_json(brokeforge_web::api::types::LoginRequest {
                email: email.to_string(),
                password: password.to_string(),
                code: code.map(String::from),
            })
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string);
        let body: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        if status != 200 {
            let hint = if body["error"]["code"] == "two_factor_required" {
                " (give it with --code)"
            } else {
                ""
            };
            bail!(
                "{}{hint}",
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("sign-in failed")
            );
        }
        let cookie = cookie.ok_or_else(|| anyhow!("the server sent no session"))?;
        let csrf = body["csrf_token"].as_str().unwrap_or_default().to_string();
        let made = self.finish(
            self.agent
                .post(&self.url("/tokens"))
                .header("Cookie", &cookie)
                .header("X-CSRF-Token", &csrf)
                .send_json(brokeforge_web::api::types::TokenBody {
                    name: name.to_string(),
                    scope: brokeforge_store::TokenScope::default(),
                    expires_in_days: None,
                }),
        )?;
        let _ = self
            .agent
            .post(&self.url("/logout"))
            .header("Cookie", &cookie)
            .header("X-CSRF-Token", &csrf)
            .send_empty();
        Ok(made["token"].as_str().unwrap_or_default().to_string())
    }

    /// A server by name or id.
    pub fn server(&self, name_or_id: &str) -> Result<Value> {
        let by_name = self.get(&format!("/servers?name={}", urlencode(name_or_id)))?;
        let named = by_name["servers"].as_array().cloned().unwrap_or_default();
        if named.len() > 1 {
            // Two teams may each have a `web`: never guess which one a command is for.
            let ids: Vec<String> = named
                .iter()
                .map(|s| format!("{} (team {})", s["server"]["id"], s["server"]["team_id"]))
                .collect();
            bail!(
                "{} servers you can see are named `{name_or_id}`: give the id of the one you mean ({})",
                named.len(),
                ids.join(", ")
            );
        }
        if let Some(s) = named.first() {
            return Ok(s["server"].clone());
        }
        if let Ok(id) = name_or_id.parse::<i64>() {
            let page = self.get(&format!("/servers?cursor={}&limit=1", id - 1))?;
            if let Some(s) = page["servers"].as_array().and_then(|l| l.first())
                && s["server"]["id"].as_i64() == Some(id)
            {
                return Ok(s["server"].clone());
            }
        }
        let some = self.get("/servers?limit=20")?;
        let names: Vec<&str> = some["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["server"]["name"].as_str())
            .collect();
        Err(anyhow!(
            "no server `{name_or_id}` (yours: {})",
            if names.is_empty() {
                "none yet; add one with `brokeforge server add`".into()
            } else if names.len() == 20 {
                format!("{}, ... (`brokeforge server list`)", names.join(", "))
            } else {
                names.join(", ")
            }
        ))
    }

    /// Every server of the user, page by page.
    pub fn all_servers(&self) -> Result<Vec<ServerEntry>> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let page: ServerList = self.get_as(&format!("/servers?cursor={cursor}&limit=1000"))?;
            out.extend(page.servers);
            match page.next_cursor {
                Some(next) => cursor = urlencode(&next),
                None => return Ok(out),
            }
        }
    }

    pub fn server_id(&self, name_or_id: &str) -> Result<i64> {
        self.server(name_or_id)?["id"]
            .as_i64()
            .ok_or_else(|| anyhow!("the server answered without an id"))
    }

    /// A site of a server by domain.
    pub fn site(&self, server_id: i64, domain: &str) -> Result<Value> {
        let sites = self.get(&format!("/servers/{server_id}/sites"))?;
        let list = sites["sites"].as_array().cloned().unwrap_or_default();
        list.iter()
            .find(|s| s["domain"].as_str() == Some(&domain.to_ascii_lowercase()))
            .cloned()
            .ok_or_else(|| {
                let names: Vec<&str> = list.iter().filter_map(|s| s["domain"].as_str()).collect();
                anyhow!(
                    "no site `{domain}` on that server (sites: {})",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                )
            })
    }

    /// Open the server's live stream (optionally one job's rows); events arrive on the returned channel.
    pub fn stream(
        &self,
        server_id: i64,
        query: &str,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<SseEvent>> {
        let resp = self
            .auth(
                self.agent
                    .get(&self.url(&format!("/servers/{server_id}/stream?{query}"))),
            )
            .header("Accept", "text/event-stream")
            .call()
            .map_err(|e| self.unreachable(e))?;
        if resp.status().as_u16() != 200 {
            return Err(self
                .finish(Ok(resp))
                .err()
                .unwrap_or_else(|| anyhow!("stream refused")));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = BufReader::new(resp.into_body().into_reader());
        std::thread::spawn(move || {
            let (mut event, mut data) = (String::new(), String::new());
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                } else if line.is_empty() && !event.is_empty() {
                    let ev = SseEvent {
                        event: std::mem::take(&mut event),
                        data: serde_json::from_str(&std::mem::take(&mut data))
                            .unwrap_or(Value::Null),
                    };
                    if tx.send(ev).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(rx)
    }
}

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// How a followed job ended.
pub struct Followed {
    pub job: Job,
    pub ok: bool,
}

/// What to do with command output while following.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Milestones only.
    Progress,
    /// Copy the job's stdout/stderr to ours (site commands).
    Passthrough,
}

/// Follow a job until it ends: a progress bar on a terminal, plain lines otherwise. Ctrl-C stops following
/// (the job keeps running). Returns the finished job.
pub async fn follow(
    client: &Client,
    server_id: i64,
    job: &Job,
    mode: OutputMode,
) -> Result<Followed> {
    let job_id = job.id;
    let label = job_title(job);
    let mut rx = client.stream(server_id, &format!("job={job_id}"))?;
    let tty = std::io::stderr().is_terminal() && mode == OutputMode::Progress && !client.json;
    let bar = if tty {
        let pb = indicatif::ProgressBar::new(1);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix:.bold} [{bar:30}] {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_prefix(label.clone());
        pb.enable_steady_tick(Duration::from_millis(120));
        Some(pb)
    } else {
        if !client.json && mode == OutputMode::Progress {
            eprintln!("job {job_id}: {label}");
        }
        None
    };
    // The job may have ended before the stream opened: check once the stream is up.
    let mut checked = false;
    loop {
        let next = tokio::select! {
            ev = rx.recv() => ev,
            _ = tokio::signal::ctrl_c() => {
                if let Some(b) = &bar { b.abandon(); }
                eprintln!("stopped following; job {job_id} keeps running (`brokeforge jobs show {job_id}`, `brokeforge jobs cancel {job_id}`)");
                std::process::exit(130);
            }
            _ = tokio::time::sleep(Duration::from_secs(2)), if !checked => {
                checked = true;
                let j: JobResponse = client.get_as(&format!("/jobs/{job_id}"))?;
                if j.job.status.is_finished() { return Ok(done(client, bar, j.job, mode)); }
                continue;
            }
        };
        let Some(ev) = next else {
            // The stream closed (BrokeForge restarted, a proxy timed out): the job may still be running.
            // Check it, and open the stream again while it runs.
            let mut reopened = None;
            for attempt in 1..=30 {
                tokio::time::sleep(Duration::from_secs(attempt.min(5))).await;
                match client.get_as::<JobResponse>(&format!("/jobs/{job_id}")) {
                    Ok(j) if j.job.status.is_finished() => {
                        return Ok(done(client, bar, j.job, mode));
                    }
                    Ok(_) => {
                        if let Ok(r) = client.stream(server_id, &format!("job={job_id}")) {
                            reopened = Some(r);
                            break;
                        }
                    }
                    Err(_) => {}
                }
            }
            match reopened {
                Some(r) => {
                    rx = r;
                    continue;
                }
                None => bail!(
                    "lost BrokeForge while following job {job_id}; `brokeforge jobs show {job_id}` tells how it ended"
                ),
            }
        };
        match ev.event.as_str() {
            "milestone" => {
                let d = &ev.data;
                if d["job_id"].as_i64() != Some(job_id) {
                    continue;
                }
                let (step, total) = (
                    d["current_step"].as_u64().unwrap_or(0),
                    d["total_steps"].as_u64().unwrap_or(1),
                );
                let status = d["status"].as_str().unwrap_or_default();
                let lbl = d["label"].as_str().unwrap_or_default();
                match &bar {
                    Some(b) => {
                        b.set_length(total.max(1));
                        b.set_position(if status == "completed" {
                            step
                        } else {
                            step.saturating_sub(1)
                        });
                        b.set_message(lbl.to_string());
                    }
                    None if mode == OutputMode::Progress && !client.json => match status {
                        "in_progress" => eprintln!("[{step}/{total}] {lbl}"),
                        "failed" => eprintln!(
                            "[{step}/{total}] {lbl}: failed: {}",
                            d["error"].as_str().unwrap_or("")
                        ),
                        "cancelled" => eprintln!("[{step}/{total}] {lbl}: cancelled"),
                        _ => {}
                    },
                    None => {}
                }
            }
            "output" if mode == OutputMode::Passthrough => {
                use std::io::Write;
                let chunk = ev.data["chunk"].as_str().unwrap_or_default();
                match ev.data["stream"].as_str() {
                    Some("stdout") => {
                        let _ = std::io::stdout().write_all(chunk.as_bytes());
                        let _ = std::io::stdout().flush();
                    }
                    Some("stderr") => {
                        let _ = std::io::stderr().write_all(chunk.as_bytes());
                    }
                    _ => {}
                }
            }
            "job" if ev.data["job_id"].as_i64() == Some(job_id) => {
                let j: JobResponse = client.get_as(&format!("/jobs/{job_id}"))?;
                return Ok(done(client, bar, j.job, mode));
            }
            _ => {}
        }
    }
}

fn done(
    client: &Client,
    bar: Option<indicatif::ProgressBar>,
    job: Job,
    mode: OutputMode,
) -> Followed {
    let ok = job.status == JobStatus::Done;
    if let Some(b) = bar {
        if ok {
            b.set_position(b.length().unwrap_or(1));
            b.finish_with_message("done");
        } else {
            b.abandon_with_message(job.status.as_str().to_string());
        }
    }
    // A site command's own output is the answer: no job lines around it.
    if !client.json && mode == OutputMode::Progress {
        let id = job.id;
        match job.status {
            JobStatus::Done => eprintln!("job {id} done"),
            s => eprintln!(
                "job {id} {}: {} (retry with `brokeforge jobs retry {id}`)",
                s.as_str(),
                job.error.as_deref().unwrap_or("no reason given")
            ),
        }
    }
    Followed { job, ok }
}

/// The job in an answer that queued one (`{"job": ...}`, also with a site or deployment beside it).
pub fn job_of(v: &Value) -> Result<Job> {
    serde_json::from_value(v["job"].clone()).context("the answer carries no job the API documents")
}

/// A job in a few words: `install mariadb`, `remove redis`, `deploy`.
pub fn job_title(job: &Job) -> String {
    match &job.target {
        Some(JobTarget::Service {
            name,
            provision_type,
            ..
        }) => {
            let verb = match provision_type {
                ProvisionType::Uninstall => "remove",
                _ => "install",
            };
            format!("{verb} {name}")
        }
        _ => job.kind.replace('_', " "),
    }
}

/// An answer read into the type its route documents; a mismatch says where.
fn typed<T: serde::de::DeserializeOwned>(path: &str, v: Value) -> Result<T> {
    serde_json::from_value(v)
        .with_context(|| format!("the answer of {path} is not what the API documents"))
}

/// A value as it goes into a URL path or query.
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
