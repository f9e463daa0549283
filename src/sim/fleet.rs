//! Who the virtual devices are and what becomes of them, as pure functions of the device id.
//!
//! Ids are the prefix plus a zero-padded index (`sim-000042`). Whether a device fails, hangs or
//! refuses cancels is decided by a stable hash of its id — FNV-1a (64 bit) followed by the
//! splitmix64 finaliser, defined here bit for bit — so a run, a test or a benchmark can predict
//! the outcome of every device, on every platform, without storing anything per device.
//!
//! Nothing here allocates per device: ids and message bodies are written into buffers the caller
//! reuses.

use std::fmt::Write as _;
use std::io::Write as _;

use crate::dmf::inbound::ReportStatus;

/// Ids have at least this many digits (`sim-000042`), more when the fleet needs them.
pub const MIN_WIDTH: usize = 6;

/// How device ids are spelled for a fleet of `devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    prefix: String,
    width: usize,
    devices: u32,
}

impl Naming {
    pub fn new(prefix: &str, devices: u32) -> Self {
        let last = devices.saturating_sub(1);
        let digits = last.checked_ilog10().map_or(1, |d| d as usize + 1);
        Self {
            prefix: prefix.to_owned(),
            width: digits.max(MIN_WIDTH),
            devices,
        }
    }

    pub fn devices(&self) -> u32 {
        self.devices
    }

    /// The id of device `index`, e.g. `sim-000042`.
    pub fn id(&self, index: u32) -> String {
        let mut s = String::with_capacity(self.prefix.len() + self.width);
        self.write_id(index, &mut s);
        s
    }

    /// Replace the contents of `out` with the id of device `index` (no allocation once `out`
    /// has grown to an id's length).
    pub fn write_id(&self, index: u32, out: &mut String) {
        out.clear();
        out.push_str(&self.prefix);
        // Writing to a String cannot fail.
        let _ = write!(out, "{index:0width$}", width = self.width);
    }

    /// The index of one of our devices, or `None` for an id this fleet does not own (another
    /// connector's device, a different padding, an index beyond the fleet).
    pub fn index_of(&self, id: &str) -> Option<u32> {
        let digits = id.strip_prefix(self.prefix.as_str())?;
        if digits.len() != self.width || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let index: u32 = digits.parse().ok()?;
        (index < self.devices).then_some(index)
    }
}

/// FNV-1a (64 bit) of the id, then the splitmix64 finaliser so that ids differing only in their
/// last digit land far apart. Stable across runs, platforms and versions: changing it changes
/// which devices fail, so the tests pin known values.
pub fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The splitmix64 finaliser: a bijection on u64 with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Salts that make the three decisions independent of each other.
const SALT_FAIL: u64 = 0x6661_696c_0000_0001;
const SALT_STUCK: u64 = 0x7374_7563_6b00_0002;
const SALT_CANCEL: u64 = 0x6361_6e63_656c_0003;
const SALT_ATTRS: u64 = 0x6174_7472_7300_0004;

/// A number in [0, 1) from the id's hash and a purpose.
fn unit(hash: u64, salt: u64) -> f64 {
    (mix(hash ^ salt) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the device with this id answers deployments with ERROR at this ratio. Monotone in
/// the ratio: the devices failing at 0.1 also fail at 0.2.
pub fn fails(id: &str, ratio: f64) -> bool {
    unit(id_hash(id), SALT_FAIL) < ratio
}

/// Whether the device never answers a deployment at this ratio.
pub fn stuck(id: &str, ratio: f64) -> bool {
    unit(id_hash(id), SALT_STUCK) < ratio
}

/// Whether the device answers CANCEL_DOWNLOAD with CANCEL_REJECTED at this ratio.
pub fn rejects_cancel(id: &str, ratio: f64) -> bool {
    unit(id_hash(id), SALT_CANCEL) < ratio
}

/// The configured fractions of misbehaving devices.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Ratios {
    pub fail: f64,
    pub stuck: f64,
    pub cancel_reject: f64,
}

/// What a device does with a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Succeeds,
    Fails,
    /// Never answers; stuck wins over failing (a silent device cannot report ERROR).
    Stuck,
}

impl Ratios {
    pub fn fate(&self, id: &str) -> Fate {
        let h = id_hash(id);
        if unit(h, SALT_STUCK) < self.stuck {
            Fate::Stuck
        } else if unit(h, SALT_FAIL) < self.fail {
            Fate::Fails
        } else {
            Fate::Succeeds
        }
    }

    pub fn rejects_cancel(&self, id: &str) -> bool {
        rejects_cancel(id, self.cancel_reject)
    }
}

/// A deterministic delay in [0, jitter_ms] for one step of one action of one device, so that two
/// runs with the same fleet also share their timing pattern.
pub fn jitter(id: &str, action: i64, step: u8, jitter_ms: u64) -> u64 {
    if jitter_ms == 0 {
        return 0;
    }
    let z = id_hash(id) ^ (action as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(step);
    mix(z) % (jitter_ms + 1)
}

/// What the device is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// DOWNLOAD_AND_INSTALL (or its batch / multi-action form).
    Install,
    /// DOWNLOAD: a download-only action, or one whose maintenance window is closed.
    DownloadOnly,
    /// CONFIRM: consent first; the deployment follows.
    Confirm,
}

/// The status reports a device sends for a job, in order. Empty for a stuck device.
pub fn script(job: Job, fate: Fate) -> &'static [ReportStatus] {
    use ReportStatus::*;
    match (job, fate) {
        (_, Fate::Stuck) => &[],
        (Job::Confirm, _) => &[Confirmed],
        (Job::Install, Fate::Succeeds) => &[Running, Download, Downloaded, Finished],
        (Job::Install, Fate::Fails) => &[Running, Download, Downloaded, Error],
        (Job::DownloadOnly, Fate::Succeeds) => &[Running, Download, Downloaded],
        (Job::DownloadOnly, Fate::Fails) => &[Running, Download, Error],
    }
}

/// The history message that goes with each report (plain text: the service refuses markup).
pub fn report_message(status: ReportStatus) -> &'static str {
    use ReportStatus::*;
    match status {
        Running => "Simulated device: update started",
        Download => "Simulated device: downloading artifacts",
        Downloaded => "Simulated device: artifacts downloaded",
        Finished => "Simulated device: update installed",
        Error => "Simulated device: installation failed (fail ratio)",
        Confirmed => "Simulated device: update confirmed",
        Canceled => "Simulated device: update cancelled on request",
        CancelRejected => "Simulated device: cancellation rejected (cancel-reject ratio)",
        Retrieved | Warning | Denied => "Simulated device",
    }
}

const HW_REVISIONS: [&str; 4] = ["1.0", "1.1", "2.0", "2.1"];
const ISO_CODES: [&str; 8] = ["DE", "FR", "US", "JP", "BR", "IN", "GB", "SE"];

/// The attributes a device reports: `hwRevision` and `isoCode` chosen by its hash, `serial`
/// from its index. Writes `{"attributes":{...},"mode":"MERGE"}` (the UPDATE_ATTRIBUTES body,
/// also THING_CREATED's `attributeUpdate`) into `out`.
fn write_attribute_update(naming: &Naming, index: u32, id: &str, out: &mut Vec<u8>) {
    let h = mix(id_hash(id) ^ SALT_ATTRS);
    let hw = HW_REVISIONS[(h % HW_REVISIONS.len() as u64) as usize];
    let iso = ISO_CODES[((h >> 16) % ISO_CODES.len() as u64) as usize];
    // Writing to a Vec cannot fail. Values need no escaping: the prefix is restricted to
    // `SimulateArgs::valid_prefix_char` and the rest are digits and constants.
    let _ = write!(
        out,
        r#"{{"attributes":{{"hwRevision":"{hw}","isoCode":"{iso}","serial":"SN-{index:0width$}"}},"mode":"MERGE"}}"#,
        width = naming.width
    );
}

/// Builds the per-device parts of messages (id, bodies) into reused buffers.
#[derive(Debug)]
pub struct Bodies {
    naming: Naming,
    id: String,
    body: Vec<u8>,
}

impl Bodies {
    pub fn new(naming: Naming) -> Self {
        Self {
            naming,
            id: String::new(),
            body: Vec::new(),
        }
    }

    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    /// THING_CREATED for device `index`: its id and the body
    /// `{"attributeUpdate":{"attributes":{...},"mode":"MERGE"}}`.
    pub fn thing_created(&mut self, index: u32) -> (&str, &[u8]) {
        self.naming.write_id(index, &mut self.id);
        self.body.clear();
        self.body.extend_from_slice(br#"{"attributeUpdate":"#);
        write_attribute_update(&self.naming, index, &self.id, &mut self.body);
        self.body.push(b'}');
        (&self.id, &self.body)
    }

    /// UPDATE_ATTRIBUTES for device `index` (the answer to REQUEST_ATTRIBUTES_UPDATE).
    pub fn attributes(&mut self, index: u32) -> (&str, &[u8]) {
        self.naming.write_id(index, &mut self.id);
        self.body.clear();
        write_attribute_update(&self.naming, index, &self.id, &mut self.body);
        (&self.id, &self.body)
    }

    /// UPDATE_ACTION_STATUS for device `index`: `{"actionId":n,"actionStatus":"...","message":["..."]}`.
    pub fn status(&mut self, index: u32, action: i64, status: ReportStatus) -> (&str, &[u8]) {
        self.naming.write_id(index, &mut self.id);
        self.body.clear();
        let _ = write!(
            self.body,
            r#"{{"actionId":{action},"actionStatus":"{}","message":["{}"]}}"#,
            status_name(status),
            report_message(status)
        );
        (&self.id, &self.body)
    }
}

/// The wire spelling of a status (as serde writes it for `ReportStatus`).
pub fn status_name(status: ReportStatus) -> &'static str {
    use ReportStatus::*;
    match status {
        Download => "DOWNLOAD",
        Retrieved => "RETRIEVED",
        Running => "RUNNING",
        Warning => "WARNING",
        Downloaded => "DOWNLOADED",
        Finished => "FINISHED",
        Error => "ERROR",
        Canceled => "CANCELED",
        CancelRejected => "CANCEL_REJECTED",
        Confirmed => "CONFIRMED",
        Denied => "DENIED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmf::inbound::{ActionUpdateStatus, AttributeMode, AttributeUpdate, ThingCreated};

    #[test]
    fn ids_are_prefix_and_zero_padded_index_and_parse_back() {
        let n = Naming::new("sim-", 1000);
        assert_eq!(n.id(42), "sim-000042");
        assert_eq!(n.index_of("sim-000042"), Some(42));
        assert_eq!(n.index_of("sim-42"), None, "other padding is not ours");
        assert_eq!(n.index_of("sim-001000"), None, "beyond the fleet");
        assert_eq!(n.index_of("other-000001"), None);
        assert_eq!(n.index_of("sim-00004x"), None);
        // Larger fleets widen the padding so that ids keep sorting by index.
        let big = Naming::new("d", 10_000_000);
        assert_eq!(big.id(7), "d0000007");
        assert_eq!(big.index_of("d9999999"), Some(9_999_999));
        assert_eq!(Naming::new("x", 1).id(0), "x000000");
    }

    #[test]
    fn the_hash_is_pinned_so_runs_are_reproducible_everywhere() {
        // FNV-1a of "" is the offset basis; the finaliser is splitmix64's.
        assert_eq!(id_hash(""), mix(0xcbf2_9ce4_8422_2325));
        // Pinned values (computed by an independent implementation): if these change, every
        // benchmark's failing devices change.
        assert_eq!(id_hash("sim-000000"), 0xdf97_4fa0_6c87_9b7f);
        assert_eq!(id_hash("sim-000042"), 0x3444_4dff_8ccc_8735);
        let failing: Vec<u32> = (0..40)
            .filter(|i| fails(&Naming::new("sim-", 40).id(*i), 0.2))
            .collect();
        assert_eq!(failing, vec![5, 6, 10, 12, 15, 17, 19, 26, 34]);
    }

    #[test]
    fn decisions_follow_the_ratio_and_are_independent() {
        let n = Naming::new("sim-", 100_000);
        let mut fail = 0;
        let mut stuck_n = 0;
        let mut both = 0;
        for i in 0..100_000 {
            let id = n.id(i);
            let f = fails(&id, 0.1);
            let s = stuck(&id, 0.3);
            fail += u32::from(f);
            stuck_n += u32::from(s);
            both += u32::from(f && s);
            // Monotone: failing at 0.1 implies failing at 0.2.
            assert!(!f || fails(&id, 0.2));
        }
        let near = |got: u32, want: f64| (f64::from(got) / 100_000.0 - want).abs() < 0.005;
        assert!(near(fail, 0.1), "{fail}");
        assert!(near(stuck_n, 0.3), "{stuck_n}");
        assert!(near(both, 0.03), "independent: {both}");
        assert!(!fails("sim-000001", 0.0));
        assert!(fails("sim-000001", 1.0));
    }

    #[test]
    fn stuck_wins_over_failing() {
        let r = Ratios {
            fail: 1.0,
            stuck: 1.0,
            cancel_reject: 0.0,
        };
        assert_eq!(r.fate("sim-000001"), Fate::Stuck);
        let r = Ratios { stuck: 0.0, ..r };
        assert_eq!(r.fate("sim-000001"), Fate::Fails);
        assert_eq!(Ratios::default().fate("sim-000001"), Fate::Succeeds);
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let mut seen = std::collections::BTreeSet::new();
        for a in 0..1000 {
            let j = jitter("sim-000001", a, 0, 10);
            assert!(j <= 10);
            seen.insert(j);
        }
        assert_eq!(seen.len(), 11, "every value in [0, 10] occurs");
        assert_eq!(jitter("sim-000001", 5, 1, 0), 0);
    }

    #[test]
    fn bodies_are_valid_wire_messages() {
        let mut b = Bodies::new(Naming::new("sim-", 1000));
        let (id, body) = b.thing_created(42);
        assert_eq!(id, "sim-000042");
        let tc: ThingCreated = serde_json::from_slice(body).unwrap();
        let attrs = tc.attribute_update.unwrap();
        assert_eq!(attrs.mode, Some(AttributeMode::Merge));
        let keys: Vec<&str> = attrs.attributes.keys().map(String::as_str).collect();
        assert_eq!(keys, ["hwRevision", "isoCode", "serial"]);
        assert_eq!(attrs.attributes["serial"].as_deref(), Some("SN-000042"));

        let (_, body) = b.attributes(42);
        let upd: AttributeUpdate = serde_json::from_slice(body).unwrap();
        assert_eq!(
            upd.attributes, attrs.attributes,
            "the same attributes every time"
        );

        for st in ReportStatus::ALL {
            let (_, body) = b.status(42, 137, st);
            let s: ActionUpdateStatus = serde_json::from_slice(body).unwrap();
            assert_eq!((s.action_id, s.action_status), (137, st));
            assert_eq!(
                serde_json::to_value(st).unwrap().as_str(),
                Some(status_name(st))
            );
        }
    }

    #[test]
    fn scripts_end_as_the_fate_says() {
        use ReportStatus::*;
        assert_eq!(script(Job::Install, Fate::Succeeds).last(), Some(&Finished));
        assert_eq!(script(Job::Install, Fate::Fails).last(), Some(&Error));
        assert_eq!(
            script(Job::DownloadOnly, Fate::Succeeds),
            &[Running, Download, Downloaded]
        );
        assert_eq!(script(Job::Confirm, Fate::Fails), &[Confirmed]);
        assert!(script(Job::Install, Fate::Stuck).is_empty());
    }

    #[test]
    fn building_100k_registrations_reuses_two_buffers() {
        let mut b = Bodies::new(Naming::new("sim-", 100_000));
        let _ = b.thing_created(99_999);
        let before = (
            b.id.as_ptr(),
            b.id.capacity(),
            b.body.as_ptr(),
            b.body.capacity(),
        );
        let started = std::time::Instant::now();
        let mut bytes = 0;
        for i in 0..100_000 {
            let (id, body) = b.thing_created(i);
            bytes += id.len() + body.len();
        }
        // No buffer grew or moved: the only per-device allocations are the AMQP message's own.
        let after = (
            b.id.as_ptr(),
            b.id.capacity(),
            b.body.as_ptr(),
            b.body.capacity(),
        );
        assert_eq!(before, after);
        assert!(bytes > 100_000 * 100);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
