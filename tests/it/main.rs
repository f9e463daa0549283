//! The one integration-test binary: the whole service against real PostgreSQL and RabbitMQ.

mod auth;
mod auto_assignments;
mod bench;
mod dmf;
mod flows;
mod helpers;
mod invalidation;
mod layers;
mod machine;
mod query;
mod repository;
mod resilience;
mod rollouts;
mod schemas;
mod simulate;
mod statistics;
mod status_lists;
mod system;
mod target_groups;
mod target_settings;
mod target_types;
mod targets;
mod ui;
