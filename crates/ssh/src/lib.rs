//! SSH for BrokeForge: key generation, a russh client with host-key pinning and bounded channels, and (with
//! the `testkit` feature) an in-process SSH server for tests.

mod client;
pub mod keys;
pub mod known_hosts;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use client::{
    ExecOutput, ExecRequest, OutputChunk, SHELL_STDIN_MAX, Shell, ShellStart, SshSession,
    SshTarget, Stream, prepare_tagged_runs, refuse_internal_addresses, stop_command, stop_prelude,
};
pub use known_hosts::{HostKeyPolicy, Verdict};

/// Channels open at once on one connection. OpenSSH allows 10 sessions per connection; stay well below.
pub const MAX_CHANNELS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "the SSH host key of {host} has changed: pinned {expected}, server presented {actual}. \
         If the server was reinstalled on purpose, re-pin its new fingerprint; otherwise someone may be \
         intercepting the connection. No command was run"
    )]
    HostKeyMismatch {
        host: String,
        expected: String,
        actual: String,
    },
    #[error(
        "the SSH host key of {host} is not pinned (server presented {actual}). Pin this fingerprint after \
         checking it on the server (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), or allow trust on first use"
    )]
    HostKeyUnknown { host: String, actual: String },
    #[error("cannot connect to {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("connecting to {host} timed out after {seconds} s")]
    ConnectTimeout { host: String, seconds: u64 },
    #[error(
        "the server {host} refused the key of user `{user}`: check that the user exists and its authorized_keys holds BrokeForge's public key"
    )]
    AuthRejected { host: String, user: String },
    #[error(
        "the connection to {host} was lost {seconds} s into the command (it may still be running there; \
         the next attempt stops what is left of it first)"
    )]
    ConnectionLost { host: String, seconds: u64 },
    #[error("invalid key: {0}")]
    Key(String),
    #[error("SSH protocol error: {0}")]
    Protocol(String),
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        SshError::Protocol(e.to_string())
    }
}
