//! The one integration-test binary: the whole service against real PostgreSQL and RabbitMQ.

mod actions;
mod auth;
mod auto_assignments;
mod bench;
mod coverage;
mod dmf;
mod flows;
mod helpers;
mod invalidation;
mod layers;
mod machine;
mod outbox;
mod query;
mod repository;
mod repository_types;
mod resilience;
mod rollouts;
mod schemas;
mod simulate;
mod statistics;
mod status_lists;
mod system;
mod target_settings;
mod target_types;
mod ui;
