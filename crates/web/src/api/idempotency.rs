//! `Idempotency-Key` on the API's POSTs: a client that lost an answer (a timeout, a dropped connection) sends
//! the request again with the same key and gets the first answer back, with `Idempotent-Replayed: true`,
//! instead of a second job. The key is the caller's own; a key reused for another request is refused, and
//! one whose first request is still running answers 409. Answers other than 2xx are not kept (the request
//! changed nothing to protect), so the same key may be tried again after fixing the request.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use brokeforge_store::Idempotent;
use sha2::Digest;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";
/// Largest request body read to compare retries (the API's bodies are small JSON).
const MAX_REQUEST: usize = 2 * 1024 * 1024;
/// Largest answer kept for a replay.
const MAX_ANSWER: usize = 1024 * 1024;

/// A key: 1 to 255 visible ASCII characters (a UUID is the usual choice).
fn valid(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

pub async fn idempotent(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(HEADER) {
        return next.run(req).await;
    }
    // A session is not a thing to replay; signed out, the route answers 401 on its own.
    let path = req.uri().path().to_string();
    let Some(user_id) = req.extensions().get::<Authed>().map(|a| a.user.id) else {
        return next.run(req).await;
    };
    if path == "/login" || path == "/logout" {
        return next.run(req).await;
    }
    let key = match req.headers().get(HEADER).map(HeaderValue::to_str) {
        Some(Ok(k)) if valid(k) => k.to_string(),
        _ => {
            return ApiError::invalid(
                "Idempotency-Key",
                "give 1 to 255 visible ASCII characters, such as a UUID",
            )
            .into_response();
        }
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_REQUEST).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            "the request body is too large",
        )
        .into_response();
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or(path.clone(), |p| p.to_string());
    let mut digest = sha2::Sha256::new();
    digest.update(target.as_bytes());
    digest.update([0]);
    digest.update(&bytes);
    let hash = hex::encode(digest.finalize());
    let claim = state
        .store
        .claim_idempotent(user_id, &key, ("POST", &target, &hash))
        .await;
    match claim {
        Err(e) => ApiError::from(e).into_response(),
        Ok(Idempotent::Replay { status, body }) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::HeaderName::from_static(REPLAYED), "true"),
            ],
            body,
        )
            .into_response(),
        Ok(Idempotent::InProgress) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "the first request with this Idempotency-Key has not answered yet: try again in a moment",
        )
        .into_response(),
        Ok(Idempotent::Mismatch) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request: use a new key for a new request",
        )
        .into_response(),
        Ok(Idempotent::Run) => {
            let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            if !res.status().is_success() {
                if let Err(e) = state.store.release_idempotent(user_id, &key).await {
                    tracing::warn!(error = %e, "releasing an idempotency key failed");
                }
                return res;
            }
            let (mut head, body) = res.into_parts();
            let kept = match to_bytes(body, MAX_ANSWER).await {
                Ok(b) => b,
                Err(e) => {
                    // The work is done but its answer cannot be kept: the key stays claimed (a retry
                    // answers 409, never runs twice).
                    tracing::warn!(error = %e, "an answer too large to keep for Idempotency-Key");
                    return ApiError::internal().into_response();
                }
            };
            if let Err(e) = state
                .store
                .finish_idempotent(user_id, &key, head.status.as_u16(), &kept)
                .await
            {
                tracing::warn!(error = %e, "keeping an answer for Idempotency-Key failed");
            }
            head.headers
                .insert(REPLAYED, HeaderValue::from_static("false"));
            Response::from_parts(head, Body::from(kept))
        }
    }
}
