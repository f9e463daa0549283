//! dmf-broker: staged software rollouts to device fleets over Eclipse hawkBit's Device Management
//! Federation (DMF) protocol on RabbitMQ, with all state in PostgreSQL.
//!
//! Layers (dependencies point inward):
//!
//! * [`domain`] — pure rules and state machines; no I/O, no clock. The rollout machine
//!   (`domain::rollout::machine::step`) decides every rollout transition and returns commands.
//! * [`dmf`] — the wire protocol: serde types mirroring `amqp-schemas/`, the envelope codec
//!   (ids are plain numbers there; the engine reads them into `domain::ids`).
//! * [`store`] — owns every SQL statement; functions take `&mut PgConnection` so the engine
//!   composes them in one transaction; rows stay private and convert to domain types.
//!   [`store::Db`] lets the API run store functions without holding the pool.
//! * [`engine`] — use cases: apply a batch of inbound DMF messages, assign, cancel, render
//!   outbound messages; state changes and their outbox rows commit together. `engine::rollouts`
//!   is the rollout machine's one interpreter (`effects.rs` performs its commands);
//!   `engine::auto_assignment` matches targets that register or change, and runs fleet passes.
//! * [`amqp`] — thin lapin adapter: topology, the batching consumer, the outbox publisher.
//! * [`api`] — axum: the hawkBit-compatible Management API and `/health`; `api::common` holds
//!   the shapes every resource shares (list, get one, update, add/remove members).
//! * [`health`] — the broker liveness `amqp` records and `/health` reports (a leaf, so that
//!   `app`, `amqp` and `api` import it rather than each other).
//! * [`app`] wires them together; [`config`] and [`telemetry`] are read once at start.
//! * [`sim`] — `simulate`: a fleet of virtual devices behind one DMF connector (for demos and
//!   load); [`demo`] runs the service, a fleet and a rollout in one process.
//! * [`bench`] — `bench`: the load benchmark; runs `serve` as a child on its own database and
//!   vhost, measures it against raw RabbitMQ/PostgreSQL ceilings, writes a table and a JSON report.

pub mod amqp;
pub mod api;
pub mod app;
pub mod auth;
pub mod bench;
pub mod config;
pub mod demo;
pub mod dmf;
pub mod domain;
pub mod engine;
pub mod health;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod telemetry;
