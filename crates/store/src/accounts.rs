//! Accounts: users, browser sessions, personal API tokens and login throttling. Session and API tokens are
//! random; only their SHA-256 is stored, so a copy of the database does not let anyone in.

use brokeforge_core::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::models::User;
use crate::{Result, Store, StoreError, is_unique_violation};

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// The first characters of the token, to recognise it in a list.
    pub prefix: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub last_used_at: Option<i64>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub revoked_at: Option<i64>,
    pub scope: TokenScope,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub expires_at: Option<i64>,
}

/// What a token may do, besides reading what its user can see.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Safe requests only, and no secrets (.env contents, recovery kits, snapshots).
    Read,
    /// Also deployments, rollbacks and site commands.
    Deploy,
    /// Everything its user may do.
    #[default]
    Full,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Deploy => "deploy",
            TokenScope::Full => "full",
        }
    }
}

impl std::str::FromStr for TokenScope {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "read" => Ok(TokenScope::Read),
            "deploy" => Ok(TokenScope::Deploy),
            "full" => Ok(TokenScope::Full),
            other => Err(format!("token scope `{other}`: use read, deploy or full")),
        }
    }
}

/// How many hex characters of a session's token hash name it in lists (64 bits: no two sessions of one user
/// share it).
pub const SESSION_ID_LEN: usize = 16;

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct SessionInfo {
    pub id: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub expires_at: i64,
    pub ip: String,
    pub user_agent: String,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: i64,
}

pub(crate) fn user_from(r: &AnyRow) -> Result<User> {
    Ok(User {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        password_hash: r.try_get("password_hash")?,
        is_admin: r.try_get::<i64, _>("is_admin")? != 0,
        created_at: r.try_get("created_at")?,
        two_factor: r.try_get::<i64, _>("two_factor")? != 0,
    })
}

fn token_from(r: &AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
        scope: crate::parse(r, "scope")?,
        expires_at: r.try_get("expires_at")?,
    })
}

pub(crate) const USER_COLS: &str = "u.id, u.email, u.password_hash, u.is_admin, u.created_at, \
     CASE WHEN u.totp_secret_enc IS NULL THEN 0 ELSE 1 END AS two_factor";

impl Store {
    pub async fn user(&self, id: i64) -> Result<User> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users u WHERE u.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
        user_from(&row)
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users u ORDER BY u.id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from).collect()
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Set a user's password hash; everything signed in with the old one ends with it: their sessions and
    /// their API tokens (one transaction: no window with a new password and an old token).
    pub async fn set_password_hash(&self, user_id: i64, hash: &str) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                .bind(hash)
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_admin(&self, user_id: i64, is_admin: bool) -> Result<()> {
        sqlx::query("UPDATE users SET is_admin = $1, updated_at = $2 WHERE id = $3")
            .bind(is_admin as i64)
            .bind(now_ms())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Delete a user and everything they own (servers, sites, tokens, sessions).
    /// Delete a user with their personal team and its servers. Servers they added to a shared team stay
    /// with the team (they pass to its longest-standing owner, or member).
    pub async fn delete_user(&self, user_id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE servers SET user_id = (SELECT m.user_id FROM team_members m WHERE m.team_id = servers.team_id \
               AND m.user_id <> $1 ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, m.created_at LIMIT 1) \
             WHERE user_id = $1 AND EXISTS (SELECT 1 FROM team_members m WHERE m.team_id = servers.team_id AND m.user_id <> $1)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- sessions ----

    pub async fn create_session(
        &self,
        user_id: i64,
        token_hash: &str,
        csrf_token: &str,
        ttl_ms: i64,
        ip: &str,
        user_agent: &str,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now)
        .bind(now + ttl_ms)
        .bind(ip)
        .bind(user_agent)
        .execute(&self.pool)
        .await?;
        // Expired sessions of anybody are swept along the way.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The live session with this token hash.
    pub async fn session(&self, token_hash: &str) -> Result<Option<Session>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLS}, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2"
        ))
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Session {
                user: user_from(&r)?,
                csrf_token: r.try_get("csrf_token")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// A user's live sessions, newest first. Each is named by the start of its token's hash (not the token: the
    /// name cannot sign anybody in).
    pub async fn sessions_of(&self, user_id: i64) -> Result<Vec<SessionInfo>> {
        let rows = sqlx::query(
            "SELECT token_hash, created_at, expires_at, ip, user_agent FROM sessions WHERE user_id = $1 AND expires_at > $2 \
             ORDER BY created_at DESC",
        )
        .bind(user_id)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let hash: String = r.try_get("token_hash")?;
                Ok(SessionInfo {
                    id: hash.chars().take(SESSION_ID_LEN).collect(),
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    ip: r.try_get("ip")?,
                    user_agent: r.try_get("user_agent")?,
                })
            })
            .collect()
    }

    /// End one of the user's sessions by its name; false if they have none by that name.
    pub async fn delete_session_of(&self, user_id: i64, id: &str) -> Result<bool> {
        if id.len() != SESSION_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash LIKE $2")
            .bind(user_id)
            .bind(format!("{}%", id.to_ascii_lowercase()))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- API tokens ----

    /// A token of full scope that does not expire.
    pub async fn create_api_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        prefix: &str,
    ) -> Result<ApiToken> {
        self.create_scoped_api_token(user_id, name, token_hash, prefix, TokenScope::Full, None)
            .await
    }

    pub async fn create_scoped_api_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        prefix: &str,
        scope: TokenScope,
        expires_at: Option<i64>,
    ) -> Result<ApiToken> {
        let row = sqlx::query(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at, scope, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING id, user_id, name, prefix, created_at, last_used_at, revoked_at, scope, expires_at",
        )
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(prefix)
        .bind(now_ms())
        .bind(scope.as_str())
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?;
        token_from(&row)
    }

    /// The user a live (not revoked) token belongs to; marks the token used.
    pub async fn api_token_user(&self, token_hash: &str) -> Result<Option<User>> {
        Ok(self.api_token_auth(token_hash).await?.map(|(u, _)| u))
    }

    /// The user and scope of a live token (not revoked, not expired); marks the token used.
    pub async fn api_token_auth(&self, token_hash: &str) -> Result<Option<(User, TokenScope)>> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "SELECT {USER_COLS}, t.id AS token_id, t.last_used_at, t.scope FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        // Recorded at most once a minute: a busy script does not write on every request.
        let last: Option<i64> = row.try_get("last_used_at")?;
        if last.is_none_or(|t| now - t > 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(row.try_get::<i64, _>("token_id")?)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some((user_from(&row)?, crate::parse(&row, "scope")?)))
    }

    pub async fn api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, prefix, created_at, last_used_at, revoked_at, scope, expires_at FROM api_tokens WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from).collect()
    }

    /// Revoke one of `user_id`'s tokens (another user's token is "not found").
    pub async fn revoke_api_token(&self, user_id: i64, id: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    // ---- login throttling ----

    /// Count a sign-in attempt before its password is checked, as a failure under each key until it
    /// succeeds: parallel guesses all count, however fast they arrive. Returns the rows to settle it with.
    pub async fn begin_login_attempt(&self, keys: &[&str]) -> Result<Vec<i64>> {
        let now = now_ms();
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            let row = sqlx::query(
                "INSERT INTO login_attempts (throttle_key, success, created_at) VALUES ($1, 0, $2) RETURNING id",
            )
            .bind(*key)
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
            ids.push(row.try_get("id")?);
        }
        Ok(ids)
    }

    /// A sign-in succeeded: its attempt rows go, and the slate of `clear_key` (the account) is cleared.
    pub async fn login_succeeded(&self, clear_key: &str, attempt_ids: &[i64]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM login_attempts WHERE throttle_key = $1")
            .bind(clear_key)
            .execute(&mut *tx)
            .await?;
        for id in attempt_ids {
            sqlx::query("DELETE FROM login_attempts WHERE id = $1")
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forget attempts older than `before_ms` (at most `limit` rows, so a large backlog goes in small
    /// batches); how many went.
    pub async fn prune_login_attempts(&self, before_ms: i64, limit: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM login_attempts WHERE id IN (SELECT id FROM login_attempts WHERE created_at < $1 LIMIT $2)",
        )
        .bind(before_ms)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn login_failures(&self, key: &str, since_ms: i64) -> Result<(i64, Option<i64>)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM login_attempts WHERE throttle_key = $1 AND success = 0 AND created_at > $2",
        )
        .bind(key)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }
}

impl Store {
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> Result<User> {
        let now = now_ms();
        let email = email.trim().to_ascii_lowercase();
        // The user and their personal team (a team of one) together, or neither.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO users (email, password_hash, is_admin, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(&email)
        .bind(password_hash)
        .bind(is_admin as i64)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("a user with email {email} already exists"))
            } else {
                e.into()
            }
        })?;
        let id: i64 = row.try_get("id")?;
        let team = sqlx::query(
            "INSERT INTO teams (name, personal_of, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(&email)
        .bind(id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)",
        )
        .bind(team.try_get::<i64, _>("id")?)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(User {
            id,
            email,
            password_hash: password_hash.to_string(),
            is_admin,
            created_at: now,
            two_factor: false,
        })
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users u WHERE u.email = $1"
        ))
        .bind(email.trim().to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::accounts::user_from).transpose()
    }
}
