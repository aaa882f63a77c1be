//! Who did what: the audit log. The web layer records every state-changing request (pages, API, webhooks);
//! the domain records what it starts by itself (schedules) and sign-ins, whose actor is the email given.

use brokeforge_store::{AuditEntry, AuditFilter, NewAuditEntry, User};

use crate::{Domain, DomainResult};

/// Where a request came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: String,
    pub user_agent: String,
}

/// At most this many entries per page.
pub const AUDIT_PAGE_MAX: i64 = 500;

impl Domain {
    /// Record an entry; a failure to record is logged, never the caller's failure.
    pub async fn audit(&self, entry: NewAuditEntry) {
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, action = %entry.action, "cannot write the audit log");
        }
    }

    /// What the scheduler started on a server.
    pub async fn audit_schedule(&self, server_id: i64, action: &str, target: &str) {
        self.audit(NewAuditEntry {
            actor: "schedule".into(),
            action: action.into(),
            target: target.into(),
            server_id: Some(server_id),
            status: 202,
            ..NewAuditEntry::default()
        })
        .await
    }

    /// A page of the log as `user` may see it: administrators everything, others their own actions and what
    /// happened on their servers.
    pub async fn audit_log(
        &self,
        user: &User,
        mut filter: AuditFilter,
    ) -> DomainResult<Vec<AuditEntry>> {
        filter.visible_to = (!user.is_admin).then_some(user.id);
        filter.limit = filter.limit.clamp(1, AUDIT_PAGE_MAX);
        Ok(self.store.audit_page(&filter).await?)
    }
}
