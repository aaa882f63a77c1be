//! Teams, their members with roles, and invitations. Servers belong to a team; every user has a personal
//! team of one. Invitation tokens are stored as SHA-256 hashes only.

use brokeforge_core::TeamRole;
use brokeforge_core::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, is_unique_violation, parse};

#[derive(Debug, Clone, Serialize)]
pub struct Team {
    pub id: i64,
    pub name: String,
    /// A personal team: the user whose it is (it cannot take members).
    pub personal_of: Option<i64>,
    pub require_two_factor: bool,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Member {
    pub user_id: i64,
    pub email: String,
    pub role: TeamRole,
    pub two_factor: bool,
    /// The servers the member is narrowed to (empty: all of the team's).
    pub servers: Vec<i64>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Invitation {
    pub id: i64,
    pub team_id: i64,
    pub email: String,
    pub role: TeamRole,
    #[serde(skip)]
    pub token_hash: String,
    pub invited_by: Option<i64>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub expires_at: i64,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub accepted_at: Option<i64>,
}

const TEAM_COLS: &str = "t.id, t.name, t.personal_of, t.require_two_factor, t.created_at";

fn team_from(row: &AnyRow) -> Result<Team> {
    Ok(Team {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        personal_of: row.try_get("personal_of")?,
        require_two_factor: row.try_get::<i64, _>("require_two_factor")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

const INVITATION_COLS: &str =
    "id, team_id, email, role, token_hash, invited_by, created_at, expires_at, accepted_at";

fn invitation_from(row: &AnyRow) -> Result<Invitation> {
    Ok(Invitation {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        email: row.try_get("email")?,
        role: parse(row, "role")?,
        token_hash: row.try_get("token_hash")?,
        invited_by: row.try_get("invited_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        accepted_at: row.try_get("accepted_at")?,
    })
}

impl Store {
    /// The id of a user's personal team.
    pub async fn personal_team(&self, user_id: i64) -> Result<i64> {
        let row = sqlx::query("SELECT id FROM teams WHERE personal_of = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("personal team of user {user_id}")))?;
        Ok(row.try_get("id")?)
    }

    /// A shared team with `owner_id` as its first owner.
    pub async fn create_team(&self, name: &str, owner_id: i64) -> Result<Team> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO teams (name, personal_of, require_two_factor, created_at) VALUES ($1, NULL, 0, $2) \
             RETURNING {}",
            TEAM_COLS.replace("t.", "")
        ))
        .bind(name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let team = team_from(&row)?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)",
        )
        .bind(team.id)
        .bind(owner_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(team)
    }

    /// The teams `user_id` belongs to, with their role in each (personal team first).
    pub async fn teams_of(&self, user_id: i64) -> Result<Vec<(Team, TeamRole)>> {
        let rows = sqlx::query(&format!(
            "SELECT {TEAM_COLS}, m.role FROM teams t JOIN team_members m ON m.team_id = t.id WHERE m.user_id = $1 \
             ORDER BY CASE WHEN t.personal_of IS NULL THEN 1 ELSE 0 END, t.id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((team_from(r)?, parse(r, "role")?)))
            .collect()
    }

    /// A team only if `user_id` is a member (else "not found"), with their role.
    pub async fn team_for_member(&self, user_id: i64, team_id: i64) -> Result<(Team, TeamRole)> {
        let row = sqlx::query(&format!(
            "SELECT {TEAM_COLS}, m.role FROM teams t JOIN team_members m ON m.team_id = t.id \
             WHERE t.id = $1 AND m.user_id = $2"
        ))
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("team {team_id}")))?;
        Ok((team_from(&row)?, parse(&row, "role")?))
    }

    pub async fn team(&self, team_id: i64) -> Result<Team> {
        let row = sqlx::query(&format!("SELECT {TEAM_COLS} FROM teams t WHERE t.id = $1"))
            .bind(team_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("team {team_id}")))?;
        team_from(&row)
    }

    pub async fn set_team_two_factor(&self, team_id: i64, required: bool) -> Result<()> {
        sqlx::query("UPDATE teams SET require_two_factor = $1 WHERE id = $2")
            .bind(required as i64)
            .bind(team_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether any team of `user_id` requires two-factor sign-in.
    pub async fn two_factor_required_by_team(&self, user_id: i64) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT t.name FROM teams t JOIN team_members m ON m.team_id = t.id \
             WHERE m.user_id = $1 AND t.require_two_factor <> 0 ORDER BY t.id LIMIT 1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("name")).transpose()?)
    }

    pub async fn team_members(&self, team_id: i64) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT m.user_id, u.email, m.role, m.created_at, \
               CASE WHEN u.totp_secret_enc IS NULL THEN 0 ELSE 1 END AS tf \
             FROM team_members m JOIN users u ON u.id = m.user_id WHERE m.team_id = $1 ORDER BY m.created_at, m.user_id",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        let narrowed = sqlx::query(
            "SELECT user_id, server_id FROM team_member_servers WHERE team_id = $1 ORDER BY server_id",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let user_id: i64 = r.try_get("user_id")?;
                let servers = narrowed
                    .iter()
                    .filter(|n| n.try_get::<i64, _>("user_id").ok() == Some(user_id))
                    .map(|n| n.try_get::<i64, _>("server_id"))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(Member {
                    user_id,
                    email: r.try_get("email")?,
                    role: parse(r, "role")?,
                    two_factor: r.try_get::<i64, _>("tf")? > 0,
                    servers,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Add a member (or change the role of one), optionally narrowed to `servers` of the team.
    pub async fn put_member(
        &self,
        team_id: i64,
        user_id: i64,
        role: TeamRole,
        servers: Option<&[i64]>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let changed =
            sqlx::query("UPDATE team_members SET role = $1 WHERE team_id = $2 AND user_id = $3")
                .bind(role.as_str())
                .bind(team_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if changed == 0 {
            sqlx::query(
                "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(team_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        if let Some(servers) = servers {
            sqlx::query("DELETE FROM team_member_servers WHERE team_id = $1 AND user_id = $2")
                .bind(team_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for s in servers {
                sqlx::query(
                    "INSERT INTO team_member_servers (team_id, user_id, server_id) \
                     SELECT $1, $2, id FROM servers WHERE id = $3 AND team_id = $1",
                )
                .bind(team_id)
                .bind(user_id)
                .bind(*s)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Take a member out of a team; false when they were not in it.
    pub async fn remove_member(&self, team_id: i64, user_id: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM team_member_servers WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    pub async fn create_invitation(
        &self,
        team_id: i64,
        email: &str,
        role: TeamRole,
        token_hash: &str,
        invited_by: i64,
        expires_at: i64,
    ) -> Result<Invitation> {
        let row = sqlx::query(&format!(
            "INSERT INTO team_invitations (team_id, email, role, token_hash, invited_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {INVITATION_COLS}"
        ))
        .bind(team_id)
        .bind(email)
        .bind(role.as_str())
        .bind(token_hash)
        .bind(invited_by)
        .bind(now_ms())
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("invitation token clash; try again".into())
            } else {
                e.into()
            }
        })?;
        invitation_from(&row)
    }

    pub async fn invitation_by_hash(&self, token_hash: &str) -> Result<Option<Invitation>> {
        let row = sqlx::query(&format!(
            "SELECT {INVITATION_COLS} FROM team_invitations WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(invitation_from).transpose()
    }

    pub async fn invitations(&self, team_id: i64) -> Result<Vec<Invitation>> {
        let rows = sqlx::query(&format!(
            "SELECT {INVITATION_COLS} FROM team_invitations WHERE team_id = $1 ORDER BY id DESC"
        ))
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invitation_from).collect()
    }

    /// Use invitation `id` for `user_id`: once, before it expires. The membership is written in the same
    /// transaction (an existing member keeps the higher of the two roles). False when it was used or expired.
    pub async fn accept_invitation(&self, id: i64, user_id: i64) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let used = sqlx::query(
            "UPDATE team_invitations SET accepted_at = $1, accepted_by = $2 \
             WHERE id = $3 AND accepted_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(user_id)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used == 0 {
            return Ok(false);
        }
        let inv = sqlx::query(&format!(
            "SELECT {INVITATION_COLS} FROM team_invitations WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let inv = invitation_from(&inv)?;
        let current =
            sqlx::query("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
                .bind(inv.team_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        match current {
            Some(r) => {
                let role: TeamRole = parse(&r, "role")?;
                if inv.role.rank() > role.rank() {
                    sqlx::query(
                        "UPDATE team_members SET role = $1 WHERE team_id = $2 AND user_id = $3",
                    )
                    .bind(inv.role.as_str())
                    .bind(inv.team_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(inv.team_id)
                .bind(user_id)
                .bind(inv.role.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}
