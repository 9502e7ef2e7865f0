//! Wall-clock time as UTC calendar fields, for timestamps in manifests, run states and
//! transcript names (no time-zone database needed: everything is UTC).

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC instant to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// Year of the Gregorian calendar.
    pub year: i64,
    /// Month, 1-12.
    pub month: u32,
    /// Day of the month, 1-31.
    pub day: u32,
    /// Hour, 0-23.
    pub hour: u32,
    /// Minute, 0-59.
    pub minute: u32,
    /// Second, 0-59.
    pub second: u32,
}

impl Utc {
    /// The instant `secs` seconds after 1970-01-01 00:00:00 UTC.
    pub fn from_epoch(secs: u64) -> Self {
        let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
        // Civil date from days since the epoch (Howard Hinnant's days_from_civil inverse).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// Now (the epoch itself if the system clock is set before it).
    pub fn now() -> Self {
        Self::from_epoch(epoch_secs())
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn rfc3339(&self) -> String {
        format!("{}T{}Z", self.date(), self.time())
    }

    /// `YYYY-MM-DD HH:MM:SS`, for people.
    pub fn readable(&self) -> String {
        format!("{} {}", self.date(), self.time())
    }

    /// `YYYYMMDD-HHMMSS`, for file names.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    fn time(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

/// Seconds since the epoch now.
pub fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_epoch_seconds() {
        assert_eq!(Utc::from_epoch(0).rfc3339(), "1970-01-01T00:00:00Z");
        // date -u -d @1764291723 -> 2025-11-28 01:02:03
        let t = Utc::from_epoch(1_764_291_723);
        assert_eq!(t.readable(), "2025-11-28 01:02:03");
        assert_eq!(t.compact(), "20251128-010203");
        // A leap day: date -u -d @1709164800 -> 2024-02-29 00:00:00
        assert_eq!(
            Utc::from_epoch(1_709_164_800).rfc3339(),
            "2024-02-29T00:00:00Z"
        );
    }

    #[test]
    fn now_looks_like_rfc3339() {
        let t = Utc::now().rfc3339();
        assert_eq!(t.len(), 20);
        assert!(
            t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
}
