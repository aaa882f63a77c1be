//! An experiment (#17, item 4), not used by jobs: one long-lived `sh` on one channel that runs commands one
//! after another, each delimited by a random sentinel (how Mitogen runs Ansible's tasks), to measure against
//! one `exec` per command. Each command keeps its own exit code, stdout and stderr; its stdin is given by the
//! shell's `printf` builtin (never on a command line) or is `/dev/null`, so a command cannot read the
//! protocol; its timeout is `timeout` inside the shell, as for `exec`.

use std::time::{Duration, Instant};

use brokeforge_core::shell_quote;
use russh::{ChannelMsg, client};

use super::{BACKSTOP, ExecOutput, SshSession, TIMEOUT_EXIT};
use crate::SshError;

/// The shell; broken (every later `run` fails) once a command outlives its deadline or the channel closes.
pub struct Shell {
    channel: russh::Channel<client::Msg>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    nonce: String,
    out: Vec<u8>,
    err: Vec<u8>,
    broken: bool,
}

impl SshSession {
    /// Open a long-lived shell on its own channel.
    pub async fn open_shell(&self) -> Result<Shell, SshError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SshError::Protocol("connection closed".into()))?;
        let channel = self.open_channel().await?;
        channel.exec(true, "exec sh").await?;
        let nonce: String = (0..16)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        Ok(Shell {
            channel,
            _permit: permit,
            nonce: format!("BF{nonce}"),
            out: Vec::new(),
            err: Vec::new(),
            broken: false,
        })
    }
}

/// Bytes as a `printf` format of octal escapes: any byte, nothing the shell interprets.
fn printf_octal(data: &[u8]) -> String {
    data.iter().map(|b| format!("\\{b:03o}")).collect()
}

impl Shell {
    /// Run `command` (`sh -c` inside `timeout`, as `exec` does) with `stdin`; its exit code and output.
    pub async fn run(
        &mut self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        if self.broken {
            return Err(SshError::Protocol(
                "the shell is gone: an earlier command outlived its deadline".into(),
            ));
        }
        let secs = timeout.as_secs().max(1);
        let run = format!(
            "timeout --kill-after=5 {secs} sh -c {}",
            shell_quote(command)
        );
        let line = match stdin {
            Some(data) => format!("printf '{}' | {run}", printf_octal(data)),
            None => format!("{run} </dev/null"),
        };
        let n = &self.nonce;
        // The leading newline makes the sentinel a line of its own whatever the command printed last.
        let script = format!("{line}; printf '\\n{n} %d\\n' $?; printf '\\n{n}\\n' >&2\n");
        let started = Instant::now();
        self.channel.data(script.as_bytes()).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs) + BACKSTOP;
        let out_mark = format!("\n{n} ");
        let err_mark = format!("\n{n}\n");
        let mut code: Option<(usize, u32)> = None;
        let mut err_end: Option<usize> = None;
        while code.is_none() || err_end.is_none() {
            let msg = tokio::select! {
                m = self.channel.wait() => m,
                _ = tokio::time::sleep_until(deadline) => {
                    self.broken = true;
                    let mut out = ExecOutput { timed_out: true, ..ExecOutput::default() };
                    out.duration = started.elapsed();
                    return Ok(out);
                }
            };
            match msg {
                Some(ChannelMsg::Data { data }) => self.out.extend_from_slice(&data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    self.err.extend_from_slice(&data)
                }
                None
                | Some(ChannelMsg::Close)
                | Some(ChannelMsg::Eof)
                | Some(ChannelMsg::ExitStatus { .. }) => {
                    self.broken = true;
                    return Err(SshError::Protocol("the shell ended".into()));
                }
                Some(_) => {}
            }
            if code.is_none() {
                code = find(&self.out, out_mark.as_bytes()).and_then(|at| {
                    let rest = &self.out[at + out_mark.len()..];
                    let nl = rest.iter().position(|b| *b == b'\n')?;
                    let c = std::str::from_utf8(&rest[..nl]).ok()?.parse().ok()?;
                    Some((at, c))
                });
            }
            if err_end.is_none() {
                err_end = find(&self.err, err_mark.as_bytes());
            }
        }
        let ((at, exit), err_at) = (code.unwrap_or_default(), err_end.unwrap_or_default());
        let rest = self.out[at + out_mark.len()..].to_vec();
        let after = rest.iter().position(|b| *b == b'\n').map_or(0, |p| p + 1);
        let mut out = ExecOutput {
            exit_code: Some(exit),
            stdout: self.out[..at].to_vec(),
            stderr: self.err[..err_at].to_vec(),
            ..ExecOutput::default()
        };
        self.out = rest[after..].to_vec();
        self.err = self.err[err_at + err_mark.len()..].to_vec();
        out.duration = started.elapsed();
        out.timed_out = TIMEOUT_EXIT.contains(&exit) && out.duration >= Duration::from_secs(secs);
        Ok(out)
    }

    pub async fn close(self) {
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
