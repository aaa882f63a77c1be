//! An in-process SSH server for tests. It authenticates by public key, presents a host key the test controls,
//! and runs each exec request with a real `sh -c` in a temporary directory, so tests need nothing installed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Server as _, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Sig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[derive(Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub channels_opened: AtomicUsize,
    pub channels_closed: AtomicUsize,
    pub max_concurrent: AtomicUsize,
    commands: Mutex<Vec<String>>,
}

struct Shared {
    authorized: Mutex<Vec<(String, PublicKey)>>,
    dir: PathBuf,
    stats: Stats,
}

/// A running test server; stops when dropped.
pub struct TestSshServer {
    pub addr: SocketAddr,
    pub host_key_fingerprint: String,
    shared: Arc<Shared>,
    handle: server::RunningServerHandle,
    _dir: tempfile::TempDir,
}

impl TestSshServer {
    /// Start on 127.0.0.1 with a fresh ed25519 host key.
    pub async fn start() -> TestSshServer {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("host key");
        Self::start_with_host_key(key).await
    }

    pub async fn start_with_host_key(host_key: PrivateKey) -> TestSshServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let shared = Arc::new(Shared {
            authorized: Mutex::new(Vec::new()),
            dir: dir.path().to_path_buf(),
            stats: Stats::default(),
        });
        let host_key_fingerprint = host_key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string();
        let config = Arc::new(server::Config {
            keys: vec![host_key],
            auth_rejection_time: Duration::from_millis(10),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let factory_shared = shared.clone();
        tokio::spawn(async move {
            let mut factory = Factory {
                shared: factory_shared,
            };
            let running = factory.run_on_socket(config, &listener);
            let _ = tx.send(running.handle());
            let _ = running.await;
        });
        let handle = rx.await.expect("server started");
        TestSshServer {
            addr,
            host_key_fingerprint,
            shared,
            handle,
            _dir: dir,
        }
    }

    /// Let `user` log in with `public_key` (OpenSSH format).
    pub fn authorize(&self, user: &str, public_key: &str) {
        let key = PublicKey::from_openssh(public_key.trim()).expect("public key");
        self.shared
            .authorized
            .lock()
            .expect("lock")
            .push((user.to_string(), key));
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The directory commands run in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Channels the client opened and has not closed.
    pub fn open_channels(&self) -> usize {
        let s = &self.shared.stats;
        s.channels_opened.load(Ordering::SeqCst) - s.channels_closed.load(Ordering::SeqCst)
    }

    /// Every command received, in order, exactly as the client sent it.
    pub fn commands(&self) -> Vec<String> {
        self.shared.stats.commands.lock().expect("lock").clone()
    }
}

impl Drop for TestSshServer {
    fn drop(&mut self) {
        self.handle.shutdown("test over".into());
    }
}

struct Factory {
    shared: Arc<Shared>,
}

impl server::Server for Factory {
    type Handler = Conn;
    fn new_client(&mut self, _: Option<SocketAddr>) -> Conn {
        self.shared.stats.connections.fetch_add(1, Ordering::SeqCst);
        Conn {
            shared: self.shared.clone(),
            procs: HashMap::new(),
            open: Arc::new(Mutex::new(HashSet::new())),
        }
    }
}

struct Proc {
    stdin: Option<mpsc::UnboundedSender<Vec<u8>>>,
    pgid: Arc<Mutex<Option<i32>>>,
}

impl Proc {
    /// A signal request, as OpenSSH's sshd handles one: to the session's own process only (its children
    /// live on; stopping them is the client's business).
    fn kill(&self) {
        if let Ok(pid) = self.pgid.lock()
            && let Some(pid) = *pid
        {
            // SAFETY: kill only sends a signal to a process this server started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

pub struct Conn {
    shared: Arc<Shared>,
    procs: HashMap<ChannelId, Proc>,
    /// Channels of this connection not yet closed by either side.
    open: Arc<Mutex<HashSet<ChannelId>>>,
}

/// Count a channel as closed once, whichever side closes it first.
fn close_once(shared: &Shared, open: &Mutex<HashSet<ChannelId>>, channel: ChannelId) {
    if open.lock().map(|mut o| o.remove(&channel)).unwrap_or(false) {
        shared.stats.channels_closed.fetch_add(1, Ordering::SeqCst);
    }
}

impl server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let ok = self
            .shared
            .authorized
            .lock()
            .map(|a| {
                a.iter()
                    .any(|(u, k)| u == user && k.key_data() == key.public_key.key_data())
            })
            .unwrap_or(false);
        Ok(if ok { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let stats = &self.shared.stats;
        let now = stats.channels_opened.fetch_add(1, Ordering::SeqCst) + 1
            - stats.channels_closed.load(Ordering::SeqCst);
        stats.max_concurrent.fetch_max(now, Ordering::SeqCst);
        if let Ok(mut o) = self.open.lock() {
            o.insert(_channel.id());
        }
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        if let Ok(mut c) = self.shared.stats.commands.lock() {
            c.push(command.clone());
        }
        let mut child = match tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&self.shared.dir)
            .env("HOME", &self.shared.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(_) => {
                session.channel_failure(channel)?;
                return Ok(());
            }
        };
        session.channel_success(channel)?;
        let pgid = Arc::new(Mutex::new(child.id().map(|p| p as i32)));
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.procs.insert(
            channel,
            Proc {
                stdin: Some(tx),
                pgid: pgid.clone(),
            },
        );
        let mut stdin = child.stdin.take();
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                let Some(w) = stdin.as_mut() else { break };
                if w.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            drop(stdin);
        });
        let handle = session.handle();
        let (shared, open) = (self.shared.clone(), self.open.clone());
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        tokio::spawn(async move {
            let h1 = handle.clone();
            let out = async move {
                let mut buf = vec![0u8; 8192];
                while let Some(r) = stdout.as_mut() {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let _ = h1.data(channel, buf[..n].to_vec()).await;
                        }
                    }
                }
            };
            let h2 = handle.clone();
            let err = async move {
                let mut buf = vec![0u8; 8192];
                while let Some(r) = stderr.as_mut() {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let _ = h2.extended_data(channel, 1, buf[..n].to_vec()).await;
                        }
                    }
                }
            };
            tokio::join!(out, err);
            let status = child.wait().await.ok();
            if let Ok(mut g) = pgid.lock() {
                *g = None;
            }
            let code = status
                .and_then(|s| s.code())
                .map(|c| c as u32)
                .unwrap_or(255);
            let _ = handle.exit_status_request(channel, code).await;
            let _ = handle.eof(channel).await;
            close_once(&shared, &open, channel);
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.procs.get(&channel).and_then(|p| p.stdin.as_ref()) {
            let _ = tx.send(data.to_vec());
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(p) = self.procs.get_mut(&channel) {
            p.stdin = None;
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        _signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(p) = self.procs.get(&channel) {
            p.kill();
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        close_once(&self.shared, &self.open, channel);
        // Like OpenSSH without a terminal: closing the channel (or losing the connection) does not stop the
        // command; it only loses its input.
        if let Some(mut p) = self.procs.remove(&channel) {
            p.stdin = None;
        }
        Ok(())
    }
}

/// A host the same test runs against: the in-process server always, and a real OpenSSH server when
/// `BROKEFORGE_TEST_SSHD` (`HOST:PORT`), `BROKEFORGE_TEST_SSHD_USER`, `BROKEFORGE_TEST_SSHD_KEY` (private key
/// file) and `BROKEFORGE_TEST_SSHD_FINGERPRINT` are set (`.ci/run` sets them). Set but unusable is a panic.
pub struct TestHost {
    pub name: &'static str,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key: brokeforge_core::Secret,
    pub public_key: String,
    pub fingerprint: String,
    pub server: Option<TestSshServer>,
}

impl TestHost {
    pub fn target(&self, policy: crate::HostKeyPolicy) -> crate::SshTarget {
        crate::SshTarget {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            key: self.key.clone(),
            host_key: policy,
            connect_timeout: Duration::from_secs(10),
        }
    }

    pub fn pinned(&self) -> crate::SshTarget {
        self.target(crate::HostKeyPolicy::Pinned(self.fingerprint.clone()))
    }
}

pub async fn test_hosts() -> Vec<TestHost> {
    let kp = crate::keys::generate_ed25519("brokeforge-test").expect("key");
    let server = TestSshServer::start().await;
    server.authorize("brokeforge", &kp.public_openssh);
    let mut hosts = vec![TestHost {
        name: "in-process",
        host: "127.0.0.1".into(),
        port: server.port(),
        user: "brokeforge".into(),
        key: kp.private_openssh,
        public_key: kp.public_openssh,
        fingerprint: server.host_key_fingerprint.clone(),
        server: Some(server),
    }];
    if let Some(h) = openssh_host() {
        hosts.push(h);
    }
    hosts
}

/// The real OpenSSH host from the environment, if configured.
pub fn openssh_host() -> Option<TestHost> {
    let Some(addr) = std::env::var("BROKEFORGE_TEST_SSHD")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        if std::env::var("BROKEFORGE_REQUIRE_BACKENDS").as_deref() == Ok("1") {
            panic!(
                "BROKEFORGE_TEST_SSHD is not set but BROKEFORGE_REQUIRE_BACKENDS=1: the OpenSSH server CI started is not reaching the tests"
            );
        }
        return None;
    };
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("BROKEFORGE_TEST_SSHD is set but {name} is not"))
    };
    let (host, port) = addr
        .rsplit_once(':')
        .expect("BROKEFORGE_TEST_SSHD must be HOST:PORT");
    let key_path = var("BROKEFORGE_TEST_SSHD_KEY");
    let pem = std::fs::read_to_string(&key_path)
        .unwrap_or_else(|e| panic!("cannot read {key_path}: {e}"));
    let key = brokeforge_core::Secret::new(pem);
    let public_key = crate::keys::parse_private(&key)
        .expect("test key")
        .public_key()
        .to_openssh()
        .expect("public key");
    Some(TestHost {
        name: "openssh",
        host: host.to_string(),
        port: port.parse().expect("port"),
        user: var("BROKEFORGE_TEST_SSHD_USER"),
        key,
        public_key,
        fingerprint: var("BROKEFORGE_TEST_SSHD_FINGERPRINT"),
        server: None,
    })
}
