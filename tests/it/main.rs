//! The one integration-test binary: the whole service against real PostgreSQL and RabbitMQ.

mod dmf;
mod helpers;
mod repository;
mod schemas;
