//! Maintenance windows of manual assignments: a Quartz cron schedule (with seconds), a duration
//! `HH:mm:ss` and a fixed time-zone offset `+hh:mm`. An action whose window is closed is sent as
//! DOWNLOAD; while open, as DOWNLOAD_AND_INSTALL (dmf-protocol.md §5.2). Time comes in as epoch
//! milliseconds.

use chrono::{DateTime, FixedOffset, TimeZone};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use super::Invalid;

#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    cron: Cron,
    duration_ms: i64,
    offset: FixedOffset,
}

impl MaintenanceWindow {
    pub fn parse(schedule: &str, duration: &str, timezone: &str) -> Result<Self, Invalid> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .alternative_weekdays(true)
            .sloppy_ranges(true)
            .build()
            .parse(schedule.trim())
            .map_err(|e| Invalid::new(format!("invalid maintenance schedule {schedule:?}: {e}")))?;
        let duration_ms = parse_duration(duration).ok_or_else(|| {
            Invalid::new(format!(
                "invalid maintenance duration {duration:?}: expected HH:mm:ss"
            ))
        })?;
        let offset = parse_offset(timezone).ok_or_else(|| {
            Invalid::new(format!(
                "invalid maintenance time zone {timezone:?}: expected +hh:mm"
            ))
        })?;
        Ok(Self {
            cron,
            duration_ms,
            offset,
        })
    }

    fn at(&self, ms: i64) -> Option<DateTime<FixedOffset>> {
        self.offset.timestamp_millis_opt(ms).single()
    }

    /// Whether the window is open at `now_ms`: the latest start is at most `duration` ago.
    pub fn is_open(&self, now_ms: i64) -> bool {
        let Some(now) = self.at(now_ms) else {
            return false;
        };
        match self.cron.find_previous_occurrence(&now, true) {
            Ok(start) => start.timestamp_millis() + self.duration_ms > now_ms,
            Err(_) => false,
        }
    }

    /// The next start after `now_ms`, if the schedule has one.
    pub fn next_start(&self, now_ms: i64) -> Option<i64> {
        let now = self.at(now_ms)?;
        self.cron
            .find_next_occurrence(&now, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}

fn parse_duration(s: &str) -> Option<i64> {
    let mut parts = s.trim().split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(0..60).contains(&m) || !(0..60).contains(&sec) || h < 0 {
        return None;
    }
    // Checked: an hour count of 19 digits must be refused, not wrap around.
    let total = h
        .checked_mul(3600)?
        .checked_add(m * 60 + sec)?
        .checked_mul(1000)?;
    (total > 0).then_some(total)
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-01-01T00:00:00Z
    const JAN1: i64 = 1_704_067_200_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_daily_window_is_open_only_for_its_duration() {
        let w = MaintenanceWindow::parse("0 0 2 * * ?", "01:00:00", "+00:00").unwrap();
        assert!(!w.is_open(JAN1 + HOUR));
        assert!(w.is_open(JAN1 + 2 * HOUR));
        assert!(w.is_open(JAN1 + 2 * HOUR + 59 * 60_000));
        assert!(!w.is_open(JAN1 + 3 * HOUR));
        assert_eq!(w.next_start(JAN1), Some(JAN1 + 2 * HOUR));
    }

    #[test]
    fn the_offset_shifts_the_window() {
        // 02:00 at +02:00 is 00:00 UTC.
        let w = MaintenanceWindow::parse("0 0 2 * * ?", "00:30:00", "+02:00").unwrap();
        assert!(w.is_open(JAN1 + 10 * 60_000));
        assert!(!w.is_open(JAN1 + 2 * HOUR));
    }

    #[test]
    fn bad_parts_are_rejected() {
        assert!(MaintenanceWindow::parse("not cron", "01:00:00", "+00:00").is_err());
        assert!(MaintenanceWindow::parse("0 0 2 * * ?", "1h", "+00:00").is_err());
        assert!(MaintenanceWindow::parse("0 0 2 * * ?", "01:00:00", "CET").is_err());
        assert!(MaintenanceWindow::parse("0 0 2 * * ?", "00:00:00", "+00:00").is_err());
        // An hour count that overflows milliseconds is refused, not wrapped.
        let huge = format!("{}:00:00", i64::MAX / 1000);
        assert!(MaintenanceWindow::parse("0 0 2 * * ?", &huge, "+00:00").is_err());
    }
}
