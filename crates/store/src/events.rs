//! Provision events, command output, and the per-server activity feed live watchers read.

use brokeforge_core::EventStatus;
use brokeforge_core::time::now_ms;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::models::*;
use crate::{Result, Store, json, parse};

const EVENT_COLS: &str = "id, server_id, job_id, service_type, provision_type, milestone, label, current_step, total_steps, details, status, error, created_at, updated_at";

fn event_from(row: &AnyRow) -> Result<ProvisionEvent> {
    Ok(ProvisionEvent {
        id: row.try_get("id")?,
        server_id: row.try_get("server_id")?,
        job_id: row.try_get("job_id")?,
        service_type: parse(row, "service_type")?,
        provision_type: parse(row, "provision_type")?,
        milestone: row.try_get("milestone")?,
        label: row.try_get("label")?,
        current_step: row.try_get("current_step")?,
        total_steps: row.try_get("total_steps")?,
        details: json(row, "details")?,
        status: parse(row, "status")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Bind `$1`-`$11` of a new event's insert: its columns, then its status and the time.
fn bind_new_event<'q>(
    q: AnyQuery<'q>,
    new: &'q NewEvent,
    status: EventStatus,
    now: i64,
) -> AnyQuery<'q> {
    q.bind(new.server_id)
        .bind(new.job_id)
        .bind(new.service_type.as_str())
        .bind(new.provision_type.as_str())
        .bind(&new.milestone)
        .bind(&new.label)
        .bind(new.current_step)
        .bind(new.total_steps)
        .bind(new.details.to_string())
        .bind(status.as_str())
        .bind(now)
}

fn log_from(r: &AnyRow) -> Result<CommandLog> {
    Ok(CommandLog {
        id: r.try_get("id")?,
        server_id: r.try_get("server_id")?,
        job_id: r.try_get("job_id")?,
        event_id: r.try_get("event_id")?,
        stream: LogStream::parse(&r.try_get::<String, _>("stream")?),
        chunk: r.try_get("chunk")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    pub async fn start_event(&self, new: &NewEvent) -> Result<ProvisionEvent> {
        self.advance_event(None, new).await
    }

    /// Complete the milestone `previous` (if any) and start the next one, atomically (one transaction).
    pub async fn advance_event(
        &self,
        previous: Option<&ProvisionEvent>,
        new: &NewEvent,
    ) -> Result<ProvisionEvent> {
        self.advance_event_to(previous, new, EventStatus::InProgress)
            .await
    }

    /// [`Store::advance_event`] to a plan's last milestone, which has no step of its own: it is stored as
    /// completed at once, one transaction where starting and finishing it took two.
    pub async fn advance_to_last_event(
        &self,
        previous: Option<&ProvisionEvent>,
        new: &NewEvent,
    ) -> Result<ProvisionEvent> {
        self.advance_event_to(previous, new, EventStatus::Completed)
            .await
    }

    async fn advance_event_to(
        &self,
        previous: Option<&ProvisionEvent>,
        new: &NewEvent,
        status: EventStatus,
    ) -> Result<ProvisionEvent> {
        let now = now_ms();
        if self.backend == crate::Backend::Postgres {
            return self.advance_event_pg(previous, new, status, now).await;
        }
        let mut tx = self.telemetry.begin().await?;
        if let Some(id) = previous.map(|p| p.id) {
            let row = sqlx::query(&format!(
                "UPDATE provision_events SET status = $1, updated_at = $2 WHERE id = $3 RETURNING {EVENT_COLS}"
            ))
            .bind(EventStatus::Completed.as_str())
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                self.insert_event_activity(&mut tx, &event_from(&row)?, None)
                    .await?;
            }
        }
        let sql = format!(
            "INSERT INTO provision_events (server_id, job_id, service_type, provision_type, milestone, label, current_step, total_steps, details, status, error, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11) RETURNING {EVENT_COLS}"
        );
        let row = bind_new_event(sqlx::query(&sql), new, status, now)
            .fetch_one(&mut *tx)
            .await?;
        let event = event_from(&row)?;
        // The fence is the last write's condition: refused, the transaction rolls back.
        self.insert_event_activity(&mut tx, &event, new.job_id.zip(new.attempt))
            .await?;
        tx.commit().await?;
        let _ = self.activity.send(event.server_id);
        Ok(event)
    }

    /// [`Store::advance_event_to`] on PostgreSQL in one statement, where a transaction took four round trips
    /// (six with a previous milestone): a wave of jobs writes its milestones through a few connections to a
    /// server process that competes with the sshd's for CPU (#17). The activity rows are built here, as the
    /// transaction's were (the rows it returned are the ones written here), the new event's id spliced into
    /// its row; one INSERT writes both in order, after the per-server lock (see [`Store::insert_activity`]).
    /// The attempt's fence is every write's condition: refused, nothing is written.
    async fn advance_event_pg(
        &self,
        previous: Option<&ProvisionEvent>,
        new: &NewEvent,
        status: EventStatus,
        now: i64,
    ) -> Result<ProvisionEvent> {
        let mut event = ProvisionEvent {
            id: 0,
            server_id: new.server_id,
            job_id: new.job_id,
            service_type: new.service_type,
            provision_type: new.provision_type,
            milestone: new.milestone.clone(),
            label: new.label.clone(),
            current_step: new.current_step,
            total_steps: new.total_steps,
            details: new.details.clone(),
            status,
            error: None,
            created_at: now,
            updated_at: now,
        };
        let row = Self::event_activity(&event);
        let rest = row
            .strip_prefix("{\"id\":0")
            .ok_or_else(|| crate::StoreError::InvalidData(format!("event row {row}")))?;
        let completed = previous.map(|p| {
            Self::event_activity(&ProvisionEvent {
                status: EventStatus::Completed,
                updated_at: now,
                ..p.clone()
            })
        });
        let fence = new.job_id.zip(new.attempt);
        let owns = if fence.is_some() {
            "EXISTS (SELECT 1 FROM jobs WHERE id = $2 AND attempt = $15 AND status = 'running')"
        } else {
            "TRUE"
        };
        let sql = format!(
            "WITH l AS (SELECT pg_advisory_xact_lock(4242, CAST($1 % 2147483647 AS INTEGER)) AS a, \
             pg_notify('brokeforge_activity', CAST($1 AS TEXT)) AS b), \
             p AS (UPDATE provision_events SET status = 'completed', updated_at = $11 WHERE id = $12 AND {owns} RETURNING id), \
             e AS (INSERT INTO provision_events (server_id, job_id, service_type, provision_type, milestone, label, current_step, total_steps, details, status, error, created_at, updated_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11 WHERE {owns} RETURNING id), \
             a AS (INSERT INTO command_logs (server_id, job_id, event_id, stream, chunk, created_at) \
             SELECT $1, $2, r.event_id, 'event', r.chunk, $11 FROM l, \
             (SELECT 1 AS k, p.id AS event_id, CAST($13 AS TEXT) AS chunk FROM p \
             UNION ALL SELECT 2, e.id, '{{\"id\":' || e.id || $14 FROM e) r ORDER BY r.k) \
             SELECT id FROM e"
        );
        let mut q = bind_new_event(sqlx::query(&sql), new, status, now)
            .bind(previous.map(|p| p.id))
            .bind(completed)
            .bind(rest);
        if let Some((_, attempt)) = fence {
            q = q.bind(attempt);
        }
        let Some(row) = q.fetch_optional(&self.telemetry).await? else {
            refused_unless(false, fence)?;
            return Err(crate::StoreError::InvalidData(
                "the event was not stored".into(),
            ));
        };
        event.id = row.try_get("id")?;
        let _ = self.activity.send(event.server_id);
        Ok(event)
    }

    pub async fn finish_event(
        &self,
        id: i64,
        status: EventStatus,
        error: Option<&str>,
    ) -> Result<()> {
        self.finish_attempt_event(id, None, status, error).await
    }

    /// [`Store::finish_event`] on behalf of attempt `fence.1` of job `fence.0` (refused once it no longer
    /// owns the job).
    pub async fn finish_attempt_event(
        &self,
        id: i64,
        fence: Option<(i64, i64)>,
        status: EventStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.telemetry.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE provision_events SET status = $1, error = $2, updated_at = $3 WHERE id = $4 RETURNING {EVENT_COLS}"
        ))
        .bind(status.as_str())
        .bind(error.map(str::to_string))
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut server = None;
        match (row, fence) {
            (Some(row), fence) => {
                let ev = event_from(&row)?;
                self.insert_event_activity(&mut tx, &ev, fence).await?;
                server = Some(ev.server_id);
            }
            (None, Some((job_id, attempt))) => Self::fence(&mut tx, job_id, attempt).await?,
            (None, None) => {}
        }
        tx.commit().await?;
        if let Some(s) = server {
            let _ = self.activity.send(s);
        }
        Ok(())
    }

    /// Close the events a vanished worker left in progress for `job_id`.
    pub async fn fail_open_events(&self, job_id: i64, reason: &str) -> Result<u64> {
        let mut tx = self.telemetry.begin().await?;
        let rows = sqlx::query(&format!(
            "UPDATE provision_events SET status = $1, error = $2, updated_at = $3 WHERE job_id = $4 AND status = $5 RETURNING {EVENT_COLS}"
        ))
        .bind(EventStatus::Failed.as_str())
        .bind(reason)
        .bind(now_ms())
        .bind(job_id)
        .bind(EventStatus::InProgress.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut servers = Vec::new();
        for row in &rows {
            let ev = event_from(row)?;
            self.insert_event_activity(&mut tx, &ev, None).await?;
            servers.push(ev.server_id);
        }
        tx.commit().await?;
        for s in servers {
            let _ = self.activity.send(s);
        }
        Ok(rows.len() as u64)
    }

    /// The newest in-progress event of a server that no job owns (the provisioning script reports these).
    pub async fn open_script_event(&self, server_id: i64) -> Result<Option<ProvisionEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM provision_events WHERE server_id = $1 AND job_id IS NULL AND status = $2 ORDER BY id DESC LIMIT 1"
        ))
        .bind(server_id)
        .bind(EventStatus::InProgress.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(event_from).transpose()
    }

    /// Events of a server with an id greater than `after_id`, oldest first.
    pub async fn events(&self, server_id: i64, after_id: i64) -> Result<Vec<ProvisionEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM provision_events WHERE server_id = $1 AND id > $2 ORDER BY id"
        ))
        .bind(server_id)
        .bind(after_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from).collect()
    }

    /// At most `limit` events of a server after `after`, oldest first (a page; the last id is the next cursor).
    pub async fn events_page(
        &self,
        server_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<ProvisionEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM provision_events WHERE server_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(server_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from).collect()
    }

    /// The newest `limit` events of a server, newest first.
    pub async fn recent_events(&self, server_id: i64, limit: i64) -> Result<Vec<ProvisionEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM provision_events WHERE server_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(server_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from).collect()
    }

    /// One job's events, oldest first (on the job index).
    pub async fn job_events(&self, job_id: i64) -> Result<Vec<ProvisionEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM provision_events WHERE job_id = $1 ORDER BY id"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from).collect()
    }

    /// The latest event of each of a job's milestones, oldest first: what a job's box shows, however often
    /// the job ran them (the grouping walks the job index; only the winners are read).
    pub async fn job_milestone_events(&self, job_id: i64) -> Result<Vec<ProvisionEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM provision_events WHERE id IN \
             (SELECT MAX(id) FROM provision_events WHERE job_id = $1 GROUP BY milestone) ORDER BY id"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from).collect()
    }

    /// The steps the one-line script reported for a server (events without a job), oldest first.
    pub async fn script_events(&self, server_id: i64) -> Result<Vec<ProvisionEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM provision_events WHERE server_id = $1 AND job_id IS NULL ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from).collect()
    }

    /// The newest event of each of these servers, in one statement (one index seek per server).
    pub async fn latest_events_of(&self, server_ids: &[i64]) -> Result<Vec<ProvisionEvent>> {
        if server_ids.is_empty() {
            return Ok(Vec::new());
        }
        let cols = EVENT_COLS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let ids = crate::id_list(server_ids);
        let rows = sqlx::query(&format!(
            "SELECT {cols} FROM servers s JOIN provision_events e \
             ON e.id = (SELECT MAX(id) FROM provision_events WHERE server_id = s.id) \
             WHERE s.id IN ({ids})"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from).collect()
    }

    pub async fn append_log(
        &self,
        server_id: i64,
        job_id: Option<i64>,
        event_id: Option<i64>,
        stream: LogStream,
        chunk: &str,
    ) -> Result<()> {
        self.append_attempt_log(server_id, job_id, None, event_id, stream, chunk)
            .await
    }

    /// [`Store::append_log`] on behalf of attempt `attempt` of the job (refused once it no longer owns the
    /// job: a worker that lost its lease cannot write into the log of the attempt that replaced it).
    pub async fn append_attempt_log(
        &self,
        server_id: i64,
        job_id: Option<i64>,
        attempt: Option<i64>,
        event_id: Option<i64>,
        stream: LogStream,
        chunk: &str,
    ) -> Result<()> {
        self.append_attempt_logs(server_id, job_id, attempt, event_id, &[(stream, chunk)])
            .await
    }

    /// [`Store::append_attempt_log`] for several rows at once, in their order, in one statement (a command
    /// line and the first output of its command cost one round trip).
    pub async fn append_attempt_logs(
        &self,
        server_id: i64,
        job_id: Option<i64>,
        attempt: Option<i64>,
        event_id: Option<i64>,
        rows: &[(LogStream, &str)],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let fence = job_id.zip(attempt);
        let mut conn = self.telemetry.acquire().await?;
        let written = self
            .insert_activity_rows(
                &mut conn,
                server_id,
                job_id,
                event_id,
                rows,
                fence.map(|(_, a)| a),
            )
            .await?;
        refused_unless(written, fence)?;
        let _ = self.activity.send(server_id);
        Ok(())
    }

    /// The activity row of an event's change, inside `tx`; with `fence` (job, attempt), refused (and so the
    /// transaction rolled back) unless that attempt still runs the job.
    async fn insert_event_activity(
        &self,
        tx: &mut sqlx::AnyConnection,
        ev: &ProvisionEvent,
        fence: Option<(i64, i64)>,
    ) -> Result<()> {
        let written = self
            .insert_activity(
                tx,
                ev.server_id,
                ev.job_id,
                Some(ev.id),
                LogStream::Event,
                &Self::event_activity(ev),
                fence.map(|(_, attempt)| attempt),
            )
            .await?;
        refused_unless(written, fence)
    }

    /// Append one row to a server's activity feed in one statement (see [`Store::insert_activity`]).
    pub(crate) async fn append_activity(
        &self,
        server_id: i64,
        job_id: Option<i64>,
        event_id: Option<i64>,
        stream: LogStream,
        chunk: &str,
        attempt: Option<i64>,
    ) -> Result<bool> {
        let mut conn = self.telemetry.acquire().await?;
        self.insert_activity(
            &mut conn, server_id, job_id, event_id, stream, chunk, attempt,
        )
        .await
    }

    /// Inside `tx`, after its writes (on SQLite a transaction that reads first cannot always upgrade to a
    /// writer): refuse, and so roll back, unless attempt `attempt` still runs job `job_id`.
    async fn fence(tx: &mut sqlx::AnyConnection, job_id: i64, attempt: i64) -> Result<()> {
        let owns =
            sqlx::query("SELECT 1 FROM jobs WHERE id = $1 AND attempt = $2 AND status = 'running'")
                .bind(job_id)
                .bind(attempt)
                .fetch_optional(&mut *tx)
                .await?;
        match owns {
            Some(_) => Ok(()),
            None => Err(crate::StoreError::Superseded { job_id, attempt }),
        }
    }

    /// Append to a server's activity feed, in one statement (on its own or inside a transaction): on
    /// PostgreSQL each statement is a round trip, and a wave of a hundred jobs writes through a handful of
    /// connections. On PostgreSQL a per-server transaction lock is taken before the row's id is drawn, so one
    /// server's rows commit in id order and a watcher reading `id > cursor` never skips one. With `attempt`,
    /// the row is written only while that attempt runs job `job_id` (a worker that lost its lease cannot
    /// write into the attempt that replaced it); `false` when it was not written.
    #[allow(clippy::too_many_arguments)]
    async fn insert_activity(
        &self,
        conn: &mut sqlx::AnyConnection,
        server_id: i64,
        job_id: Option<i64>,
        event_id: Option<i64>,
        stream: LogStream,
        chunk: &str,
        attempt: Option<i64>,
    ) -> Result<bool> {
        self.insert_activity_rows(
            conn,
            server_id,
            job_id,
            event_id,
            &[(stream, chunk)],
            attempt,
        )
        .await
    }

    /// [`Store::insert_activity`] for several rows, written in their order by one statement; `true` when
    /// they were written (all or none).
    async fn insert_activity_rows(
        &self,
        conn: &mut sqlx::AnyConnection,
        server_id: i64,
        job_id: Option<i64>,
        event_id: Option<i64>,
        rows: &[(LogStream, &str)],
        attempt: Option<i64>,
    ) -> Result<bool> {
        let (lock, from) = match self.backend {
            crate::Backend::Postgres => (
                "WITH l AS (SELECT pg_advisory_xact_lock(4242, CAST($1 % 2147483647 AS INTEGER)) AS a, \
                 pg_notify('brokeforge_activity', CAST($1 AS TEXT)) AS b) ",
                ", l",
            ),
            crate::Backend::Sqlite => ("", ""),
        };
        // $1-$4 the row's common columns, then a stream and a chunk per row, then the attempt.
        let values = (0..rows.len())
            .map(|i| {
                format!(
                    "SELECT {i} AS k, ${} AS stream, ${} AS chunk",
                    5 + 2 * i,
                    6 + 2 * i
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let fence = if attempt.is_some() {
            format!(
                " WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $2 AND attempt = ${} AND status = 'running')",
                5 + 2 * rows.len()
            )
        } else {
            String::new()
        };
        let sql = format!(
            "{lock}INSERT INTO command_logs (server_id, job_id, event_id, stream, chunk, created_at) \
             SELECT $1, $2, $3, r.stream, r.chunk, $4 FROM ({values}) r{from}{fence} ORDER BY r.k"
        );
        let mut q = sqlx::query(&sql)
            .bind(server_id)
            .bind(job_id)
            .bind(event_id)
            .bind(now_ms());
        for (stream, chunk) in rows {
            q = q.bind(stream.as_str()).bind(*chunk);
        }
        if let Some(attempt) = attempt {
            q = q.bind(attempt);
        }
        Ok(q.execute(&mut *conn).await?.rows_affected() == rows.len() as u64)
    }

    fn event_activity(event: &ProvisionEvent) -> String {
        serde_json::to_string(event).unwrap_or_default()
    }

    pub async fn logs(&self, server_id: i64, after_id: i64) -> Result<Vec<CommandLog>> {
        let rows = sqlx::query(
            "SELECT id, server_id, job_id, event_id, stream, chunk, created_at FROM command_logs WHERE server_id = $1 AND id > $2 AND stream NOT IN ('event', 'job') ORDER BY id",
        )
        .bind(server_id)
        .bind(after_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(log_from).collect()
    }

    /// Output lines of one job (no event rows).
    /// A page of a job's output after `after_id`, oldest first.
    pub async fn job_logs_after(
        &self,
        job_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<CommandLog>> {
        let rows = sqlx::query(
            "SELECT id, server_id, job_id, event_id, stream, chunk, created_at FROM command_logs WHERE job_id = $1 AND id > $2 AND stream NOT IN ('event', 'job') ORDER BY id LIMIT $3",
        )
        .bind(job_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(log_from).collect()
    }

    /// The newest `limit` rows of a job's output up to `upto_id`, oldest first.
    pub async fn job_logs_tail(
        &self,
        job_id: i64,
        upto_id: i64,
        limit: i64,
    ) -> Result<Vec<CommandLog>> {
        let rows = sqlx::query(
            "SELECT id, server_id, job_id, event_id, stream, chunk, created_at FROM command_logs WHERE job_id = $1 AND id <= $2 AND stream NOT IN ('event', 'job') ORDER BY id DESC LIMIT $3",
        )
        .bind(job_id)
        .bind(upto_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut logs = rows.iter().map(log_from).collect::<Result<Vec<_>>>()?;
        logs.reverse();
        Ok(logs)
    }

    pub async fn job_logs(&self, job_id: i64) -> Result<Vec<CommandLog>> {
        let rows = sqlx::query(
            "SELECT id, server_id, job_id, event_id, stream, chunk, created_at FROM command_logs WHERE job_id = $1 AND stream NOT IN ('event', 'job') ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(log_from).collect()
    }

    /// A server's activity feed after `after_id`: command output and event changes (stream `event`, the event
    /// as JSON), oldest first. The id is the cursor a live watcher resumes from.
    pub async fn activity(
        &self,
        server_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<CommandLog>> {
        let rows = sqlx::query(
            "SELECT id, server_id, job_id, event_id, stream, chunk, created_at FROM command_logs WHERE server_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(server_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.telemetry)
        .await?;
        rows.iter().map(log_from).collect()
    }

    /// The newest activity id of a server (0 when none): where a watcher that wants only new rows starts.
    pub async fn activity_head(&self, server_id: i64) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(id) AS m FROM command_logs WHERE server_id = $1")
            .bind(server_id)
            .fetch_one(&self.telemetry)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("m")?.unwrap_or(0))
    }

    /// Tell a server's watchers that a job ended (how, and why if it failed).
    pub async fn announce_job(&self, job: &crate::Job) -> Result<()> {
        let Some(server_id) = job.server_id else {
            return Ok(());
        };
        let chunk = job_activity(
            job.id,
            &job.kind,
            &job.target,
            job.status,
            job.error.as_deref(),
        );
        self.append_activity(server_id, Some(job.id), None, LogStream::Job, &chunk, None)
            .await?;
        let _ = self.activity.send(server_id);
        Ok(())
    }

    /// The feed id just before a job's first row (`None` when it has none yet).
    pub async fn activity_before_job(&self, job_id: i64) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(id) AS m FROM command_logs WHERE job_id = $1")
            .bind(job_id)
            .fetch_one(&self.telemetry)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("m")?.map(|m| m - 1))
    }

    /// Server ids as they get new activity.
    pub fn subscribe_activity(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.activity.subscribe()
    }

    /// On PostgreSQL: forward other nodes' activity notifications to this process's watchers.
    pub fn spawn_activity_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend != crate::Backend::Postgres {
            return None;
        }
        let store = self.clone();
        Some(tokio::spawn(async move {
            loop {
                match sqlx::postgres::PgListener::connect(&store.url).await {
                    Ok(mut listener) => {
                        if let Err(e) = listener.listen("brokeforge_activity").await {
                            tracing::warn!(error = %e, "cannot LISTEN for activity");
                        } else {
                            while let Ok(n) = listener.recv().await {
                                if let Ok(id) = n.payload().parse::<i64>() {
                                    let _ = store.activity.send(id);
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot connect the activity listener"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }))
    }
}

/// A fenced write that wrote nothing was refused: the attempt no longer runs its job.
fn refused_unless(written: bool, fence: Option<(i64, i64)>) -> Result<()> {
    match fence {
        Some((job_id, attempt)) if !written => {
            Err(crate::StoreError::Superseded { job_id, attempt })
        }
        _ => Ok(()),
    }
}

/// A job's row in its server's activity feed: how it stands (its end, for watchers of the server).
pub(crate) fn job_activity(
    job_id: i64,
    kind: &str,
    target: &Option<crate::JobTarget>,
    status: crate::JobStatus,
    error: Option<&str>,
) -> String {
    serde_json::json!({"job_id": job_id, "kind": kind, "target": target, "status": status.as_str(), "error": error})
        .to_string()
}
