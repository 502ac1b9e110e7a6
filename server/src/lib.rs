//! Switchyard server: a Socket.IO-compatible realtime server (chat, notifications,
//! presence) on axum and its own Socket.IO transport (`switchyard-sio`).
//!
//! # Layout
//!
//! Floors, top to bottom; a module imports only from its own floor or below, never up, and
//! modules of one floor do not import each other in a loop. `tests/layers.rs` checks both
//! over the `use crate::` paths of every file (see the README's layout section).
//!
//! 1. [`app`] — choose the backends, wire everything, route, serve and drain: the only
//!    module that sees everything.
//! 2. [`socket`] — the namespaces and their events; [`http`] — the probes, the API routes,
//!    the web app.
//! 3. [`state`] — the application state (handles on the features); [`gate`] — the one
//!    admission gate (identify, rate limit, parse) both sides pass.
//! 4. features, each a service that knows no transport, its payloads, and its backends as
//!    a trait with `memory` and `redis`: [`chat`], [`notifications`], [`presence`],
//!    [`ratelimit`]; and [`admin`], the Socket.IO Admin UI's side across the fleet.
//! 5. [`delivery`] — per-socket state, room names, the emitter, the cross-node bus and the
//!    connection state recovery sessions kept in Redis.
//! 6. [`redis`] — the shared connection and the bus's pub/sub driver.
//! 7. ground floor: [`config`], [`error`], [`metrics`], [`telemetry`], [`protocol`] (the
//!    contract's common rules: namespaces, payload parsing, ids, clocks) and [`auth`]
//!    (token verification; the identity every floor above passes around).

pub mod admin;
pub mod app;
pub mod auth;
pub mod chat;
pub mod config;
pub mod delivery;
pub mod error;
pub mod gate;
pub mod http;
pub mod metrics;
pub mod notifications;
pub mod presence;
pub mod protocol;
pub mod ratelimit;
pub mod redis;
pub mod socket;
pub mod state;
pub mod telemetry;

pub use app::serve;
pub use config::Config;
