//! One long-lived `sh` per connection that runs a job's commands one after another (#17 item 4, what Mitogen
//! does for Ansible): each command is followed by a random sentinel on both streams. A command keeps what
//! `exec` gives it: its exit code, stdout and stderr apart and streamed as they come, stdin through the
//! shell's input (a here-document, or the `printf` builtin for bytes one cannot carry; never a command line)
//! or `/dev/null`, and a timeout.
//! A job's shell also holds the server's job lock (an open file the shell keeps `flock`ed and closes for
//! every command it starts), so a job needs one channel where it needed two, and a step costs the server a
//! `fork` instead of a channel and a login shell. Measured against one exec per step by `bench
//! --shell-experiment`.
//!
//! A job's step (a tagged run) is a subshell of the job's shell, two `fork`s on the server where `timeout` and
//! `sh -c` were two more programs (most of a step's cost there, #17). Its deadline is kept by the client:
//! past it, the job's tag is stopped on a channel of its own (SIGTERM, SIGKILL five seconds later, as
//! `timeout --kill-after=5` did), which ends the shell with the step, so the caller opens a new shell for
//! what follows. The shell stops the step the same way itself when the connection goes (its read of the
//! client's go-ahead ends), so no step outlives its client. An untagged run keeps the `timeout` wrapper.
//!
//! One difference remains: a command killed by a signal reports `128 + N` as its exit code (what a shell
//! reports) where `exec` reports the signal by name.

use std::time::{Duration, Instant};

use brokeforge_core::shell_quote;
use std::sync::Arc;

use russh::{ChannelMsg, Sig, client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    BACKSTOP, ExecOutput, ExecRequest, Handler, OutputChunk, RUN_DIR, SshSession, Stream,
    TIMEOUT_EXIT, check_tag, open_channel, stop_command, take, wrap,
};
use crate::SshError;

/// Stdin larger than this goes by `exec` on a channel of its own: as a `printf` argument it is four times
/// its size, and the shell parses all of it.
pub const SHELL_STDIN_MAX: usize = 256 * 1024;

/// The shell; broken (every later `run` fails) once a command outlived its deadline, was cancelled, or the
/// channel closed.
pub struct Shell {
    channel: russh::Channel<client::Msg>,
    /// The connection, for the channel that stops a step past its deadline.
    handle: Arc<client::Handle<Handler>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    host: String,
    nonce: String,
    out: Vec<u8>,
    err: Vec<u8>,
    broken: Option<&'static str>,
    locked: bool,
    /// The job's tag (checked), whose process files the shell removes when it ends well.
    tag: Option<String>,
}

/// How a shell starts.
#[derive(Default)]
pub struct ShellStart<'a> {
    /// Marks the shell with a job's tag, so that [`super::stop_command`] ends it (and frees the lock it holds)
    /// like any command of the job.
    pub tag: Option<&'a str>,
    /// Shell run before the shell starts (stopping what an earlier attempt left); its output is returned.
    pub prelude: Option<&'a str>,
    /// The server-wide lock file to take and hold for the shell's life (waiting while another holds it).
    pub lock: Option<&'a str>,
    pub cancel: Option<&'a CancellationToken>,
}

/// A line for the shell: plain (the exchange adds the sentinels), or one that prints them itself and then
/// waits for a line from the client (a job's step).
enum Line {
    Plain(String),
    Released(String),
}

/// What one exchange with the shell waits for.
struct Exchange<'a> {
    deadline: tokio::time::Instant,
    cancel: Option<&'a CancellationToken>,
    sink: Option<&'a mpsc::UnboundedSender<OutputChunk>>,
    max_output: usize,
    /// Called once if the exchange takes longer than this (a lock held by someone else).
    slow: Option<(Duration, Box<dyn FnOnce() + Send + 'a>)>,
    /// Past the deadline, stop this tag's processes before giving the shell up.
    stop: Option<&'a str>,
}

impl SshSession {
    /// A plain shell on its own channel: no tag, no lock.
    pub async fn open_shell(&self) -> Result<Shell, SshError> {
        Ok(self.start_shell(ShellStart::default(), || {}).await?.0)
    }

    /// Open a shell as `start` says; it and the prelude's output (trimmed). `waiting` is called once if the
    /// lock is not free within two seconds.
    pub async fn start_shell(
        &self,
        start: ShellStart<'_>,
        waiting: impl FnOnce() + Send,
    ) -> Result<(Shell, String), SshError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SshError::Protocol("connection closed".into()))?;
        let prelude = start.prelude.map(|p| format!("{p}\n")).unwrap_or_default();
        // `exec` keeps the process id sshd made a process group leader: the id written is the group's, and
        // the shell's command line carries the tag for `stop_command`.
        let command = match start.tag {
            Some(tag) => {
                let tag = check_tag(tag)?;
                format!(
                    "{prelude}{{ echo $$ > {RUN_DIR}/{tag}.lock; }} 2>/dev/null; exec sh -s bf-{tag}"
                )
            }
            None => format!("{prelude}exec sh"),
        };
        let channel = self.open_channel().await?;
        channel.exec(true, command).await?;
        let nonce: String = (0..16)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let mut shell = Shell {
            channel,
            handle: self.handle.clone(),
            _permit: permit,
            host: self.host.clone(),
            nonce: format!("BF{nonce}"),
            out: Vec::new(),
            err: Vec::new(),
            broken: None,
            locked: false,
            tag: start.tag.map(str::to_string),
        };
        // The lock is an fd of the shell itself: opened read-only (no `O_CREAT` on a file another user made
        // in the sticky /run/lock), created first when missing.
        let setup = match start.lock {
            Some(lock) => {
                let l = shell_quote(lock);
                format!(
                    "{{ [ -e {l} ] || : >> {l}; }} 2>/dev/null; if [ -r {l} ]; then exec 9< {l}; flock 9; else echo 'cannot open it' >&2; false; fi"
                )
            }
            None => ":".to_string(),
        };
        let day = tokio::time::Instant::now() + Duration::from_secs(86_400);
        let out = shell
            .exchange(
                Line::Plain(setup),
                Exchange {
                    deadline: day,
                    cancel: start.cancel,
                    sink: None,
                    max_output: 64 * 1024,
                    slow: Some((Duration::from_secs(2), Box::new(waiting))),
                    stop: None,
                },
            )
            .await;
        let failed = |why: String| match start.lock {
            Some(lock) => SshError::Protocol(format!(
                "{} could not take the job lock {lock}: {why}",
                self.host
            )),
            None => SshError::Protocol(format!("{} could not start a shell: {why}", self.host)),
        };
        let out = match out {
            Ok(o) if o.cancelled => {
                shell.close().await;
                return Err(SshError::Protocol(
                    "cancelled while waiting for the server's job lock".into(),
                ));
            }
            Ok(o) if o.success() => o,
            Ok(o) => {
                let why = format!("{} {}", o.stdout_text().trim(), o.stderr_text().trim());
                shell.close().await;
                return Err(failed(why.trim().to_string()));
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        shell.locked = start.lock.is_some();
        Ok((shell, out.stdout_text().trim().to_string()))
    }
}

/// Bytes as a `printf` format of octal escapes: any byte, nothing the shell interprets.
fn printf_octal(data: &[u8]) -> String {
    data.iter().map(|b| format!("\\{b:03o}")).collect()
}

/// `run` with `stdin` as its input and without the job lock (fd 9: a daemon it starts would hold the lock
/// forever), and the here-document that follows the line it ends, if any. Text goes as a quoted
/// here-document (the shell copies it as it is, with no process for it, where a `printf` pipe costs a fork);
/// what a here-document cannot carry (a NUL, no final newline, the delimiter) goes through `printf`.
fn with_stdin(run: &str, stdin: Option<&[u8]>, delimiter: &str) -> (String, Option<String>) {
    match stdin {
        None => (format!("{run} </dev/null 9<&-"), None),
        Some(data) => match std::str::from_utf8(data) {
            Ok(text)
                if text.ends_with('\n') && !text.contains('\0') && !text.contains(delimiter) =>
            {
                (
                    format!("{run} 9<&- <<'{delimiter}'"),
                    Some(format!("{text}{delimiter}")),
                )
            }
            _ => (
                format!("{{ printf '{}' | {run}; }} 9<&-", printf_octal(data)),
                None,
            ),
        },
    }
}

/// `line`, then the here-document its last redirection reads, if any.
fn with_heredoc(line: String, heredoc: Option<String>) -> String {
    match heredoc {
        Some(body) => format!("{line}\n{body}"),
        None => line,
    }
}

/// One stream of the shell: bytes up to this command's sentinel are its output; a tail that could be the
/// start of the sentinel waits for the next chunk.
struct Demux<'a> {
    mark: &'a [u8],
    /// The exit code follows the sentinel on stdout (up to a newline); nothing follows it on stderr.
    with_code: bool,
    stream: Stream,
}

impl Demux<'_> {
    /// Hand `pending`'s finished part to `emit`; `Some(code)` (0 on stderr) once the sentinel is in.
    fn advance(&self, pending: &mut Vec<u8>, mut emit: impl FnMut(&[u8])) -> Option<u32> {
        if let Some(at) = find(pending, self.mark) {
            let rest = &pending[at + self.mark.len()..];
            let (code, used) = if self.with_code {
                let nl = rest.iter().position(|b| *b == b'\n')?;
                let code = std::str::from_utf8(&rest[..nl]).ok()?.trim().parse().ok()?;
                (code, nl + 1)
            } else {
                (0, 0)
            };
            emit(&pending[..at]);
            pending.drain(..at + self.mark.len() + used);
            return Some(code);
        }
        // Only a tail that could begin the sentinel waits: a finished line goes out at once.
        let keep = (1..self.mark.len().min(pending.len() + 1))
            .rev()
            .find(|k| pending.ends_with(&self.mark[..*k]))
            .unwrap_or(0);
        let cut = pending.len() - keep;
        if cut > 0 {
            emit(&pending[..cut]);
            pending.drain(..cut);
        }
        None
    }
}

impl Demux<'_> {
    /// [`Demux::advance`] into `out`'s buffer of this stream, within `max` bytes, copied to `sink` live.
    fn feed(
        &self,
        pending: &mut Vec<u8>,
        out: &mut ExecOutput,
        max: usize,
        sink: Option<&mpsc::UnboundedSender<OutputChunk>>,
    ) -> Option<u32> {
        let buf = match self.stream {
            Stream::Stdout => &mut out.stdout,
            Stream::Stderr => &mut out.stderr,
        };
        let truncated = &mut out.truncated;
        self.advance(pending, |b| take(buf, truncated, b, max, self.stream, sink))
    }
}

impl Shell {
    /// Whether this shell holds the job lock.
    pub fn holds_lock(&self) -> bool {
        self.locked && self.broken.is_none()
    }

    /// Run one command as [`SshSession::exec`] would (its timeout, tag, stdin, output limit, live output and
    /// cancellation); `req.stream` is not supported here.
    pub async fn run(&mut self, req: ExecRequest<'_>) -> Result<ExecOutput, SshError> {
        if req.stream.is_some() {
            return Err(SshError::Protocol(
                "a streamed command needs a channel of its own".into(),
            ));
        }
        let secs = req.timeout.as_secs().max(1);
        let tag = req.tag.map(check_tag).transpose()?;
        let delimiter = format!("{}IN", self.nonce);
        let (line, backstop) = match tag {
            // A subshell (the job's shell process group, which the tag stops): `eval` parses the command
            // there, so a syntax error is its exit code 2 and not the shell's end, and `set --` hides the
            // shell's own argument. It runs in the background and prints the sentinels itself, while the
            // shell waits for a line from BrokeForge (sent once both came back): if the connection goes
            // first (BrokeForge stopped, the network gone), that read ends and the shell stops its process
            // group, SIGTERM and SIGKILL five seconds later (what `timeout --kill-after=5` did at a step's
            // deadline), which frees the lock.
            Some(_) => {
                let run = format!("( set --; eval {} )", shell_quote(req.command));
                let (run, heredoc) = with_stdin(&run, req.stdin, &delimiter);
                let n = &self.nonce;
                let line = format!(
                    "{{ {run}; printf '{n} %d\\n' $?; printf '{n}\\n' >&2; }} & read -r _ || \
                     {{ trap '' TERM; kill -TERM 0; sleep 5; kill -KILL 0; }}; wait $!"
                );
                (Line::Released(with_heredoc(line, heredoc)), Duration::ZERO)
            }
            None => {
                let wrapped = wrap(req.command, secs, None)?;
                let (run, heredoc) = with_stdin(&wrapped, req.stdin, &delimiter);
                (Line::Plain(with_heredoc(run, heredoc)), BACKSTOP)
            }
        };
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs) + backstop;
        let mut out = self
            .exchange(
                line,
                Exchange {
                    deadline,
                    cancel: req.cancel,
                    sink: req.output,
                    max_output: req.max_output,
                    slow: None,
                    stop: tag,
                },
            )
            .await?;
        out.duration = started.elapsed();
        if tag.is_none()
            && !out.cancelled
            && out.exit_code.is_some_and(|c| TIMEOUT_EXIT.contains(&c))
            && out.duration >= Duration::from_secs(secs)
        {
            out.timed_out = true;
        }
        Ok(out)
    }

    /// Send `line` to the shell (with the sentinels after a plain one) and read until both came back.
    async fn exchange(&mut self, line: Line, x: Exchange<'_>) -> Result<ExecOutput, SshError> {
        if let Some(why) = self.broken {
            return Err(SshError::Protocol(format!(
                "the shell on {} is gone: {why}",
                self.host
            )));
        }
        let n = &self.nonce;
        // The sentinel is found wherever it starts (output without a final newline ends right before it).
        let (script, released) = match line {
            Line::Plain(line) => (
                format!("{line}\nprintf '{n} %d\\n' $?; printf '{n}\\n' >&2\n"),
                false,
            ),
            Line::Released(line) => (format!("{line}\n"), true),
        };
        let (out_mark, err_mark) = (format!("{n} "), format!("{n}\n"));
        let demux = [
            Demux {
                mark: out_mark.as_bytes(),
                with_code: true,
                stream: Stream::Stdout,
            },
            Demux {
                mark: err_mark.as_bytes(),
                with_code: false,
                stream: Stream::Stderr,
            },
        ];
        let began = Instant::now();
        self.channel.data(script.as_bytes()).await?;
        let mut out = ExecOutput::default();
        let mut done: [Option<u32>; 2] = [None, None];
        let never = CancellationToken::new();
        let cancel = x.cancel.unwrap_or(&never);
        let (slow_after, mut slow) = match x.slow {
            Some((after, f)) => (after, Some(f)),
            None => (Duration::ZERO, None),
        };
        let slow_at = tokio::time::Instant::now() + slow_after;
        // Bytes that came before this exchange (a stray background write) are read as its own.
        for (i, d) in demux.iter().enumerate() {
            let pending = if i == 0 { &mut self.out } else { &mut self.err };
            done[i] = d.feed(pending, &mut out, x.max_output, x.sink);
        }
        while done.iter().any(Option::is_none) {
            let msg = tokio::select! {
                m = self.channel.wait() => m,
                _ = tokio::time::sleep_until(x.deadline) => {
                    if let Some(tag) = x.stop {
                        self.stop_tag(tag).await;
                    }
                    self.abandon("a command outlived its deadline").await;
                    out.timed_out = true;
                    return Ok(out);
                }
                _ = cancel.cancelled() => {
                    self.abandon("its command was cancelled").await;
                    out.cancelled = true;
                    return Ok(out);
                }
                _ = tokio::time::sleep_until(slow_at), if slow.is_some() => {
                    if let Some(f) = slow.take() {
                        f();
                    }
                    continue;
                }
            };
            let i = match msg {
                Some(ChannelMsg::Data { data }) => {
                    self.out.extend_from_slice(&data);
                    0
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    self.err.extend_from_slice(&data);
                    1
                }
                None
                | Some(ChannelMsg::Close)
                | Some(ChannelMsg::Eof)
                | Some(ChannelMsg::ExitStatus { .. })
                | Some(ChannelMsg::ExitSignal { .. }) => {
                    self.broken = Some("the shell ended");
                    return Err(SshError::ConnectionLost {
                        host: self.host.clone(),
                        seconds: began.elapsed().as_secs(),
                    });
                }
                Some(_) => continue,
            };
            if done[i].is_none() {
                let pending = if i == 0 { &mut self.out } else { &mut self.err };
                done[i] = demux[i].feed(pending, &mut out, x.max_output, x.sink);
            }
        }
        out.exit_code = done[0];
        if released {
            // The shell waits for this line before it reads the next command.
            self.channel.data(&b"\n"[..]).await?;
        }
        Ok(out)
    }

    /// Stop what runs under `tag` (the shell and its step) on a channel of its own, waiting until it is
    /// done: SIGTERM, and SIGKILL for what is left five seconds later.
    async fn stop_tag(&self, tag: &str) {
        let stopped = async {
            let mut channel = open_channel(&self.handle).await?;
            channel.exec(true, stop_command(tag)?).await?;
            channel.eof().await?;
            while let Some(msg) = channel.wait().await {
                if matches!(msg, ChannelMsg::ExitStatus { .. } | ChannelMsg::Close) {
                    break;
                }
            }
            Ok::<_, SshError>(())
        };
        match tokio::time::timeout(Duration::from_secs(30), stopped).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(host = %self.host, error = %e, "stopping a step past its deadline failed")
            }
            Err(_) => {
                tracing::warn!(host = %self.host, "stopping a step past its deadline took over 30 s")
            }
        }
    }

    /// Whether the shell was given up (a step outlived its deadline or was cancelled, or it ended): every
    /// later `run` fails, and the caller opens a new one.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Give the shell up mid-command: what runs there is the caller's to stop (by its tag).
    async fn abandon(&mut self, why: &'static str) {
        self.broken = Some(why);
        let _ = self.channel.signal(Sig::KILL).await;
        let _ = self.channel.close().await;
    }

    /// End the shell: it exits when its input ends, which frees the lock it holds. A job's shell that ends
    /// well first becomes `rm` of its tag's process files (an `exec`, no new process), so they do not pile
    /// up one pair per job; after a cancel they stay for `stop_command`.
    pub async fn close(mut self) {
        if let (Some(tag), None) = (&self.tag, self.broken) {
            let rm = format!("exec rm -f {RUN_DIR}/{tag} {RUN_DIR}/{tag}.lock\n");
            let _ = self.channel.data(rm.as_bytes()).await;
            let _ = self.channel.eof().await;
            // Until it has ended: sshd drops what it has not yet handed to the shell when the connection goes
            // right after.
            let ended = async {
                while let Some(msg) = self.channel.wait().await {
                    if matches!(msg, ChannelMsg::ExitStatus { .. } | ChannelMsg::Close) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), ended).await;
        }
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
