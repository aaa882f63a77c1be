//! Two-factor sign-in: a user's TOTP secret (sealed, bound to the user), one being set up, the last time step
//! a code was accepted for (compare-and-set, so a code works once even with two nodes), and single-use
//! recovery codes stored as SHA-256.

use brokeforge_core::time::now_ms;
use sqlx::Row;
use zeroize::Zeroizing;

use crate::{Result, Store};

pub(crate) fn totp_context(user_id: i64, pending: bool) -> String {
    if pending {
        format!("users:{user_id}:totp_pending")
    } else {
        format!("users:{user_id}:totp")
    }
}

impl Store {
    /// Start setting up: this secret waits for its first code (an earlier one being set up is replaced).
    pub async fn set_totp_pending(&self, user_id: i64, secret: &[u8]) -> Result<()> {
        let sealed = self.cipher.seal(&totp_context(user_id, true), secret)?;
        sqlx::query("UPDATE users SET totp_pending_enc = $1 WHERE id = $2")
            .bind(sealed)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn totp_pending(&self, user_id: i64) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.open_totp(user_id, true).await
    }

    /// The confirmed secret and the last step a code was accepted for.
    pub async fn totp_secret(&self, user_id: i64) -> Result<Option<(Zeroizing<Vec<u8>>, i64)>> {
        let step: Option<i64> = sqlx::query("SELECT totp_last_step FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get("totp_last_step"))
            .transpose()?;
        Ok(self.open_totp(user_id, false).await?.zip(step))
    }

    async fn open_totp(&self, user_id: i64, pending: bool) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let col = if pending {
            "totp_pending_enc"
        } else {
            "totp_secret_enc"
        };
        let row = sqlx::query(&format!("SELECT {col} AS v FROM users WHERE id = $1"))
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        match row.and_then(|r| r.try_get::<Option<Vec<u8>>, _>("v").ok().flatten()) {
            Some(sealed) => Ok(Some(
                self.cipher.open(&totp_context(user_id, pending), &sealed)?,
            )),
            None => Ok(None),
        }
    }

    /// Turn it on with the secret that was being set up (its first code was for `step`), and these recovery
    /// codes (hashes) instead of any earlier ones: one transaction.
    pub async fn enable_totp(
        &self,
        user_id: i64,
        secret: &[u8],
        step: i64,
        code_hashes: &[String],
    ) -> Result<()> {
        let sealed = self.cipher.seal(&totp_context(user_id, false), secret)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE users SET totp_secret_enc = $1, totp_pending_enc = NULL, totp_last_step = $2 WHERE id = $3",
        )
        .bind(sealed)
        .bind(step)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for h in code_hashes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id)
                .bind(h)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Accept a code of time step `step` if no code of this or a later step was accepted before.
    pub async fn use_totp_step(&self, user_id: i64, step: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1 AND totp_secret_enc IS NOT NULL",
        )
        .bind(step)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Spend a recovery code (by its hash); false if it is unknown or spent.
    pub async fn use_recovery_code(&self, user_id: i64, code_hash: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now_ms())
        .bind(user_id)
        .bind(code_hash)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn recovery_codes_left(&self, user_id: i64) -> Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }

    /// Turn it off: secret, pending secret and recovery codes go.
    pub async fn disable_totp(&self, user_id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE users SET totp_secret_enc = NULL, totp_pending_enc = NULL, totp_last_step = 0 WHERE id = $1",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
