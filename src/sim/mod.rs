//! `dmf-broker simulate`: a fleet of virtual devices behind one DMF connector.
//!
//! The connector does what dmf-protocol.md §1.3 says connectors do: it declares its own reply
//! exchange (fanout, auto-delete, named `--reply-to`) and a queue behind it (auto-delete,
//! hawkBit's simulator arguments), registers every device with THING_CREATED (attributes
//! `hwRevision`, `isoCode`, `serial`) through `dmf.exchange`, and answers what the service sends:
//! deployments with RUNNING, DOWNLOAD, DOWNLOADED, FINISHED (or ERROR), CONFIRM with CONFIRMED,
//! cancels with CANCELED (or CANCEL_REJECTED), attribute requests with UPDATE_ATTRIBUTES.
//!
//! Layout: [`fleet`] (pure: ids, the hash that decides each device's fate, message bodies),
//! [`devices`] (pure: the per-device state machine and the timer heap), [`wire`] (decoding what
//! the service sends), [`connector`] (lapin: topology, consumer, pipelined publisher). No task and
//! no allocation per device, so one process holds hundreds of thousands of them.

pub mod connector;
pub mod devices;
pub mod fleet;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::SimulateArgs;
use devices::{Accepted, CancelAnswer, Devices, Timing};
use fleet::{Bodies, Naming, Ratios};
use wire::Incoming;

/// Declares [`Counters`] and its snapshot [`SimStats`] from one list of counter names.
macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident, )+) => {
        /// Live counters, readable while the simulator runs (tests, the demo and the benchmark
        /// watch them). Reports count when the broker confirmed them.
        #[derive(Debug, Default)]
        pub struct Counters {
            $( $(#[$doc])* pub $name: AtomicU64, )+
        }

        /// A snapshot of [`Counters`], returned when the simulator stops.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct SimStats {
            $( $(#[$doc])* pub $name: u64, )+
        }

        impl Counters {
            pub fn snapshot(&self) -> SimStats {
                SimStats {
                    $( $name: self.$name.load(Ordering::Relaxed), )+
                }
            }
        }
    };
}

counters! {
    /// THING_CREATED messages confirmed by the broker.
    registered,
    /// Deployment requests taken on (stuck devices included, re-sends not).
    deployments,
    /// Deployments a stuck device took and will never answer.
    stuck,
    /// Cancel requests answered or to be answered.
    cancels,
    /// Status reports confirmed by the broker (every status).
    reports,
    finished,
    /// ERROR reports.
    errors,
    canceled,
    cancel_rejected,
    /// UPDATE_ATTRIBUTES answers confirmed.
    attributes,
    /// Messages ignored: not understood, or for a device this fleet does not own.
    ignored,
    /// Publishes the broker refused (nack).
    nacked,
    /// Connections lost and re-established.
    reconnects,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Everything one simulator holds across connections.
pub struct Sim {
    pub(crate) args: SimulateArgs,
    pub(crate) devices: Devices,
    pub(crate) bodies: Bodies,
    pub(crate) counters: Arc<Counters>,
    /// Time zero of the timer heap.
    epoch: Instant,
}

impl Sim {
    fn new(args: SimulateArgs, counters: Arc<Counters>) -> Self {
        let naming = Naming::new(&args.prefix, args.devices);
        let devices = Devices::new(
            naming.clone(),
            Ratios {
                fail: args.fail_ratio,
                stuck: args.stuck_ratio,
                cancel_reject: args.cancel_reject_ratio,
            },
            Timing {
                delay_ms: args.delay_ms,
                jitter_ms: args.jitter_ms,
            },
        );
        Self {
            args,
            devices,
            bodies: Bodies::new(naming),
            counters,
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the simulator started (the heap's clock).
    pub(crate) fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn index(&self, thing_id: &str) -> Option<u32> {
        let i = self.devices.naming().index_of(thing_id);
        if i.is_none() {
            bump(&self.counters.ignored);
            tracing::debug!(thing_id, "message for a device this fleet does not own");
        }
        i
    }

    fn deploy(&mut self, device: u32, action: i64, job: fleet::Job, exclusive: bool, now: u64) {
        match self.devices.deploy(device, action, job, exclusive, now) {
            Accepted::Started => bump(&self.counters.deployments),
            Accepted::Stuck => {
                bump(&self.counters.deployments);
                bump(&self.counters.stuck);
            }
            Accepted::Duplicate | Accepted::Busy => {}
            Accepted::Unknown => bump(&self.counters.ignored),
        }
    }

    fn cancel(&mut self, device: u32, action: i64, once: bool, now: u64) {
        match self.devices.cancel(device, action, once, now) {
            CancelAnswer::Canceled | CancelAnswer::Rejected => bump(&self.counters.cancels),
            CancelAnswer::AlreadyClosed | CancelAnswer::Duplicate => {}
            CancelAnswer::Unknown => bump(&self.counters.ignored),
        }
    }

    /// Apply one message from the service to the fleet (answers go into the timer heap).
    pub(crate) fn apply(&mut self, incoming: Incoming<'_>, now: u64) {
        match incoming {
            Incoming::Deployment {
                thing_id,
                action,
                job,
            } => {
                if let Some(d) = self.index(thing_id) {
                    self.deploy(d, action, job, false, now);
                }
            }
            Incoming::Batch { targets, job } => {
                for (thing_id, action) in targets {
                    if let Some(d) = self.index(&thing_id) {
                        self.deploy(d, action, job, false, now);
                    }
                }
            }
            Incoming::Multi {
                thing_id,
                cancels,
                work,
            } => {
                let Some(d) = self.index(thing_id) else {
                    return;
                };
                // Cancels first: cancelling the action in progress frees the device for the
                // next one in the same list.
                for action in cancels {
                    self.cancel(d, action, true, now);
                }
                if let Some((action, job)) = work {
                    self.deploy(d, action, job, true, now);
                }
            }
            Incoming::Cancel { thing_id, action } => {
                if let Some(d) = self.index(thing_id) {
                    self.cancel(d, action, false, now);
                }
            }
            Incoming::RequestAttributes { thing_id } => {
                if let Some(d) = self.index(thing_id) {
                    self.devices.request_attributes(d, now);
                }
            }
            Incoming::Deleted { thing_id } => {
                if let Some(d) = self.index(thing_id) {
                    self.devices.forget(d);
                }
            }
            Incoming::Ignored => {}
        }
    }
}

/// Run the simulator until `token` is cancelled; returns the final counters. Reconnects with
/// backoff (1 s doubling to 30 s) when the broker connection drops, and then registers the
/// fleet again so the service re-sends every open action.
pub async fn run(args: SimulateArgs, token: CancellationToken) -> anyhow::Result<SimStats> {
    run_observed(args, token, Arc::new(Counters::default())).await
}

/// [`run`], updating `counters` as it goes.
pub async fn run_observed(
    args: SimulateArgs,
    token: CancellationToken,
    counters: Arc<Counters>,
) -> anyhow::Result<SimStats> {
    args.validate()
        .map_err(anyhow::Error::msg)
        .context("invalid simulator settings")?;
    tracing::info!(
        devices = args.devices,
        prefix = %args.prefix,
        reply_to = %args.reply_to,
        fail_ratio = args.fail_ratio,
        stuck_ratio = args.stuck_ratio,
        cancel_reject_ratio = args.cancel_reject_ratio,
        delay_ms = args.delay_ms,
        jitter_ms = args.jitter_ms,
        "simulator starting"
    );
    let mut sim = Sim::new(args, counters.clone());
    let mut backoff = Duration::from_secs(1);
    loop {
        if token.is_cancelled() {
            break;
        }
        let mut registered = false;
        match connector::session(&mut sim, &token, &mut registered).await {
            Ok(()) => break,
            Err(e) => {
                // Only a session that got going resets the delay: a broker or service that is
                // not there yet is retried less and less often.
                if registered {
                    backoff = Duration::from_secs(1);
                    bump(&counters.reconnects);
                }
                sim.devices.reset();
                tracing::warn!(error.message = %e, retry_in_ms = backoff.as_millis() as u64,
                    "simulator session ended (is the service running? it declares dmf.exchange); reconnecting");
            }
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
    let stats = counters.snapshot();
    tracing::info!(?stats, "simulator stopped");
    Ok(stats)
}
