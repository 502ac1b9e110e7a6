//! Switchyard server: a Socket.IO-compatible realtime server (chat, notifications,
//! presence) on axum and its own Socket.IO transport (`switchyard-sio`).
//!
//! # Layout
//! - [`config`] — every setting, parsed and validated once at start-up.
//! - [`app`] — state, router, serve loop and SIGTERM drain.
//! - [`auth`] — JWT verification (HS256, RS256/ES256 PEM, JWKS) and development tokens.
//! - [`ns`] — Socket.IO namespaces and the steps every event handler shares.
//! - [`http`] — health, readiness and the HTTP API.
//! - [`chat`] — chat operations shared by socket events and HTTP routes.
//! - [`notifications`] — notification lists, event rules, the job queue and its channels.
//! - [`presence`] — who is online, and `presence` announcements to subscribers.
//! - [`protocol`] — contract payloads and their validation.
//! - [`store`] — chat state behind a trait; in-memory default.
//! - [`ratelimit`] — per-user budgets with the warning-then-block ladder.
//! - [`emitter`] — delivery to Socket.IO rooms on every node.
//! - [`bus`] — emits and room joins carried to the other nodes over Redis pub/sub.
//! - [`redis`] — the shared Redis connection and the bus's pub/sub driver.
//! - [`error`] — the client-facing error shared by acks and HTTP responses.
//! - [`metrics`] — Prometheus metrics (`GET /metrics`) and the API other modules record with.
//! - [`telemetry`] — logs, OpenTelemetry spans and trace-context propagation.
//! - [`webapp`] — the chat and notifications web app served at `/`, embedded in the binary.

pub mod app;
pub mod auth;
pub mod bus;
pub mod chat;
pub mod config;
pub mod emitter;
pub mod error;
pub mod http;
pub mod metrics;
pub mod notifications;
pub mod ns;
pub mod overload;
pub mod presence;
pub mod protocol;
pub mod ratelimit;
pub mod redis;
pub mod store;
pub mod telemetry;
pub mod webapp;

pub use app::{serve, shutdown_signal};
pub use config::Config;
