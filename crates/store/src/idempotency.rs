//! Idempotency keys of API requests: the first request with a key runs and its answer is kept (sealed) for a
//! day; the same request again gets that answer; another request with the same key is refused.

use brokeforge_core::time::now_ms;
use sqlx::Row;

use crate::{Result, Store};

/// How long a key's answer is kept.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

/// A claim still without an answer after this long belongs to a request that died (a node crashed mid-way;
/// the API's POSTs answer in well under a second): the same request may take it over instead of being told
/// "in progress" until the key expires.
pub const IDEMPOTENCY_STALE_MS: i64 = 5 * 60 * 1000;

/// What a request with a key should do.
#[derive(Debug, PartialEq)]
pub enum Idempotent {
    /// The first with this key: run it, then `finish_idempotent` (or `release_idempotent`).
    Run,
    /// Seen before and answered: send this again.
    Replay { status: u16, body: Vec<u8> },
    /// The first request with this key has not answered yet.
    InProgress,
    /// The key was used for a different request (another route or body).
    Mismatch,
}

fn context(user_id: i64, key: &str) -> String {
    format!("idempotency_keys:{user_id}:{key}")
}

impl Store {
    /// Claim `key` for this request, or say what was already done with it.
    pub async fn claim_idempotent(
        &self,
        user_id: i64,
        key: &str,
        (method, path, request_hash): (&str, &str, &str),
    ) -> Result<Idempotent> {
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key, method, path, request_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, key) DO NOTHING",
        )
        .bind(user_id)
        .bind(key)
        .bind(method)
        .bind(path)
        .bind(request_hash)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Idempotent::Run);
        }
        let Some(row) = sqlx::query(
            "SELECT method, path, request_hash, status, body_enc, created_at FROM idempotency_keys \
             WHERE user_id = $1 AND key = $2",
        )
        .bind(user_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?
        else {
            // Released between the two statements: the caller may try again.
            return Ok(Idempotent::InProgress);
        };
        let created: i64 = row.try_get("created_at")?;
        // An expired key (the pruner has not reached it yet) is free for any request.
        if created < now - IDEMPOTENCY_TTL_MS {
            return self
                .take_over(user_id, key, created, (method, path, request_hash), now)
                .await;
        }
        let same = row.try_get::<String, _>("method")? == method
            && row.try_get::<String, _>("path")? == path
            && row.try_get::<String, _>("request_hash")? == request_hash;
        if !same {
            return Ok(Idempotent::Mismatch);
        }
        match (
            row.try_get::<Option<i64>, _>("status")?,
            row.try_get::<Option<Vec<u8>>, _>("body_enc")?,
        ) {
            (Some(status), Some(sealed)) => Ok(Idempotent::Replay {
                status: status as u16,
                body: self.cipher.open(&context(user_id, key), &sealed)?.to_vec(),
            }),
            _ if created < now - IDEMPOTENCY_STALE_MS => {
                self.take_over(user_id, key, created, (method, path, request_hash), now)
                    .await
            }
            _ => Ok(Idempotent::InProgress),
        }
    }

    /// Claim a key whose row (created at `created`) is expired or abandoned. Only one of several
    /// concurrent retries wins: the update matches the row as it was read.
    async fn take_over(
        &self,
        user_id: i64,
        key: &str,
        created: i64,
        (method, path, request_hash): (&str, &str, &str),
        now: i64,
    ) -> Result<Idempotent> {
        let won = sqlx::query(
            "UPDATE idempotency_keys SET method = $1, path = $2, request_hash = $3, status = NULL, \
             body_enc = NULL, created_at = $4 WHERE user_id = $5 AND key = $6 AND created_at = $7",
        )
        .bind(method)
        .bind(path)
        .bind(request_hash)
        .bind(now)
        .bind(user_id)
        .bind(key)
        .bind(created)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(if won == 1 {
            Idempotent::Run
        } else {
            Idempotent::InProgress
        })
    }

    /// Delete up to `limit` keys created before `before_ms`; how many went.
    pub async fn prune_idempotency_keys(&self, before_ms: i64, limit: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE (user_id, key) IN \
             (SELECT user_id, key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
        )
        .bind(before_ms)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Keep the answer of the request that claimed `key`.
    pub async fn finish_idempotent(
        &self,
        user_id: i64,
        key: &str,
        status: u16,
        body: &[u8],
    ) -> Result<()> {
        let sealed = self.cipher.seal(&context(user_id, key), body)?;
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, body_enc = $2 WHERE user_id = $3 AND key = $4",
        )
        .bind(status as i64)
        .bind(sealed)
        .bind(user_id)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forget `key` (its request failed and changed nothing the client must not repeat).
    pub async fn release_idempotent(&self, user_id: i64, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2")
            .bind(user_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
