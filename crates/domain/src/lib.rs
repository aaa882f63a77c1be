//! The domain: what BrokeForge does for the people and programs that ask it, whatever the transport. Pages,
//! the JSON API, the CLI's admin commands and webhooks all call these functions; none of them decides rules
//! by itself. Everything a caller may touch is found through [`Domain::owned_server`] and friends, so another
//! user's objects are simply not there.

pub mod accounts;
pub mod audit;
pub mod backups;
pub mod databases;
pub mod drift;
pub mod error;
pub mod firewall;
pub mod jobs;
pub mod logs;
pub mod maintenance;
pub mod monitoring;
pub mod php;
pub mod policy;
pub mod recipes;
pub mod servers;
pub mod sites;
pub mod teams;
pub mod twofactor;
pub mod user_keys;

use brokeforge_packages::Executor;
use brokeforge_store::Store;

pub use error::{DomainError, DomainResult};

/// The domain's entry point; cheap to clone.
#[derive(Clone)]
pub struct Domain {
    pub store: Store,
    pub executor: Executor,
    /// Servers may not be at private or loopback addresses (`BROKEFORGE_REFUSE_PRIVATE_ADDRESSES=1`).
    pub refuse_internal_addresses: bool,
    /// Notification channels may post over plain http (`BROKEFORGE_ALLOW_HTTP_CHANNELS=1`, test networks).
    pub allow_http_channels: bool,
    /// Telegram's Bot API base URL (`BROKEFORGE_TELEGRAM_API`; default https://api.telegram.org).
    pub telegram_api: Option<String>,
    /// Where email notifications go out (`BROKEFORGE_SMTP_URL`, `BROKEFORGE_SMTP_FROM`); none: no email.
    pub smtp: Option<std::sync::Arc<monitoring::Smtp>>,
    /// When this node last tried each site's certificate.
    pub cert_probes: monitoring::ProbeAttempts,
}

impl Domain {
    pub fn new(store: Store) -> Domain {
        Domain {
            executor: Executor::new(store.clone()),
            store,
            refuse_internal_addresses: false,
            allow_http_channels: false,
            telegram_api: None,
            smtp: None,
            cert_probes: Default::default(),
        }
    }
}
