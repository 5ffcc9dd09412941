//! Time arguments: milliseconds since the epoch, `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (UTC), or a
//! duration ago such as `10m`, `2h`, `30s`, `1d`.

/// Parse a point in time into ms since the epoch, relative forms counted back from `now_ms`.
pub fn parse_time_ms(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    let bad = || {
        format!("cannot read time {s:?}: use ms since the epoch, 2026-11-23T12:00:00Z, or an age like 10m / 2h / 1d")
    };
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Some((num, unit_ms)) = [
        ("ms", 1),
        ("s", 1000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
    ]
    .iter()
    .find_map(|(suffix, mult)| {
        s.strip_suffix(suffix)
            .and_then(|n| n.parse::<i64>().ok())
            .map(|n| (n, *mult))
    }) {
        return Ok(now_ms - num * unit_ms);
    }
    let s2 = s.strip_suffix('Z').unwrap_or(s);
    let (date, clock) = s2.split_once(['T', ' ']).ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    let (sec_part, frac) = match clock.split_once('.') {
        Some((a, b)) => (a, b),
        None => (clock, ""),
    };
    let t: Vec<&str> = sec_part.split(':').collect();
    if d.len() != 3 || t.len() != 3 {
        return Err(bad());
    }
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let (y, mo, da) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (h, mi, se) = (num(t[0])?, num(t[1])?, num(t[2])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let ms_frac = if frac.is_empty() {
        0
    } else {
        let f: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
        num(&f)?
    };
    Ok(days_from_civil(y, mo, da) * 86_400_000 + h * 3_600_000 + mi * 60_000 + se * 1000 + ms_frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!(parse_time_ms("1795434297000", 0), Ok(1_795_434_297_000));
        assert_eq!(
            parse_time_ms("2026-11-23T11:44:57Z", 0),
            Ok(1_795_434_297_000)
        );
        assert_eq!(
            parse_time_ms("2026-11-23 11:44:57.5", 0),
            Ok(1_795_434_297_500)
        );
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z", 0), Ok(0));
        assert_eq!(parse_time_ms("10m", 1_000_000), Ok(400_000));
        assert_eq!(parse_time_ms("2h", 10_000_000), Ok(2_800_000));
        assert!(parse_time_ms("yesterday", 0).is_err_and(|e| e.contains("10m")));
        assert!(parse_time_ms("2026-13-01T00:00:00Z", 0).is_err());
    }
}
