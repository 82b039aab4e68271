//! What the standard plugins share and cannot take from a library: they have no clock
//! and no date crate is worth its size in a component, so times in params are parsed here, and
//! the medians they report are computed the same way everywhere.

/// Milliseconds per day.
pub const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A timestamp as a UTC date, `YYYY-MM-DD` (the inverse of `days_from_civil`).
pub fn date(ms: i64) -> String {
    let z = ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A timestamp as `YYYY-MM-DD HH:MM UTC`, for messages a person reads.
pub fn date_time(ms: i64) -> String {
    let minutes = ms.rem_euclid(DAY_MS) / 60_000;
    format!("{} {:02}:{:02} UTC", date(ms), minutes / 60, minutes % 60)
}

/// A time a person writes in report params: unix milliseconds (a JSON integer), a date
/// `YYYY-MM-DD` (its start, UTC), or `YYYY-MM-DDTHH:MM[:SS]Z` (UTC only: no offsets, so that
/// a report never depends on a timezone database the plugin does not have).
pub fn parse_time(value: &serde_json::Value) -> Result<i64, String> {
    match value {
        serde_json::Value::Number(n) => {
            n.as_i64().ok_or_else(|| format!("{n} is not a time: unix milliseconds are an integer"))
        }
        serde_json::Value::String(text) => parse_time_text(text),
        other => {
            Err(format!("{other} is not a time: use a date like 2024-06-01, 2024-06-01T09:30:00Z or unix milliseconds"))
        }
    }
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]Z`, as unix milliseconds.
pub fn parse_time_text(text: &str) -> Result<i64, String> {
    let bad =
        || format!("`{text}` is not a time: use a date like 2024-06-01, 2024-06-01T09:30:00Z or unix milliseconds");
    let (day, clock) = match text.split_once('T') {
        Some((d, c)) => (d, Some(c.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let parts: Vec<&str> = day.split('-').collect();
    let [y, m, d] = parts[..] else { return Err(bad()) };
    let num = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<i64>().ok()).flatten()
    };
    let (Some(y), Some(m), Some(d)) = (num(y, 4), num(m, 2), num(d, 2)) else { return Err(bad()) };
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad());
    }
    let mut ms = days_from_civil(y, m, d) * DAY_MS;
    if let Some(clock) = clock {
        let parts: Vec<&str> = clock.split(':').collect();
        let fields: Vec<Option<i64>> = parts.iter().map(|p| num(p, 2)).collect();
        let (h, mi, s) = match fields[..] {
            [Some(h), Some(mi)] => (h, mi, 0),
            [Some(h), Some(mi), Some(s)] => (h, mi, s),
            _ => return Err(bad()),
        };
        if h > 23 || mi > 59 || s > 59 {
            return Err(bad());
        }
        ms += ((h * 60 + mi) * 60 + s) * 1000;
    }
    Ok(ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The median: the middle value, or the mean of the two middle values for an even count; `None`
/// for no values. NaNs are not values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_parse() {
        assert_eq!(parse_time_text("1970-01-01"), Ok(0));
        assert_eq!(parse_time_text("2023-01-01"), Ok(1_672_531_200_000));
        assert_eq!(parse_time_text("2024-02-29T12:30Z"), Ok(days_from_civil(2024, 2, 29) * DAY_MS + 45_000_000));
        assert_eq!(parse_time_text("2024-02-29T12:30:15Z"), Ok(days_from_civil(2024, 2, 29) * DAY_MS + 45_015_000));
        for ms in [0, 1_672_531_200_000, -DAY_MS, 951_782_400_000] {
            assert_eq!(parse_time_text(&date(ms)), Ok(ms.div_euclid(DAY_MS) * DAY_MS));
        }
        assert_eq!(date(-1), "1969-12-31");
    }

    #[test]
    fn bad_times_say_what_is_expected() {
        for bad in
            ["", "2023-13-01", "2023-02-29", "2023-1-01", "yesterday", "2024-01-01T25:00Z", "2024-01-01T10:00+07:00"]
        {
            let err = parse_time_text(bad).unwrap_err();
            assert!(err.contains("use a date like 2024-06-01"), "{bad}: {err}");
        }
        assert_eq!(parse_time(&serde_json::json!(5)), Ok(5));
        assert_eq!(parse_time(&serde_json::json!("1970-01-02")), Ok(DAY_MS));
        assert!(parse_time(&serde_json::json!(true)).unwrap_err().contains("is not a time"));
    }

    #[test]
    fn dates_and_times_are_utc() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(date(-86_400_000), "1969-12-31");
        assert_eq!(date_time(1_700_000_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(date_time(-60_000), "1969-12-31 23:59 UTC");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
