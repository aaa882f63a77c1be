//! Runs a [`Plan`] against a server: one SSH connection per credential, an event per milestone, output
//! streamed into the store line by line, secrets redacted everywhere, cancellation between and during steps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use brokeforge_core::{ConnectionStatus, CredentialKind, EventStatus, ProvisionType, Secret};
use brokeforge_ssh::{
    ExecOutput, ExecRequest, HostKeyPolicy, SHELL_STDIN_MAX, Shell, ShellStart, SshError,
    SshSession, SshTarget,
};
use brokeforge_store::{LogStream, NewEvent, ProvisionEvent, Server, Store, StoreError};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod log_writer;

use super::{FileContents, FileStep, PackageError, Plan, RunStep, Step, StoreChange};
use log_writer::LogWriter;

/// Bytes of stderr quoted in a failure message.
const STDERR_TAIL: usize = 2000;
/// Output kept in memory per stream and command (everything up to this is also streamed to the log).
const MAX_OUTPUT: usize = 1 << 20;

/// SSH failures in this process (connections refused or lost, channel errors), for `/metrics`.
pub static SSH_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Who and what a run is for.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub server: Server,
    pub job_id: Option<i64>,
    pub cancel: CancellationToken,
    /// Pin the host key on first connect when none is pinned yet.
    pub trust_on_first_use: bool,
    /// SSH connections of this job, one per credential, shared by every plan the job runs.
    pub connections: Connections,
    /// The name the job's commands carry on the server, so they can be stopped (on cancel, after a lost lease,
    /// and by the job's next attempt before it runs anything).
    pub tag: Option<String>,
    /// The job's attempt: progress and output are written only while it still owns the job.
    pub attempt: Option<i64>,
    /// The server-side lock file: one job's commands at a time on the server, whatever the database says.
    pub lock: Option<String>,
}

impl RunContext {
    pub fn new(server: Server) -> Self {
        RunContext {
            server,
            job_id: None,
            cancel: CancellationToken::new(),
            trust_on_first_use: false,
            connections: Connections::default(),
            tag: None,
            attempt: None,
            lock: None,
        }
    }
}

/// Open SSH connections by credential, each with the long-lived shell the job's steps run in; one of those
/// shells holds the server's job lock while the job runs. Closed by [`Connections::close`] (or when the last
/// clone is dropped).
#[derive(Clone, Default)]
pub struct Connections(Arc<tokio::sync::Mutex<HashMap<CredentialKind, Link>>>);

/// One credential's connection and its shell.
#[derive(Clone)]
struct Link {
    session: Arc<SshSession>,
    shell: Arc<tokio::sync::Mutex<Shell>>,
    /// Its shell took the server's job lock.
    locked: bool,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connections")
    }
}

impl Connections {
    pub async fn close(&self) {
        let links: Vec<_> = self.0.lock().await.drain().map(|(_, l)| l).collect();
        for link in links {
            link.close().await;
        }
    }

    /// Forget the connection of `credential` (e.g. after its key was replaced). If its shell held the job
    /// lock, the next connection takes it again.
    pub async fn drop_credential(&self, credential: CredentialKind) {
        let link = self.0.lock().await.remove(&credential);
        if let Some(link) = link {
            link.close().await;
        }
    }
}

impl Link {
    async fn close(self) {
        // The shell ends with its input, which frees the lock it may hold.
        if let Ok(shell) = Arc::try_unwrap(self.shell) {
            shell.into_inner().close().await;
        }
        if let Ok(s) = Arc::try_unwrap(self.session) {
            s.close().await;
        }
    }
}

/// What a successful run produced: the output of each command step, in order.
#[derive(Debug, Default)]
pub struct RunReport {
    pub outputs: Vec<ExecOutput>,
}

#[derive(Clone)]
pub struct Executor {
    store: Store,
    connect_timeout: Duration,
}

struct Run<'a> {
    store: &'a Store,
    ctx: &'a RunContext,
    plan: &'a Plan,
    provision_type: ProvisionType,
    connect_timeout: Duration,
    event: Option<EventWrite>,
    /// The plan's last milestone when nothing follows it: stored once the run has ended well, as completed.
    last: Option<NewEvent>,
}

/// The current milestone's event. It is written while the milestone's first command already runs, so the
/// store stays off the critical path; whoever needs its id waits for it.
struct EventWrite {
    task: Option<tokio::task::JoinHandle<Result<ProvisionEvent, StoreError>>>,
    id: watch::Receiver<Option<i64>>,
    stored: Option<ProvisionEvent>,
}

impl EventWrite {
    fn spawn(store: &Store, previous: Option<ProvisionEvent>, next: NewEvent) -> EventWrite {
        let (tx, id) = watch::channel(None);
        let store = store.clone();
        let task = tokio::spawn(async move {
            let event = store.advance_event(previous.as_ref(), &next).await?;
            let _ = tx.send(Some(event.id));
            Ok(event)
        });
        EventWrite {
            task: Some(task),
            id,
            stored: None,
        }
    }

    /// Wait until the event is stored; the event as stored.
    async fn event(&mut self) -> Result<ProvisionEvent, StoreError> {
        if let Some(task) = self.task.take() {
            let event = task
                .await
                .map_err(|e| StoreError::InvalidData(format!("event writer: {e}")))??;
            self.stored = Some(event);
        }
        self.stored
            .clone()
            .ok_or_else(|| StoreError::InvalidData("event was not stored".into()))
    }

    /// Wait until the event is stored; its id.
    async fn id(&mut self) -> Result<i64, StoreError> {
        Ok(self.event().await?.id)
    }
}

impl Executor {
    pub fn new(store: Store) -> Self {
        Executor {
            store,
            connect_timeout: Duration::from_secs(20),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Run one command as `credential` and send its stdout to `out` as it arrives (a download, a log): nothing
    /// of it is logged or kept, and a slow reader slows the command instead of filling memory. Fails with the
    /// command's stderr (with `secrets` redacted) when it does.
    #[allow(clippy::too_many_arguments)]
    pub async fn stream(
        &self,
        ctx: &RunContext,
        credential: CredentialKind,
        command: &str,
        stdin: Option<&Secret>,
        secrets: Vec<Secret>,
        timeout: Duration,
        out: &tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<(), PackageError> {
        let plan = Plan {
            service_type: brokeforge_core::ServiceType::Server,
            credential,
            total_steps: 0,
            steps: Vec::new(),
            secrets,
        };
        let mut run = Run {
            store: &self.store,
            ctx,
            plan: &plan,
            provision_type: ProvisionType::Install,
            connect_timeout: self.connect_timeout,
            event: None,
            last: None,
        };
        let session = run.link(credential).await?.session;
        let input = stdin.map(|s| s.expose().as_bytes().to_vec());
        let o = session
            .exec(ExecRequest {
                stdin: input.as_deref(),
                cancel: Some(&ctx.cancel),
                stream: Some(out),
                ..ExecRequest::new(command, timeout)
            })
            .await?;
        if o.cancelled {
            return Err(PackageError::Cancelled);
        }
        if !o.success() {
            let stderr = plan.redact(&o.stderr_text());
            return Err(PackageError::CommandFailed {
                message: format!(
                    "the command on the server failed: {}",
                    tail(&stderr, STDERR_TAIL).trim_end()
                ),
                exit_code: o.exit_code,
                timed_out: o.timed_out,
                stdout: String::new(),
                stderr,
                duration: o.duration,
            });
        }
        Ok(())
    }

    /// Run every step of `plan`. On failure the current milestone's event is marked failed (or cancelled) with
    /// a redacted reason, and the error is returned; later steps do not run.
    pub async fn run(
        &self,
        ctx: &RunContext,
        plan: &Plan,
        provision_type: ProvisionType,
    ) -> Result<RunReport, PackageError> {
        let mut run = Run {
            store: &self.store,
            ctx,
            plan,
            provision_type,
            connect_timeout: self.connect_timeout,
            event: None,
            last: None,
        };
        let result = run.steps().await;
        let (status, error) = match &result {
            Ok(_) => (EventStatus::Completed, None),
            Err(PackageError::Cancelled) => (
                EventStatus::Cancelled,
                Some("cancelled by the user".to_string()),
            ),
            Err(e) => (EventStatus::Failed, Some(plan.redact(&e.to_string()))),
        };
        let previous = match run.event.take() {
            Some(mut ev) => Some(ev.event().await?),
            None => None,
        };
        match (run.last.take(), previous) {
            // A last milestone is only reached when every step before it ran.
            (Some(last), previous) => {
                self.store
                    .advance_to_last_event(previous.as_ref(), &last)
                    .await?;
            }
            (None, Some(previous)) => {
                let fence = ctx.job_id.zip(ctx.attempt);
                self.store
                    .finish_attempt_event(previous.id, fence, status, error.as_deref())
                    .await?;
            }
            (None, None) => {}
        }
        if let Some(error) = &error
            && status == EventStatus::Failed
        {
            tracing::warn!(server_id = ctx.server.id, job_id = ?ctx.job_id, %error, "package step failed");
        }
        result
    }
}

impl Run<'_> {
    async fn steps(&mut self) -> Result<RunReport, PackageError> {
        let mut report = RunReport::default();
        for (i, step) in self.plan.steps.iter().enumerate() {
            if self.ctx.cancel.is_cancelled() {
                return Err(PackageError::Cancelled);
            }
            match step {
                Step::Track { key, label, step } => {
                    let next = NewEvent {
                        server_id: self.ctx.server.id,
                        job_id: self.ctx.job_id,
                        attempt: self.ctx.attempt,
                        service_type: self.plan.service_type,
                        provision_type: self.provision_type,
                        milestone: key.to_string(),
                        label: label.to_string(),
                        current_step: *step as i64,
                        total_steps: self.plan.total_steps as i64,
                        details: serde_json::json!({}),
                    };
                    if i + 1 == self.plan.steps.len() {
                        self.last = Some(next);
                        continue;
                    }
                    let previous = match self.event.take() {
                        Some(mut ev) => Some(ev.event().await?),
                        None => None,
                    };
                    self.event = Some(EventWrite::spawn(self.store, previous, next));
                }
                Step::Run(r) => report.outputs.push(self.run_command(r).await?),
                Step::PutFile(p) => {
                    self.put_file(p).await?;
                }
                Step::Record(change) => self.apply(change).await?,
            }
        }
        Ok(report)
    }

    /// The connection of `credential` and its shell, opened on first use: the shell's first words stop what
    /// an earlier attempt of this job left running, then take the server's job lock (unless another of the
    /// job's shells holds it), so that two attempts never run at once on the server even when the database
    /// cannot tell them apart.
    async fn link(&mut self, credential: CredentialKind) -> Result<Link, PackageError> {
        let mut links = self.ctx.connections.0.lock().await;
        if let Some(link) = links.get(&credential).cloned() {
            let mut shell = link.shell.lock().await;
            if shell.is_broken() {
                // A step past its deadline was stopped with the shell (and the lock it held): a new shell on
                // the same connection takes over, the lock with it.
                let others = links.iter().any(|(c, l)| *c != credential && l.locked);
                *shell = self.open_shell(&link.session, others).await?;
            }
            drop(shell);
            return Ok(link);
        }
        let server = &self.ctx.server;
        let cred = self.store.credential(server.id, credential).await?;
        let policy = HostKeyPolicy::for_server(
            server.host_key_fingerprint.as_deref(),
            self.ctx.trust_on_first_use,
        );
        let target = SshTarget {
            host: server.public_ip.clone(),
            port: server.ssh_port,
            user: cred.unix_user().to_string(),
            key: cred.private_key.clone(),
            host_key: policy.clone(),
            connect_timeout: self.connect_timeout,
        };
        let session = match connect_with_retry(&target, &self.ctx.cancel).await {
            Ok(s) => s,
            Err(e) => {
                SSH_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.store
                    .set_connection_status(server.id, ConnectionStatus::Failed)
                    .await?;
                return Err(e.into());
            }
        };
        if policy == HostKeyPolicy::TrustOnFirstUse
            && !self
                .store
                .pin_host_key_if_unset(server.id, session.host_key_fingerprint())
                .await?
        {
            // Someone pinned a key meanwhile: it must be this one.
            let pinned = self
                .store
                .server(server.id)
                .await?
                .host_key_fingerprint
                .unwrap_or_default();
            if pinned != session.host_key_fingerprint() {
                return Err(SshError::HostKeyMismatch {
                    host: format!("{}:{}", server.public_ip, server.ssh_port),
                    expected: pinned,
                    actual: session.host_key_fingerprint().to_string(),
                }
                .into());
            }
        }
        if server.connection_status != ConnectionStatus::Connected {
            self.store
                .set_connection_status(server.id, ConnectionStatus::Connected)
                .await?;
        }
        let locked = links.values().any(|l| l.locked);
        let shell = self.open_shell(&session, locked).await;
        let shell = match shell {
            Ok(shell) => shell,
            Err(e) => {
                session.close().await;
                return Err(e);
            }
        };
        let link = Link {
            session: Arc::new(session),
            locked: shell.holds_lock(),
            shell: Arc::new(tokio::sync::Mutex::new(shell)),
        };
        links.insert(credential, link.clone());
        Ok(link)
    }

    /// Start the connection's shell; with a tag, stop the job's leftovers and take the lock (unless `locked`
    /// says another shell of the job has it), saying in the log when either happened.
    async fn open_shell(
        &mut self,
        session: &SshSession,
        locked: bool,
    ) -> Result<Shell, PackageError> {
        let Some(tag) = self.ctx.tag.clone() else {
            return Ok(session.open_shell().await?);
        };
        let stop = brokeforge_ssh::stop_prelude(&tag)?;
        let started = std::time::Instant::now();
        let waited = std::sync::atomic::AtomicBool::new(false);
        let start = ShellStart {
            tag: Some(&tag),
            prelude: Some(&stop),
            lock: self.ctx.lock.as_deref().filter(|_| !locked),
            cancel: Some(&self.ctx.cancel),
        };
        let taken = session
            .start_shell(start, || {
                waited.store(true, std::sync::atomic::Ordering::Relaxed)
            })
            .await;
        let (shell, stop_output) = match taken {
            Ok(taken) => taken,
            Err(_) if self.ctx.cancel.is_cancelled() => return Err(PackageError::Cancelled),
            Err(e) => return Err(e.into()),
        };
        let stopped = stop_output
            .lines()
            .find_map(|l| l.trim().strip_prefix("stopped "))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
        if stopped > 0 {
            self.log(
                LogStream::System,
                &format!(
                    "stopped {stopped} command(s) an earlier attempt of this job left running\n"
                ),
            )
            .await?;
        }
        if waited.load(std::sync::atomic::Ordering::Relaxed) {
            self.log(
                LogStream::System,
                &format!(
                    "waited {} s for another job's commands to end on the server\n",
                    started.elapsed().as_secs()
                ),
            )
            .await?;
        }
        Ok(shell)
    }

    async fn log(&mut self, stream: LogStream, text: &str) -> Result<(), StoreError> {
        let event_id = match self.event.as_mut() {
            Some(ev) => Some(ev.id().await?),
            None => None,
        };
        self.store
            .append_attempt_log(
                self.ctx.server.id,
                self.ctx.job_id,
                self.ctx.attempt,
                event_id,
                stream,
                &self.plan.redact(text),
            )
            .await
    }

    /// Run `command` with output streamed into the log as whole lines.
    async fn exec(
        &mut self,
        credential: CredentialKind,
        shown: &str,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        private_output: bool,
    ) -> Result<ExecOutput, PackageError> {
        let cancel = self.ctx.cancel.clone();
        let link = self.link(credential).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = LogWriter {
            store: self.store.clone(),
            server_id: self.ctx.server.id,
            job_id: self.ctx.job_id,
            attempt: self.ctx.attempt,
            event_id: self.event.as_ref().map(|e| e.id.clone()),
            secrets: self.plan.secrets.clone(),
        };
        // The writer stores the command line while the command runs: the store stays off the critical path.
        // It starts once the connection and its shell are there, so that its wait for the command's first
        // output (to store both in one statement) is not spent on connecting or on the server's job lock.
        let logging = tokio::spawn(writer.drain(format!("$ {shown}\n"), rx));
        let session = &link.session;
        let req = ExecRequest {
            command,
            stdin,
            timeout,
            max_output: MAX_OUTPUT,
            cancel: Some(&cancel),
            output: (!private_output).then_some(&tx),
            tag: self.ctx.tag.as_deref(),
            stream: None,
        };
        // Steps run in the connection's shell; a large input goes on a channel of its own.
        let result = if stdin.is_none_or(|i| i.len() <= SHELL_STDIN_MAX) {
            link.shell.lock().await.run(req).await
        } else {
            session.exec(req).await
        };
        if let (Ok(out), Some(tag)) = (&result, &self.ctx.tag)
            && out.cancelled
        {
            // Closing the channel does not stop a command on the server: stop its process group.
            match brokeforge_ssh::stop_command(tag) {
                Ok(stop) => {
                    if let Err(e) = session
                        .exec(ExecRequest::new(&stop, Duration::from_secs(20)))
                        .await
                    {
                        tracing::warn!(job_id = ?self.ctx.job_id, error = %e, "stopping a cancelled command failed; the next attempt stops it");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "no stop command"),
            }
        }
        if result.is_err() {
            SSH_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        drop(tx);
        logging
            .await
            .map_err(|e| StoreError::InvalidData(format!("log writer: {e}")))??;
        let out = result?;
        if out.cancelled {
            return Err(PackageError::Cancelled);
        }
        if !out.success() {
            let what = match (out.timed_out, out.exit_code) {
                (true, _) => format!("timed out after {} s", timeout.as_secs()),
                // What a shell reports for a command a signal ended (the job's shell sees it so).
                (false, Some(code @ 129..=159)) => {
                    format!("exited with code {code} (128 + signal {})", code - 128)
                }
                (false, Some(code)) => format!("exited with code {code}"),
                (false, None) => match &out.exit_signal {
                    Some(sig) => format!("was killed by signal {sig}"),
                    None => "ended without an exit status".to_string(),
                },
            };
            let stderr = if private_output {
                String::new()
            } else {
                self.plan.redact(&out.stderr_text())
            };
            let tail = tail(&stderr, STDERR_TAIL);
            let message = if tail.trim().is_empty() {
                format!("`{}` {what}", self.plan.redact(shown))
            } else {
                format!("`{}` {what}: {}", self.plan.redact(shown), tail.trim_end())
            };
            self.log(LogStream::System, &format!("{message}\n")).await?;
            return Err(PackageError::CommandFailed {
                message,
                exit_code: out.exit_code,
                timed_out: out.timed_out,
                stdout: if private_output {
                    String::new()
                } else {
                    self.plan.redact(&out.stdout_text())
                },
                stderr,
                duration: out.duration,
            });
        }
        Ok(out)
    }

    async fn run_command(&mut self, r: &RunStep) -> Result<ExecOutput, PackageError> {
        let credential = r.credential.unwrap_or(self.plan.credential);
        let stdin = r.stdin.as_ref().map(|s| s.expose().as_bytes().to_vec());
        self.exec(
            credential,
            &r.command,
            &r.command,
            stdin.as_deref(),
            r.timeout,
            r.private_output,
        )
        .await
    }

    async fn put_file(&mut self, p: &FileStep) -> Result<ExecOutput, PackageError> {
        let credential = p.credential.unwrap_or(self.plan.credential);
        let command = p.install_command("cat");
        let shown = format!("put {} ({:04o})", p.path, p.mode);
        let contents = match &p.contents {
            FileContents::Text(_) | FileContents::Secret(_) => p.contents.bytes().to_vec(),
        };
        self.exec(
            credential,
            &shown,
            &command,
            Some(&contents),
            Duration::from_secs(60),
            false,
        )
        .await
    }

    async fn apply(&self, change: &StoreChange) -> Result<(), PackageError> {
        let id = self.ctx.server.id;
        match change {
            StoreChange::UpsertService {
                name,
                service_type,
                configuration,
                status,
            } => {
                self.store
                    .upsert_service(id, name, *service_type, configuration, *status)
                    .await?;
            }
            StoreChange::DeleteService { name } => self.store.delete_service(id, name).await?,
            StoreChange::SetProvisionStatus(s) => self.store.set_provision_status(id, *s).await?,
            StoreChange::SetServerOs(os) => self.store.set_server_os(id, os).await?,
            StoreChange::SetServiceConfiguration {
                name,
                configuration,
            } => {
                self.store
                    .set_service_configuration(id, name, configuration)
                    .await?
            }
        }
        Ok(())
    }
}

/// Connect, retrying a refused or unreachable port a few times: sshd is briefly away while it reloads
/// (as right after hardening) or while a server reboots. Key and host-key errors are not retried.
async fn connect_with_retry(
    target: &SshTarget,
    cancel: &CancellationToken,
) -> Result<SshSession, SshError> {
    let mut attempt = 0u64;
    loop {
        match SshSession::connect(target).await {
            Err(SshError::Connect { .. }) if attempt < 5 && !cancel.is_cancelled() => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            other => return other,
        }
    }
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
