//! The admin HTTP API (`rapport serve`): axum handlers over the write pipeline. Handlers are
//! small: authenticate, check the role, run the pipeline on a blocking thread (SQLite and plugin
//! calls block), answer JSON — or `application/problem+json` through [`ApiError`].

mod auth;
mod error;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

pub use auth::{Caller, Role, hash_token, new_token};
pub use error::ApiError;

use crate::pipeline::Pipeline;

/// Everything a handler needs, in one struct.
pub struct AppState {
    pub pipeline: Pipeline,
    /// sha256 of the admin token.
    pub admin_hash: String,
}

pub type State = Arc<AppState>;

/// The largest request body (imports included).
pub const BODY_LIMIT: usize = 256 << 20;

pub fn router(state: State) -> Router {
    routes::routes().layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT)).with_state(state)
}

/// Serve until Ctrl-C; requests in flight finish first.
pub async fn serve(listener: tokio::net::TcpListener, state: State) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: finishing requests in flight");
        })
        .await
}

/// Run blocking work (SQLite, plugin calls) off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&Pipeline) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(&state.pipeline))
        .await
        .map_err(|e| ApiError::internal(format!("a request handler panicked: {e}")))?
}
