//! Firewall rules of a server: read live from ufw (the truth), added and removed through queued jobs after
//! the request was checked against what is on the server.

use std::time::Duration;

use brokeforge_packages::base::package::{AnyPackage, job};
use brokeforge_packages::services::server::firewall::{
    AddRuleRequest, FirewallRuleInstaller, FirewallRuleRemover, FirewallState, READ_COMMAND,
    RemoveRuleRequest, RuleSpec, new_id, parse_state, validate,
};
use brokeforge_store::{Job, Server};

use crate::{Domain, DomainError, DomainResult};

impl Domain {
    /// The server's firewall as ufw has it now (one SSH command as root).
    pub async fn firewall(&self, server: &Server) -> DomainResult<FirewallState> {
        let text = self
            .read_on_server(server, READ_COMMAND, Duration::from_secs(30))
            .await?;
        Ok(parse_state(&text, server.ssh_port))
    }

    /// Queue a rule's addition. A bad rule, or one the server already has, is refused before anything runs.
    pub async fn add_firewall_rule(&self, server: &Server, spec: &RuleSpec) -> DomainResult<Job> {
        let rule = validate(spec, true)?;
        let request = AddRuleRequest {
            id: new_id()?,
            rule: spec.clone(),
        };
        let payload =
            serde_json::to_value(&request).map_err(|e| DomainError::Internal(e.to_string()))?;
        // The package's own checks (e.g. no deny rule on the SSH port), as a dry run.
        FirewallRuleInstaller
            .preview(&self.store, server, &payload)
            .await?;
        let state = self.firewall(server).await?;
        let source = rule.source.clone().unwrap_or_else(|| "anywhere".into());
        let protocol = rule.protocol.clone().unwrap_or_else(|| "any".into());
        if let Some(same) = state.rules.iter().find(|r| {
            r.action == rule.action
                && r.port == rule.port
                && r.protocol == protocol
                && r.source == source
                && r.direction == "in"
        }) {
            return Err(DomainError::conflict(
                "rule_exists",
                format!(
                    "the server already has this rule ({} {}, id {})",
                    same.action, same.port, same.id
                ),
            ));
        }
        Ok(self
            .store
            .enqueue(&job::<FirewallRuleInstaller>(server.id, &request)?)
            .await?)
    }

    /// Queue the removal of rule `id` as it is on the server now. Rules BrokeForge did not make, and the one
    /// it reaches the server through, are refused.
    pub async fn remove_firewall_rule(&self, server: &Server, id: &str) -> DomainResult<Job> {
        let id = id.trim();
        let state = self.firewall(server).await?;
        let Some(rule) = state.rules.iter().find(|r| r.id == id) else {
            return Err(DomainError::invalid(
                "rule",
                format!("the server has no firewall rule {id} (list them to see their ids)"),
            ));
        };
        if !rule.removable {
            return Err(DomainError::conflict(
                "rule_kept",
                format!("rule {id} stays: {}", rule.note),
            ));
        }
        let request = RemoveRuleRequest {
            id: rule.id.clone(),
            rule: rule.spec(),
            comment: rule.comment.clone(),
        };
        let payload =
            serde_json::to_value(&request).map_err(|e| DomainError::Internal(e.to_string()))?;
        FirewallRuleRemover
            .preview(&self.store, server, &payload)
            .await?;
        Ok(self
            .store
            .enqueue(&job::<FirewallRuleRemover>(server.id, &request)?)
            .await?)
    }

    /// Run a read-only `command` as root on `server` and return what it printed (at most 4 MiB). Nothing of
    /// it is logged or stored.
    pub async fn read_on_server(
        &self,
        server: &Server,
        command: &str,
        timeout: Duration,
    ) -> DomainResult<String> {
        const LIMIT: usize = 4 << 20;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
        let ctx = brokeforge_packages::RunContext::new(server.clone());
        let executor = self.executor.clone();
        let command = command.to_string();
        let run = tokio::spawn(async move {
            executor
                .stream(
                    &ctx,
                    brokeforge_core::CredentialKind::Root,
                    &command,
                    None,
                    Vec::new(),
                    timeout,
                    &tx,
                )
                .await
        });
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            if out.len() + chunk.len() <= LIMIT {
                out.extend_from_slice(&chunk);
            }
        }
        run.await
            .map_err(|e| DomainError::Internal(e.to_string()))??;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}
