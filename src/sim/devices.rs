//! The fleet's state machine: which action each device works on and which report is due when.
//! Pure — no I/O and no clock (time is milliseconds passed in by the caller) — so its rules are
//! unit-tested without a broker, like the service's `domain` layer.
//!
//! Memory: one 24-byte [`Slot`] per device and one 32-byte timer entry per pending report, in a
//! single min-heap; no task and no allocation per device. A device works through its script one
//! report at a time: popping a report schedules the next, so reports of one device leave in order
//! and a cancelled or replaced action is recognised by its stale entries (the slot no longer names
//! the action) instead of searching the heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::fleet::{self, Fate, Job, Naming, Ratios};
use crate::dmf::inbound::ReportStatus;

/// How long a device takes for each report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// Before every report.
    pub delay_ms: u64,
    /// Extra delay, in [0, jitter_ms], derived from device, action and step.
    pub jitter_ms: u64,
}

/// What the connector has to publish now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Status {
        device: u32,
        action: i64,
        status: ReportStatus,
    },
    Attributes {
        device: u32,
    },
}

/// What became of a deployment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Reports are scheduled.
    Started,
    /// A stuck device took it and will never answer.
    Stuck,
    /// The device already works on (or has closed) this action: a re-send, ignored.
    Duplicate,
    /// MULTI_ACTION while another action is in progress: the device finishes that one first;
    /// the service re-sends the list when it closes.
    Busy,
    /// Not one of our devices.
    Unknown,
}

/// What the device will answer to a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAnswer {
    Canceled,
    Rejected,
    /// The device already closed the action (its FINISHED or ERROR crossed the cancel); the
    /// service has accepted that as the answer, a CANCELED now would be refused.
    AlreadyClosed,
    /// A MULTI_ACTION listing a cancel that was already answered.
    Duplicate,
    Unknown,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    /// The action in progress (0: idle). Timer entries for any other action are stale.
    current: i64,
    /// The last action this device closed (final report or CANCELED): a re-send of it is
    /// ignored, a late cancel for it is not answered.
    closed: i64,
    /// The last action whose cancel was answered (MULTI_ACTION lists repeat cancel entries).
    cancel_answered: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Install,
    DownloadOnly,
    Confirm,
    Cancel,
    Reject,
    Attributes,
}

impl Kind {
    fn of(job: Job) -> Self {
        match job {
            Job::Install => Self::Install,
            Job::DownloadOnly => Self::DownloadOnly,
            Job::Confirm => Self::Confirm,
        }
    }

    fn job(self) -> Option<Job> {
        match self {
            Self::Install => Some(Job::Install),
            Self::DownloadOnly => Some(Job::DownloadOnly),
            Self::Confirm => Some(Job::Confirm),
            _ => None,
        }
    }
}

/// A pending report. Ordered by due time, then by scheduling order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: u64,
    seq: u64,
    action: i64,
    device: u32,
    kind: Kind,
    step: u8,
}

/// Step number used for the jitter of cancel answers (distinct from script steps).
const CANCEL_STEP: u8 = 100;

pub struct Devices {
    naming: Naming,
    ratios: Ratios,
    timing: Timing,
    slots: Vec<Slot>,
    queue: BinaryHeap<Reverse<Due>>,
    seq: u64,
    /// Reused for device ids (fate and jitter are functions of the id).
    scratch: String,
}

impl Devices {
    pub fn new(naming: Naming, ratios: Ratios, timing: Timing) -> Self {
        let slots = vec![Slot::default(); naming.devices() as usize];
        Self {
            naming,
            ratios,
            timing,
            slots,
            queue: BinaryHeap::new(),
            seq: 0,
            scratch: String::new(),
        }
    }

    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    /// Reports waiting for their time.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Bytes held for the fleet's state (slots and timer heap), for the memory claim.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.queue.capacity() * std::mem::size_of::<Reverse<Due>>()
    }

    /// When the earliest report is due (ms), if any.
    pub fn next_due(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse(d)| d.at)
    }

    /// Forget every action and pending report (after a reconnect the service re-sends what is
    /// still open in answer to the new THING_CREATED).
    pub fn reset(&mut self) {
        self.queue.clear();
        self.slots.fill(Slot::default());
    }

    fn fate(&mut self, device: u32) -> Fate {
        self.naming.write_id(device, &mut self.scratch);
        self.ratios.fate(&self.scratch)
    }

    fn schedule(&mut self, base: u64, device: u32, action: i64, kind: Kind, step: u8) {
        self.naming.write_id(device, &mut self.scratch);
        let extra = fleet::jitter(&self.scratch, action, step, self.timing.jitter_ms);
        self.seq += 1;
        self.queue.push(Reverse(Due {
            at: base + self.timing.delay_ms + extra,
            seq: self.seq,
            action,
            device,
            kind,
            step,
        }));
    }

    /// A deployment (DOWNLOAD_AND_INSTALL, DOWNLOAD, CONFIRM, a batch entry or the chosen
    /// MULTI_ACTION element) for `device`. `exclusive`: do not interrupt another action in
    /// progress (MULTI_ACTION); otherwise a new action replaces the old one, as it does in
    /// single-assignment mode, where the service sends a new action only once the old is gone.
    pub fn deploy(
        &mut self,
        device: u32,
        action: i64,
        job: Job,
        exclusive: bool,
        now: u64,
    ) -> Accepted {
        let Some(slot) = self.slots.get_mut(device as usize) else {
            return Accepted::Unknown;
        };
        if slot.current == action || slot.closed == action {
            return Accepted::Duplicate;
        }
        if exclusive && slot.current != 0 {
            return Accepted::Busy;
        }
        slot.current = action;
        if fleet::script(job, self.fate(device)).is_empty() {
            return Accepted::Stuck;
        }
        self.schedule(now, device, action, Kind::of(job), 0);
        Accepted::Started
    }

    /// CANCEL_DOWNLOAD (or a MULTI_ACTION cancel entry, `once`) for `device`'s `action`.
    pub fn cancel(&mut self, device: u32, action: i64, once: bool, now: u64) -> CancelAnswer {
        let Some(slot) = self.slots.get_mut(device as usize) else {
            return CancelAnswer::Unknown;
        };
        if slot.closed == action {
            return CancelAnswer::AlreadyClosed;
        }
        if once && slot.cancel_answered == action {
            return CancelAnswer::Duplicate;
        }
        slot.cancel_answered = action;
        self.naming.write_id(device, &mut self.scratch);
        if self.ratios.rejects_cancel(&self.scratch) {
            // The update goes on; the service puts the action back to RUNNING.
            self.schedule(now, device, action, Kind::Reject, CANCEL_STEP);
            CancelAnswer::Rejected
        } else {
            if slot.current == action {
                slot.current = 0; // stops the script: its pending entry is now stale
            }
            self.schedule(now, device, action, Kind::Cancel, CANCEL_STEP);
            CancelAnswer::Canceled
        }
    }

    /// REQUEST_ATTRIBUTES_UPDATE: answer at once with UPDATE_ATTRIBUTES.
    pub fn request_attributes(&mut self, device: u32, now: u64) -> bool {
        if device >= self.naming.devices() {
            return false;
        }
        self.seq += 1;
        self.queue.push(Reverse(Due {
            at: now,
            seq: self.seq,
            action: 0,
            device,
            kind: Kind::Attributes,
            step: 0,
        }));
        true
    }

    /// THING_DELETED: the device forgets everything (its pending reports become stale).
    pub fn forget(&mut self, device: u32) {
        if let Some(slot) = self.slots.get_mut(device as usize) {
            *slot = Slot::default();
        }
    }

    /// The next report due at `now`, skipping stale entries; schedules the one after it.
    pub fn pop_due(&mut self, now: u64) -> Option<Out> {
        loop {
            let Reverse(top) = self.queue.peek()?;
            if top.at > now {
                return None;
            }
            let Reverse(d) = self.queue.pop()?;
            let slot = &mut self.slots[d.device as usize];
            let status = match d.kind {
                Kind::Attributes => return Some(Out::Attributes { device: d.device }),
                Kind::Cancel => {
                    if slot.closed == d.action {
                        continue;
                    }
                    slot.closed = d.action;
                    ReportStatus::Canceled
                }
                Kind::Reject => {
                    if slot.closed == d.action {
                        continue; // finished meanwhile: that report was the answer
                    }
                    ReportStatus::CancelRejected
                }
                kind => {
                    if slot.current != d.action {
                        continue; // cancelled, replaced or forgotten
                    }
                    let Some(job) = kind.job() else { continue };
                    let script = fleet::script(job, self.fate(d.device));
                    let Some(&status) = script.get(usize::from(d.step)) else {
                        continue;
                    };
                    if usize::from(d.step) + 1 < script.len() {
                        // From the due time, not from now: a late loop catches up instead of
                        // stretching every script.
                        self.schedule(d.at, d.device, d.action, kind, d.step + 1);
                    } else {
                        let slot = &mut self.slots[d.device as usize];
                        slot.current = 0;
                        if job != Job::Confirm {
                            slot.closed = d.action;
                        }
                        // After CONFIRMED the same action comes back as a deployment.
                    }
                    status
                }
            };
            return Some(Out::Status {
                device: d.device,
                action: d.action,
                status,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReportStatus::*;

    fn fleet(n: u32, ratios: Ratios, timing: Timing) -> Devices {
        Devices::new(Naming::new("sim-", n), ratios, timing)
    }

    /// Every report due up to `until`, stepping the clock 1 ms at a time.
    fn drain(d: &mut Devices, from: u64, until: u64) -> Vec<(u64, Out)> {
        let mut out = Vec::new();
        for t in from..=until {
            while let Some(o) = d.pop_due(t) {
                out.push((t, o));
            }
        }
        out
    }

    fn statuses(outs: &[(u64, Out)], action: i64) -> Vec<ReportStatus> {
        outs.iter()
            .filter_map(|(_, o)| match o {
                Out::Status {
                    action: a, status, ..
                } if *a == action => Some(*status),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_healthy_device_reports_the_whole_script_with_delays() {
        let mut d = fleet(
            10,
            Ratios::default(),
            Timing {
                delay_ms: 10,
                jitter_ms: 0,
            },
        );
        assert_eq!(d.deploy(3, 7, Job::Install, false, 0), Accepted::Started);
        let outs = drain(&mut d, 0, 100);
        assert_eq!(
            statuses(&outs, 7),
            [Running, Download, Downloaded, Finished]
        );
        let times: Vec<u64> = outs.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [10, 20, 30, 40]);
        // A re-send of a closed action is ignored.
        assert_eq!(
            d.deploy(3, 7, Job::Install, false, 100),
            Accepted::Duplicate
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn failing_and_stuck_devices_follow_their_hash() {
        let ratios = Ratios {
            fail: 0.3,
            stuck: 0.2,
            cancel_reject: 0.0,
        };
        let mut d = fleet(200, ratios, Timing::default());
        for i in 0..200 {
            d.deploy(i, 1000 + i64::from(i), Job::Install, false, 0);
        }
        let outs = drain(&mut d, 0, 0);
        let n = Naming::new("sim-", 200);
        for i in 0..200u32 {
            let got = statuses(&outs, 1000 + i64::from(i));
            let want = fleet::script(Job::Install, ratios.fate(&n.id(i)));
            assert_eq!(got, want, "device {i}");
        }
    }

    #[test]
    fn download_only_stops_at_downloaded_and_confirm_lets_the_deployment_follow() {
        let mut d = fleet(5, Ratios::default(), Timing::default());
        d.deploy(0, 1, Job::DownloadOnly, false, 0);
        assert_eq!(
            statuses(&drain(&mut d, 0, 0), 1),
            [Running, Download, Downloaded]
        );
        d.deploy(1, 2, Job::Confirm, false, 0);
        assert_eq!(statuses(&drain(&mut d, 0, 0), 2), [Confirmed]);
        // The same action now arrives as DOWNLOAD_AND_INSTALL.
        assert_eq!(d.deploy(1, 2, Job::Install, false, 1), Accepted::Started);
        assert_eq!(statuses(&drain(&mut d, 1, 1), 2).len(), 4);
    }

    #[test]
    fn cancel_stops_the_script_and_reject_lets_it_finish() {
        let t = Timing {
            delay_ms: 10,
            jitter_ms: 0,
        };
        let mut d = fleet(100, Ratios::default(), t);
        d.deploy(0, 1, Job::Install, false, 0);
        let mut outs = drain(&mut d, 0, 15); // RUNNING at 10
        assert_eq!(d.cancel(0, 1, false, 15), CancelAnswer::Canceled);
        outs.extend(drain(&mut d, 16, 100));
        assert_eq!(statuses(&outs, 1), [Running, Canceled]);

        let rejecting = Ratios {
            cancel_reject: 1.0,
            ..Ratios::default()
        };
        let mut d = fleet(100, rejecting, t);
        d.deploy(0, 1, Job::Install, false, 0);
        let mut outs = drain(&mut d, 0, 15);
        assert_eq!(d.cancel(0, 1, false, 15), CancelAnswer::Rejected);
        outs.extend(drain(&mut d, 16, 100));
        assert_eq!(
            statuses(&outs, 1),
            [Running, Download, CancelRejected, Downloaded, Finished]
        );
        // A cancel that crosses the final report is not answered.
        assert_eq!(d.cancel(0, 1, false, 100), CancelAnswer::AlreadyClosed);
    }

    #[test]
    fn stuck_devices_stay_silent_but_answer_cancels() {
        let stuck = Ratios {
            stuck: 1.0,
            ..Ratios::default()
        };
        let mut d = fleet(3, stuck, Timing::default());
        assert_eq!(d.deploy(2, 9, Job::Install, false, 0), Accepted::Stuck);
        assert!(drain(&mut d, 0, 10).is_empty());
        assert_eq!(d.deploy(2, 9, Job::Install, false, 0), Accepted::Duplicate);
        assert_eq!(d.cancel(2, 9, false, 10), CancelAnswer::Canceled);
        assert_eq!(statuses(&drain(&mut d, 10, 10), 9), [Canceled]);
    }

    #[test]
    fn multi_action_does_not_interrupt_and_answers_a_cancel_once() {
        let mut d = fleet(3, Ratios::default(), Timing::default());
        assert_eq!(d.deploy(0, 5, Job::Install, true, 0), Accepted::Started);
        assert_eq!(d.deploy(0, 6, Job::Install, true, 0), Accepted::Busy);
        assert_eq!(d.cancel(0, 4, true, 0), CancelAnswer::Canceled);
        assert_eq!(d.cancel(0, 4, true, 0), CancelAnswer::Duplicate);
        let outs = drain(&mut d, 0, 0);
        assert_eq!(statuses(&outs, 5).len(), 4);
        assert_eq!(statuses(&outs, 4), [Canceled]);
        assert_eq!(d.deploy(0, 6, Job::Install, true, 1), Accepted::Started);
    }

    #[test]
    fn out_of_range_devices_and_forgetting() {
        let mut d = fleet(2, Ratios::default(), Timing::default());
        assert_eq!(d.deploy(2, 1, Job::Install, false, 0), Accepted::Unknown);
        assert_eq!(d.cancel(2, 1, false, 0), CancelAnswer::Unknown);
        assert!(!d.request_attributes(2, 0));
        d.deploy(1, 1, Job::Install, false, 0);
        d.forget(1);
        assert!(
            drain(&mut d, 0, 0).is_empty(),
            "a deleted device says nothing"
        );
        assert!(d.request_attributes(1, 0));
        assert_eq!(d.pop_due(0), Some(Out::Attributes { device: 1 }));
    }

    #[test]
    fn a_100k_fleet_holds_a_few_megabytes() {
        let mut d = fleet(100_000, Ratios::default(), Timing::default());
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(std::mem::size_of::<Reverse<Due>>(), 32);
        for i in 0..100_000 {
            d.deploy(i, i64::from(i) + 1, Job::Install, false, 0);
        }
        // Slots plus one pending report per device (the heap may round its capacity up).
        assert!(d.memory_bytes() <= 100_000 * 24 + 2 * 100_000 * 32);
        let mut reports = 0;
        while d.pop_due(0).is_some() {
            reports += 1;
        }
        assert_eq!(reports, 400_000);
    }
}
