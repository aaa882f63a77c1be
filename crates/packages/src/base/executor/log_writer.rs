//! A command's output on its way to the store: whole lines, secrets redacted, the command line written with
//! its first output.

use std::time::Duration;

use brokeforge_ssh::{OutputChunk, Stream};
use brokeforge_store::{LogStream, Store, StoreError};
use tokio::sync::{mpsc, watch};

const STREAMS: [LogStream; 2] = [LogStream::Stdout, LogStream::Stderr];

/// How long a command line waits for its command's first output, to be written with it.
const FIRST_OUTPUT_WAIT: Duration = Duration::from_millis(50);

/// Writes streamed output to the store in whole lines, so a secret is never split across two chunks and
/// missed by redaction.
pub(super) struct LogWriter {
    pub(super) store: Store,
    pub(super) server_id: i64,
    pub(super) job_id: Option<i64>,
    pub(super) attempt: Option<i64>,
    pub(super) event_id: Option<watch::Receiver<Option<i64>>>,
    pub(super) secrets: Vec<brokeforge_core::Secret>,
}

impl LogWriter {
    /// Write the command line, then the command's output as it comes. The command line waits up to
    /// [`FIRST_OUTPUT_WAIT`] for the first output, so that a command that prints at once costs one statement
    /// for both (a recipe's step: one of the few round trips of its job, #17).
    pub(super) async fn drain(
        self,
        command_line: String,
        mut rx: mpsc::UnboundedReceiver<OutputChunk>,
    ) -> Result<(), StoreError> {
        let mut head = Some(command_line.into_bytes());
        let mut next = match tokio::time::timeout(FIRST_OUTPUT_WAIT, rx.recv()).await {
            Ok(first) => first,
            Err(_) => {
                self.write(command_row(&mut head)).await?;
                rx.recv().await
            }
        };
        let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        while let Some(chunk) = next {
            // What arrived while the last rows were written goes into one row per stream: rows cost a round
            // trip each, and a busy database should mean fewer, larger rows rather than a queue.
            let mut more = Some(chunk);
            while let Some(chunk) = more {
                let i = match chunk.stream {
                    Stream::Stdout => 0,
                    Stream::Stderr => 1,
                };
                pending[i].extend_from_slice(&chunk.data);
                // Bounded, so that a command that never pauses still has its output written as it goes.
                more = (pending[0].len() + pending[1].len() < 256 * 1024)
                    .then(|| rx.try_recv().ok())
                    .flatten();
            }
            let mut rows = command_row(&mut head);
            for (i, out) in pending.iter_mut().enumerate() {
                // Complete lines; a partial line waits unless it grows large.
                let cut = match out.iter().rposition(|b| *b == b'\n') {
                    Some(pos) => pos + 1,
                    None if out.len() > 64 * 1024 => out.len(),
                    None => continue,
                };
                rows.push((STREAMS[i], out.drain(..cut).collect()));
            }
            self.write(rows).await?;
            next = rx.recv().await;
        }
        let mut rows = command_row(&mut head);
        for (i, rest) in pending.into_iter().enumerate() {
            if !rest.is_empty() {
                rows.push((STREAMS[i], rest));
            }
        }
        self.write(rows).await
    }

    /// Store `rows` in their order, in one statement (nothing when there are none).
    async fn write(&self, rows: Vec<(LogStream, Vec<u8>)>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let texts: Vec<(LogStream, String)> = rows
            .iter()
            .map(|(stream, bytes)| {
                let text = String::from_utf8_lossy(bytes);
                (
                    *stream,
                    brokeforge_core::secret::redact(&text, &self.secrets),
                )
            })
            .collect();
        let event_id = match &self.event_id {
            // Waits for the milestone's event row; if writing it failed, the line is kept without it.
            Some(rx) => rx
                .clone()
                .wait_for(|id| id.is_some())
                .await
                .ok()
                .and_then(|id| *id),
            None => None,
        };
        let rows: Vec<(LogStream, &str)> = texts.iter().map(|(s, t)| (*s, t.as_str())).collect();
        self.store
            .append_attempt_logs(self.server_id, self.job_id, self.attempt, event_id, &rows)
            .await
    }
}

/// The command line's row, if it has not been written yet.
fn command_row(head: &mut Option<Vec<u8>>) -> Vec<(LogStream, Vec<u8>)> {
    head.take()
        .map(|l| (LogStream::System, l))
        .into_iter()
        .collect()
}
