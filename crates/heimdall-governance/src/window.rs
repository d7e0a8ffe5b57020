//! When a budget's or a rate limit's counter starts over.
//!
//! A rolling window starts at the first use after the previous one ended and lasts a fixed
//! length (a month counts as 30 days, a quarter 91, a year 365), so a counter can be reset
//! by comparing two numbers, in Redis as in memory. A calendar-aligned window starts on a UTC
//! boundary (minute, hour, midnight, Monday, the 1st of a month, of a quarter, of January),
//! computed here from the clock and handed to the ledger as it is.

use heimdall_core::config::{ResetDuration, ResetUnit};
use time::{Date, Month, OffsetDateTime, Time};

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 1970-01-01 was a Thursday; Mondays are 4 days later modulo a week.
const MONDAY_OFFSET: i64 = 4 * DAY;

/// A counter's window, as a ledger applies it at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Starts over at the first use `length_ms` or more after it started.
    Rolling { length_ms: i64 },
    /// The window that contains `now` starts at `start_ms`.
    Aligned { start_ms: i64 },
}

/// A reset duration and whether it follows the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub every: ResetDuration,
    pub aligned: bool,
}

impl Window {
    /// The span to apply at `now_ms` (milliseconds since the epoch).
    pub fn span(&self, now_ms: i64) -> Span {
        if self.aligned {
            Span::Aligned {
                start_ms: aligned_start(self.every, now_ms),
            }
        } else {
            Span::Rolling {
                length_ms: rolling_length(self.every),
            }
        }
    }

    /// When a window that started at `start_ms` ends.
    pub fn end(&self, start_ms: i64) -> i64 {
        if self.aligned {
            aligned_end(self.every, start_ms)
        } else {
            start_ms.saturating_add(rolling_length(self.every))
        }
    }
}

fn rolling_length(every: ResetDuration) -> i64 {
    let unit = match every.unit {
        ResetUnit::Second => SECOND,
        ResetUnit::Minute => MINUTE,
        ResetUnit::Hour => HOUR,
        ResetUnit::Day => DAY,
        ResetUnit::Week => 7 * DAY,
        ResetUnit::Month => 30 * DAY,
        ResetUnit::Quarter => 91 * DAY,
        ResetUnit::Year => 365 * DAY,
    };
    unit * i64::from(every.count)
}

/// Months in one window of a calendar unit, or `None` for units of fixed length.
fn months(every: ResetDuration) -> Option<i64> {
    let per = match every.unit {
        ResetUnit::Month => 1,
        ResetUnit::Quarter => 3,
        ResetUnit::Year => 12,
        _ => return None,
    };
    Some(per * i64::from(every.count))
}

/// Start of the aligned window holding `now_ms`: fixed-length units count whole windows from
/// the epoch (weeks from a Monday); months, quarters and years count months from 1970-01.
fn aligned_start(every: ResetDuration, now_ms: i64) -> i64 {
    match months(every) {
        None => {
            let length = rolling_length(every);
            let offset = if every.unit == ResetUnit::Week {
                MONDAY_OFFSET
            } else {
                0
            };
            (now_ms - offset).div_euclid(length) * length + offset
        }
        Some(per) => {
            let (year, month) = year_month(now_ms);
            let index = (year - 1970) * 12 + month;
            month_start(index - index.rem_euclid(per))
        }
    }
}

fn aligned_end(every: ResetDuration, start_ms: i64) -> i64 {
    match months(every) {
        None => start_ms.saturating_add(rolling_length(every)),
        Some(per) => {
            let (year, month) = year_month(start_ms);
            month_start((year - 1970) * 12 + month + per)
        }
    }
}

/// Year and zero-based month of a time, UTC.
fn year_month(ms: i64) -> (i64, i64) {
    let t = OffsetDateTime::from_unix_timestamp(ms.div_euclid(SECOND))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    (i64::from(t.year()), i64::from(u8::from(t.month())) - 1)
}

/// Milliseconds at 00:00 UTC on the 1st of the month `index` months after 1970-01.
fn month_start(index: i64) -> i64 {
    let year = i32::try_from(1970 + index.div_euclid(12)).unwrap_or(9999);
    let month = u8::try_from(index.rem_euclid(12) + 1)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .unwrap_or(Month::January);
    Date::from_calendar_date(year, month, 1)
        .map(|d| d.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() * SECOND)
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        let t =
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
        t.unix_timestamp() * SECOND
    }

    fn window(every: &str, aligned: bool) -> Window {
        Window {
            every: ResetDuration::parse("t", every).unwrap(),
            aligned,
        }
    }

    fn aligned(every: &str, now: &str) -> (i64, i64) {
        let w = window(every, true);
        let Span::Aligned { start_ms } = w.span(ms(now)) else {
            panic!("not aligned")
        };
        (start_ms, w.end(start_ms))
    }

    #[test]
    fn calendar_windows_start_on_utc_boundaries() {
        let at = "2026-11-30T17:42:10Z";
        assert_eq!(
            aligned("1d", at),
            (ms("2026-11-30T00:00:00Z"), ms("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            aligned("1h", at),
            (ms("2026-11-30T17:00:00Z"), ms("2026-11-30T18:00:00Z"))
        );
        assert_eq!(
            aligned("5m", at),
            (ms("2026-11-30T17:40:00Z"), ms("2026-11-30T17:45:00Z"))
        );
        // 2026-11-30 is a Monday.
        assert_eq!(
            aligned("1w", "2026-12-03T08:00:00Z"),
            (ms("2026-11-30T00:00:00Z"), ms("2026-12-07T00:00:00Z"))
        );
        assert_eq!(
            aligned("1M", at),
            (ms("2026-11-01T00:00:00Z"), ms("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            aligned("1M", "2028-02-29T23:59:59Z"),
            (ms("2028-02-01T00:00:00Z"), ms("2028-03-01T00:00:00Z"))
        );
        assert_eq!(
            aligned("1Q", at),
            (ms("2026-10-01T00:00:00Z"), ms("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            aligned("1Y", at),
            (ms("2026-01-01T00:00:00Z"), ms("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn rolling_windows_have_a_fixed_length() {
        let w = window("1M", false);
        assert_eq!(
            w.span(0),
            Span::Rolling {
                length_ms: 30 * DAY
            }
        );
        assert_eq!(w.end(1000), 1000 + 30 * DAY);
        assert_eq!(
            window("90s", false).span(5),
            Span::Rolling {
                length_ms: 90 * SECOND
            }
        );
    }
}
