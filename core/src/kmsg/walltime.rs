//! Wall-clock arithmetic for log stamps, on jiff: civil date-times (local, fixed offset or UTC)
//! to ns since the Unix epoch, month names of any locale, and RFC 3339 rendering (the year of a
//! year-less stamp is `years.rs`). Local time is converted with a real zone (TZ, /etc/localtime or
//! `--tz`), so a `dmesg -T` or syslog stamp lands on the right UTC instant across DST.
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

use super::months::MONTHS;

/// The zone local-time stamps are read in: `TZ`, else /etc/localtime, else UTC.
pub fn system_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

/// A zone named on the command line: an IANA name (`Europe/Warsaw`), `UTC`, or a POSIX TZ
/// string (`CET-1CEST,M3.5.0,M10.5.0/3`).
pub fn zone_named(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name)
        .or_else(|_| TimeZone::posix(name))
        .map_err(|e| format!("unknown time zone {name:?} ({e}); give an IANA name such as Europe/Berlin, UTC, or a POSIX TZ string"))
}

/// Month 1..=12 of an abbreviated month name in any glibc locale (case-insensitive; a trailing
/// `.` is optional: `Nov`, `maj`, `Mär`, `janv.`, `5月`).
pub fn month_from_name(name: &str) -> Option<u8> {
    let lower;
    let key = if name.bytes().any(|b| b.is_ascii_uppercase()) || !name.is_ascii() {
        lower = name.to_lowercase();
        lower.as_str()
    } else {
        name
    };
    MONTHS
        .binary_search_by(|(n, _)| n.as_bytes().cmp(key.as_bytes()))
        .ok()
        .map(|i| MONTHS[i].1)
}

/// A civil date and time as printed, before a zone is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanos: u32,
}

impl Civil {
    fn datetime(&self) -> Option<DateTime> {
        DateTime::new(
            self.year,
            i8::try_from(self.month).ok()?,
            i8::try_from(self.day).ok()?,
            i8::try_from(self.hour).ok()?,
            i8::try_from(self.minute).ok()?,
            // A leap second (:60) is printed by some tools; jiff rejects it.
            i8::try_from(self.second.min(59)).ok()?,
            i32::try_from(self.nanos).ok()?,
        )
        .ok()
    }

    /// ns since the epoch of this civil time in `zone`; a time that falls in a DST gap or fold
    /// takes the earlier reading (the "compatible" rule), as `date -d` does.
    pub fn in_zone(&self, zone: &TimeZone) -> Option<u64> {
        let ts = zone
            .to_ambiguous_timestamp(self.datetime()?)
            .compatible()
            .ok()?;
        to_u64(ts)
    }

    /// ns since the epoch of this civil time at a fixed UTC offset.
    pub fn at_offset(&self, offset_secs: i32) -> Option<u64> {
        let off = Offset::from_seconds(offset_secs).ok()?;
        to_u64(off.to_timestamp(self.datetime()?).ok()?)
    }
}

fn to_u64(ts: Timestamp) -> Option<u64> {
    u64::try_from(ts.as_nanosecond()).ok()
}

/// ns since the epoch, now.
pub fn now_ns() -> u64 {
    to_u64(Timestamp::now()).unwrap_or(0)
}

/// RFC 3339 UTC with microseconds: `2023-11-14T22:13:20.123456Z`.
pub fn rfc3339_utc(t_ns: u64) -> String {
    let Ok(ts) = Timestamp::from_nanosecond(i128::from(t_ns)) else {
        return format!("@{t_ns}ns");
    };
    let dt = TimeZone::UTC.to_datetime(ts);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1000
    )
}

/// RFC 3339 with an explicit `+00:00` offset, the shape of `dmesg --time-format iso` and
/// rsyslog: how a realtime record line is rendered so reading it back gives the same stamp.
pub fn iso_utc_offset(t_ns: u64) -> String {
    let mut s = rfc3339_utc(t_ns);
    if s.ends_with('Z') {
        s.pop();
        s.push_str("+00:00");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn civil(y: i16, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> Civil {
        Civil {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            nanos: 0,
        }
    }

    #[test]
    fn months_of_many_locales() {
        for (name, m) in [
            ("Nov", 11),
            ("nov", 11),
            ("maj", 5),
            ("Mär", 3),
            ("MÄR", 3),
            ("janv.", 1),
            ("janv", 1),
            ("5月", 5),
            ("12월", 12),
            ("дек", 12),
            ("paź", 10),
            ("Dec", 12),
        ] {
            assert_eq!(month_from_name(name), Some(m), "{name}");
        }
        assert_eq!(month_from_name("Foo"), None);
        assert_eq!(month_from_name(""), None);
        assert!(MONTHS
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
    }

    #[test]
    fn local_time_follows_the_zone_across_dst() {
        let warsaw = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // Winter: UTC+1; summer: UTC+2.
        let jan = civil(2026, 1, 15, 12, 0, 0).in_zone(&warsaw).unwrap();
        let jul = civil(2026, 7, 15, 12, 0, 0).in_zone(&warsaw).unwrap();
        assert_eq!(rfc3339_utc(jan), "2026-01-15T11:00:00.000000Z");
        assert_eq!(rfc3339_utc(jul), "2026-07-15T10:00:00.000000Z");
        assert_eq!(
            civil(2026, 7, 15, 12, 0, 0).at_offset(-5 * 3600),
            Some(jul + 7 * 3600 * 1_000_000_000)
        );
        assert_eq!(civil(2026, 2, 30, 0, 0, 0).in_zone(&warsaw), None);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(
            rfc3339_utc(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            iso_utc_offset(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456+00:00"
        );
    }
}
