//! The SSH client: one connection per (server, credential), many short-lived exec channels on it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brokeforge_core::{Secret, shell_quote};
use bytes::Bytes;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Sig, client};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::known_hosts::{HostKeyPolicy, Verdict};
use crate::{MAX_CHANNELS, SshError, keys};

mod shell;
pub use shell::{SHELL_STDIN_MAX, Shell, ShellStart};

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key: Secret,
    pub host_key: HostKeyPolicy,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A piece of output as it arrives, for live streaming.
#[derive(Debug, Clone)]
pub struct OutputChunk {
    pub stream: Stream,
    pub data: Bytes,
}

/// One command to run.
pub struct ExecRequest<'a> {
    pub command: &'a str,
    /// Bytes written to the command's stdin, then EOF. Secrets travel here, never in `command`.
    pub stdin: Option<&'a [u8]>,
    pub timeout: Duration,
    /// Bytes kept per stream; the rest is dropped and `truncated` set.
    pub max_output: usize,
    pub cancel: Option<&'a CancellationToken>,
    pub output: Option<&'a mpsc::UnboundedSender<OutputChunk>>,
    /// Marks the command's process group with this name (see [`stop_command`]), so that it can be found and
    /// stopped later: on cancel, after a lost lease, or by the next attempt of the same job.
    pub tag: Option<&'a str>,
    /// Stdout goes here as it arrives instead of into the output (a download). Sending waits while the
    /// receiver is full, which stops reading the channel: memory stays flat whatever the size. A receiver
    /// that goes away stops the command.
    pub stream: Option<&'a mpsc::Sender<Bytes>>,
}

impl<'a> ExecRequest<'a> {
    pub fn new(command: &'a str, timeout: Duration) -> Self {
        ExecRequest {
            command,
            stdin: None,
            timeout,
            max_output: 1 << 20,
            cancel: None,
            output: None,
            tag: None,
            stream: None,
        }
    }
}

/// Where tagged commands leave the id of their process group (per remote user).
const RUN_DIR: &str = "\"${HOME:-/tmp}/.brokeforge-run\"";

/// A tag as it may appear in a file name and a command line.
fn check_tag(tag: &str) -> Result<&str, SshError> {
    if !tag.is_empty()
        && tag.len() <= 100
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(tag)
    } else {
        Err(SshError::Protocol(format!("bad command tag `{tag}`")))
    }
}

/// Shell that creates the directory tagged commands mark themselves in.
pub fn prepare_tagged_runs() -> String {
    format!("[ -d {RUN_DIR} ] || mkdir -p -m 700 {RUN_DIR}")
}

/// Shell that stops every process group tagged `tag` still running (SIGTERM, then SIGKILL after five
/// seconds) and prints how many it stopped. A group is stopped only if a process of it still carries the tag,
/// so a reused process id is never hit; once signalled it stays ours while it has a process (Linux does not
/// give out an id a process group still uses), so what outlives the tagged shell of a step still gets the
/// SIGKILL.
pub fn stop_command(tag: &str) -> Result<String, SshError> {
    let tag = check_tag(tag)?;
    Ok(format!(
        r#"f={RUN_DIR}/{tag}; n=0; pg=; for m in "$f" "$f".lock; do [ -r "$m" ] && read -r p < "$m" && pg="$pg $p"; done
mine() {{ [ -n "$1" ] || return 1; by=$2; for d in /proc/[0-9]*; do read -r st < "$d/stat" 2>/dev/null || continue; st=${{st##*) }}; set -- "$1" $st; [ "$4" = "$1" ] || continue; [ -z "$by" ] && return 0; tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -q -- "bf-{tag}" && return 0; done; return 1; }}
live=; for p in $pg; do if mine "$p" tag; then kill -TERM "-$p" 2>/dev/null; live="$live $p"; n=$((n+1)); fi; done
i=0; while [ -n "$live" ] && [ "$i" -lt 50 ]; do still=; for p in $live; do mine "$p" && still="$still $p"; done; live=$still; [ -z "$live" ] && break; sleep 0.1; i=$((i+1)); done
for p in $live; do mine "$p" && kill -KILL "-$p" 2>/dev/null; done
[ -z "$pg" ] || rm -f "$f" "$f".lock; echo "stopped $n""#
    ))
}

/// The first words of a job's shell: make the run directory, then stop what an earlier attempt with `tag`
/// left running (printing `stopped N`).
pub fn stop_prelude(tag: &str) -> Result<String, SshError> {
    Ok(format!("{}; {}", prepare_tagged_runs(), stop_command(tag)?))
}

/// The command as it runs: in its own process group under coreutils `timeout`, marked with `tag`.
fn wrap(command: &str, secs: u64, tag: Option<&str>) -> Result<String, SshError> {
    Ok(match tag {
        None => format!(
            "timeout --kill-after=5 {secs} sh -c {}",
            shell_quote(command)
        ),
        // `exec` keeps the shell's process id for `timeout`, which leads its own process group: the id
        // written first is the group's.
        Some(tag) => {
            let tag = check_tag(tag)?;
            format!(
                "{{ echo $$ > {RUN_DIR}/{tag}; }} 2>/dev/null; exec timeout --kill-after=5 {secs} sh -c {} bf-{tag}",
                shell_quote(command)
            )
        }
    })
}

/// Set by the operator (`BROKEFORGE_REFUSE_PRIVATE_ADDRESSES=1`): never connect to an internal address,
/// whatever a server's name resolves to at connect time.
static REFUSE_INTERNAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn refuse_internal_addresses(on: bool) {
    REFUSE_INTERNAL.store(on, Ordering::SeqCst);
}

/// The addresses of `host`, checked against the operator's policy; the connection goes to exactly these.
async fn resolve(
    host: &str,
    port: u16,
    shown: &str,
) -> Result<Vec<std::net::SocketAddr>, SshError> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| SshError::Connect {
            host: shown.to_string(),
            reason: format!("cannot resolve the name: {e}"),
        })?
        .collect();
    if REFUSE_INTERNAL.load(Ordering::SeqCst)
        && let Some(bad) = addrs
            .iter()
            .find(|a| brokeforge_core::validate::is_internal(a.ip()))
    {
        return Err(SshError::Connect {
            host: shown.to_string(),
            reason: format!(
                "it resolves to {}, a private or loopback address, and BROKEFORGE_REFUSE_PRIVATE_ADDRESSES is set",
                bad.ip()
            ),
        });
    }
    Ok(addrs)
}

#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub exit_code: Option<u32>,
    pub exit_signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration: Duration,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.cancelled
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Exit codes of coreutils `timeout` when it ended the command.
const TIMEOUT_EXIT: [u32; 2] = [124, 137];
/// Extra time the remote `timeout` gets to report before the client gives up on the channel.
const BACKSTOP: Duration = Duration::from_secs(10);

struct Handler {
    policy: HostKeyPolicy,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let fp = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.fingerprint(HashAlg::Sha256),
            PublicKeyOrCertificate::Certificate(cert) => {
                cert.public_key().fingerprint(HashAlg::Sha256)
            }
        }
        .to_string();
        let accept = self.policy.validate(&fp) == Verdict::Valid;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fp);
        }
        Ok(accept)
    }
}

/// An authenticated SSH connection.
pub struct SshSession {
    /// Shared with the connection's shells, which open a channel of their own to stop a step that outlived
    /// its deadline.
    handle: Arc<client::Handle<Handler>>,
    permits: Arc<Semaphore>,
    open: Arc<AtomicUsize>,
    host: String,
    user: String,
    fingerprint: String,
}

impl SshSession {
    /// Connect, verify the host key against `target.host_key` before authenticating, then authenticate.
    pub async fn connect(target: &SshTarget) -> Result<SshSession, SshError> {
        let host = format!("{}:{}", target.host, target.port);
        let key = keys::parse_private(&target.key)?;
        let config = Arc::new(client::Config {
            // Keepalives instead of an inactivity timeout: long apt runs print nothing for minutes.
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 4,
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        });
        let seen = Arc::new(Mutex::new(None));
        let handler = Handler {
            policy: target.host_key.clone(),
            seen: seen.clone(),
        };
        let addrs = resolve(&target.host, target.port, &host).await?;
        let connecting = client::connect(config, addrs.as_slice(), handler);
        let result = tokio::time::timeout(target.connect_timeout, connecting)
            .await
            .map_err(|_| SshError::ConnectTimeout {
                host: host.clone(),
                seconds: target.connect_timeout.as_secs(),
            })?;
        let seen_fp = seen.lock().ok().and_then(|s| s.clone());
        let mut handle = match result {
            Ok(h) => h,
            Err(e) => {
                return Err(seen_fp
                    .and_then(|actual| target.host_key.refusal(&host, &actual))
                    .unwrap_or(SshError::Connect {
                        host,
                        reason: e.to_string(),
                    }));
            }
        };
        let fingerprint =
            seen_fp.ok_or_else(|| SshError::Protocol("server sent no host key".into()))?;
        let auth = handle
            .authenticate_publickey(
                &target.user,
                PrivateKeyWithHashAlg::new(Arc::new(key), None),
            )
            .await?;
        if !auth.success() {
            return Err(SshError::AuthRejected {
                host,
                user: target.user.clone(),
            });
        }
        Ok(SshSession {
            handle: Arc::new(handle),
            permits: Arc::new(Semaphore::new(MAX_CHANNELS)),
            open: Arc::new(AtomicUsize::new(0)),
            host,
            user: target.user.clone(),
            fingerprint,
        })
    }

    /// The `SHA256:` fingerprint of the host key this connection verified.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Channels currently open on this connection (0 when idle).
    pub fn open_channels(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Run one command on its own channel. The remote side enforces the timeout with coreutils `timeout`
    /// (which kills the whole process group), the client backs it up by closing the channel.
    /// A non-zero exit is not an error here: the caller decides.
    pub async fn exec(&self, req: ExecRequest<'_>) -> Result<ExecOutput, SshError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SshError::Protocol("connection closed".into()))?;
        let secs = req.timeout.as_secs().max(1);
        let wrapped = wrap(req.command, secs, req.tag)?;
        let started = Instant::now();
        let mut channel = self.open_channel().await?;
        self.open.fetch_add(1, Ordering::SeqCst);
        let _open = OpenGuard(self.open.clone());
        channel.exec(true, wrapped).await?;
        if let Some(input) = req.stdin {
            channel.data(input).await?;
        }
        channel.eof().await?;

        let mut out = ExecOutput::default();
        let mut closed = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs) + BACKSTOP;
        let never = CancellationToken::new();
        let cancel = req.cancel.unwrap_or(&never);
        loop {
            tokio::select! {
                msg = channel.wait() => match msg {
                    None | Some(ChannelMsg::Close) => {
                        closed = true;
                        break;
                    }
                    Some(ChannelMsg::Data { data }) => match req.stream {
                        Some(stream) => {
                            if stream.send(Bytes::copy_from_slice(&data)).await.is_err() {
                                out.cancelled = true;
                                let _ = channel.signal(Sig::KILL).await;
                                let _ = channel.close().await;
                                break;
                            }
                        }
                        None => take(&mut out.stdout, &mut out.truncated, &data, req.max_output, Stream::Stdout, req.output),
                    },
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                        take(&mut out.stderr, &mut out.truncated, &data, req.max_output, Stream::Stderr, req.output);
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => out.exit_code = Some(exit_status),
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => out.exit_signal = Some(format!("{signal_name:?}")),
                    Some(ChannelMsg::Failure) => {
                        let _ = channel.close().await;
                        return Err(SshError::Protocol(format!("{} refused to run the command", self.host)));
                    }
                    Some(_) => {}
                },
                _ = tokio::time::sleep_until(deadline) => {
                    out.timed_out = true;
                    let _ = channel.signal(Sig::KILL).await;
                    let _ = channel.close().await;
                    break;
                }
                _ = cancel.cancelled() => {
                    out.cancelled = true;
                    let _ = channel.signal(Sig::KILL).await;
                    let _ = channel.close().await;
                    break;
                }
            }
        }
        out.duration = started.elapsed();
        // Closed without saying how the command ended: the connection itself went away.
        if closed && out.exit_code.is_none() && out.exit_signal.is_none() && self.handle.is_closed()
        {
            return Err(SshError::ConnectionLost {
                host: self.host.clone(),
                seconds: out.duration.as_secs(),
            });
        }
        if !out.cancelled
            && out.exit_code.is_some_and(|c| TIMEOUT_EXIT.contains(&c))
            && out.duration >= Duration::from_secs(secs)
        {
            out.timed_out = true;
        }
        Ok(out)
    }

    /// Open a session channel. OpenSSH frees a closed session slot a moment after the close crosses the
    /// wire, so a burst can briefly see "no more sessions" while we are under our own limit: retry then.
    async fn open_channel(&self) -> Result<russh::Channel<client::Msg>, SshError> {
        open_channel(&self.handle).await
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// A session channel, retried while the server refuses one (it allows a few at a time).
async fn open_channel(
    handle: &client::Handle<Handler>,
) -> Result<russh::Channel<client::Msg>, SshError> {
    let mut attempt = 0;
    loop {
        match handle.channel_open_session().await {
            Ok(ch) => return Ok(ch),
            Err(russh::Error::ChannelOpenFailure(_)) if attempt < 40 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5 * attempt.min(10))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn take(
    buf: &mut Vec<u8>,
    truncated: &mut bool,
    data: &[u8],
    max: usize,
    stream: Stream,
    sink: Option<&mpsc::UnboundedSender<OutputChunk>>,
) {
    let room = max.saturating_sub(buf.len());
    let kept = &data[..data.len().min(room)];
    if kept.len() < data.len() {
        *truncated = true;
    }
    if kept.is_empty() {
        return;
    }
    buf.extend_from_slice(kept);
    if let Some(sink) = sink {
        let _ = sink.send(OutputChunk {
            stream,
            data: Bytes::copy_from_slice(kept),
        });
    }
}
