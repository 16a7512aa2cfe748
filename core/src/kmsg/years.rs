//! The year of year-less stamps (`journalctl -o short`, syslog, `dmesg --time-format
//! reltime`), the way log tools infer it: the latest year that does not put the stamp after a
//! reference instant (the file's modification time, or now for stdin), kept consistent along
//! the stream. Each stamp takes the year that puts it nearest the previous year-less stamp
//! (so Dec 31 → Jan 1 moves into the next year, and Jan → Dec going backwards into the
//! previous one); when that lands after the reference, the stream so far was a year too
//! late and is rolled back a year ([`Years::rollbacks`]). The reader holds what it read
//! until the end so that the roll-back reaches the lines before it (docs/kmsg.md).
use jiff::tz::TimeZone;

use super::walltime::Civil;

/// How far after the reference a stamp may be and still count as not in the future: a file
/// copied a little before its last line was flushed, a `--tz` an hour or a day off.
pub const SLACK_NS: u64 = 24 * 3600 * 1_000_000_000;

/// How many years back a first stamp may look (Feb 29 needs up to 8 across a century).
const LOOK_BACK: i16 = 8;

/// The year state of one stream.
#[derive(Clone, Debug, Default)]
pub struct Years {
    /// The previous year-less stamp: (month, day, year, instant).
    prev: Option<(u8, u8, i16, u64)>,
    /// The year the stream's first stamp takes, when already settled (a replay).
    start: Option<i16>,
    /// The year the stream's first stamp took.
    first: Option<i16>,
    /// Times the stream was found a year too late.
    rollbacks: u32,
}

impl Years {
    /// The year of `c` (its own year is ignored) in `zone`, given the reference instant.
    pub fn year_of(&mut self, c: &Civil, reference_ns: u64, zone: &TimeZone) -> i16 {
        let limit = reference_ns.saturating_add(SLACK_NS);
        let mut year = match self.prev {
            Some((m, d, y, _)) if (m, d) == (c.month, c.day) => y,
            Some((_, _, y, t)) => nearest(c, y, t, zone).unwrap_or(y),
            None => self
                .start
                .take()
                .unwrap_or_else(|| latest_not_after(c, limit, zone)),
        };
        // A stamp after the reference: everything before it was a year too late as well.
        for _ in 0..LOOK_BACK {
            match instant(c, year, zone) {
                Some(t) if t > limit && self.prev.is_some() => {
                    year -= 1;
                    self.rollbacks += 1;
                }
                _ => break,
            }
        }
        self.first.get_or_insert(year);
        if let Some(t) = instant(c, year, zone) {
            self.prev = Some((c.month, c.day, year, t));
        }
        year
    }

    /// A year for a stamp whose month is a guess: the reference alone decides, and the stream's
    /// state is left alone.
    pub fn guess(c: &Civil, reference_ns: u64, zone: &TimeZone) -> i16 {
        latest_not_after(c, reference_ns.saturating_add(SLACK_NS), zone)
    }

    /// How often the stream so far turned out a year too late.
    pub fn rollbacks(&self) -> u32 {
        self.rollbacks
    }

    /// The state to read the same stream again from its start, now that its years are known:
    /// the first stamp takes the year it should have had.
    pub fn settled(&self) -> Years {
        Years {
            start: self
                .first
                .map(|y| y.saturating_sub(i16::try_from(self.rollbacks).unwrap_or(i16::MAX))),
            ..Years::default()
        }
    }
}

fn instant(c: &Civil, year: i16, zone: &TimeZone) -> Option<u64> {
    Civil { year, ..*c }.in_zone(zone)
}

/// The latest year in which `c` is not after `limit` (Feb 29 looks back to a leap year).
fn latest_not_after(c: &Civil, limit: u64, zone: &TimeZone) -> i16 {
    let this_year = jiff::Timestamp::from_nanosecond(i128::from(limit))
        .map(|t| zone.to_datetime(t).year())
        .unwrap_or(1970);
    (this_year.saturating_sub(LOOK_BACK)..=this_year)
        .rev()
        .find(|&y| instant(c, y, zone).is_some_and(|t| t <= limit))
        .unwrap_or(this_year)
}

/// Of the years around `year`, the one that puts `c` nearest the previous stamp at `prev_ns`.
fn nearest(c: &Civil, year: i16, prev_ns: u64, zone: &TimeZone) -> Option<i16> {
    [year, year + 1, year - 1]
        .into_iter()
        .filter_map(|y| Some((instant(c, y, zone)?.abs_diff(prev_ns), y)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, y)| y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i16, mo: u8, d: u8, h: u8) -> Civil {
        Civil {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: 0,
            second: 0,
            nanos: 0,
        }
    }
    fn ns(c: Civil) -> u64 {
        c.in_zone(&TimeZone::UTC).unwrap()
    }
    /// The years a stream of (month, day, hour) stamps gets, read with `reference`.
    fn years(reference: Civil, stamps: &[(u8, u8, u8)]) -> (Vec<i16>, u32) {
        let mut y = Years::default();
        let got = stamps
            .iter()
            .map(|&(m, d, h)| y.year_of(&at(0, m, d, h), ns(reference), &TimeZone::UTC))
            .collect();
        (got, y.rollbacks())
    }

    #[test]
    fn the_latest_year_not_after_the_reference() {
        let jan_2027 = at(2027, 1, 10, 0);
        assert_eq!(years(jan_2027, &[(12, 30, 12)]).0, [2026]);
        assert_eq!(years(jan_2027, &[(1, 5, 12)]).0, [2027]);
        assert_eq!(years(jan_2027, &[(2, 29, 12)]).0, [2024]);
        // Within a day of the reference is not the future (a wrong --tz, a late mtime).
        assert_eq!(years(jan_2027, &[(1, 10, 23)]).0, [2027]);
        assert_eq!(years(jan_2027, &[(1, 12, 0)]).0, [2026]);
    }

    #[test]
    fn new_year_inside_the_stream_moves_forward() {
        // Read in March: December is last year's, January this year's.
        let (y, rb) = years(at(2027, 3, 1, 0), &[(12, 31, 23), (1, 1, 0), (1, 2, 5)]);
        assert_eq!((y, rb), (vec![2026, 2027, 2027], 0));
        // Read in December a year later: per-line inference would say Dec 2026, Jan 2026;
        // the stream says the December lines were 2025.
        let (y, rb) = years(at(2026, 12, 31, 0), &[(12, 30, 10), (1, 2, 5)]);
        assert_eq!((y, rb), (vec![2026, 2026], 1));
    }

    #[test]
    fn a_stamp_after_the_reference_rolls_the_stream_back() {
        // Read on Nov 29 (a corpus file's mtime): Nov 28 → Dec 1 must be last year's.
        let (y, rb) = years(at(2026, 11, 29, 0), &[(11, 28, 9), (12, 1, 9), (12, 2, 9)]);
        assert_eq!((y, rb), (vec![2026, 2025, 2025], 1));
        let mut s = Years::default();
        for &(m, d) in &[(11, 28), (12, 1)] {
            s.year_of(&at(0, m, d, 9), ns(at(2026, 11, 29, 0)), &TimeZone::UTC);
        }
        // Read again from the start with the settled state: every line in 2025, in order.
        let mut again = s.settled();
        let r = ns(at(2026, 11, 29, 0));
        let y: Vec<_> = [(11, 28), (12, 1), (12, 2)]
            .iter()
            .map(|&(m, d)| again.year_of(&at(0, m, d, 9), r, &TimeZone::UTC))
            .collect();
        assert_eq!((y, again.rollbacks()), (vec![2025, 2025, 2025], 0));
    }

    #[test]
    fn going_back_across_new_year_is_the_previous_year() {
        // `cat january.log december.log`: Jan 2027, then December lines are 2026's.
        let (y, rb) = years(at(2027, 3, 1, 0), &[(1, 3, 0), (12, 30, 0)]);
        assert_eq!((y, rb), (vec![2027, 2026], 0));
        // Slightly out of order around midnight stays in its year.
        let (y, _) = years(at(2027, 3, 1, 0), &[(1, 1, 0), (12, 31, 23), (1, 1, 0)]);
        assert_eq!(y, [2027, 2026, 2027]);
    }
}
