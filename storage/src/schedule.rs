//! Delay levels (RocketMQ's `messageDelayLevel`) and the ConsumeQueue tags code of a scheduled
//! message or a timer message.
//!
//! A message sent with property `DELAY` = level > 0 is stored in topic [`SCHEDULE_TOPIC`],
//! queue `level - 1`, with its real topic and queue in `REAL_TOPIC` / `REAL_QID`. Its
//! ConsumeQueue unit carries, in place of a tag hash, the time it is due:
//! store timestamp + the level's delay (spec §7.5). The broker's schedule service walks each
//! level's queue and re-stores due messages in their real topic. Recovery rebuilds the units
//! of scheduled records with the same rule, so the due times survive a crash.
//!
//! A 5.x timer message (`TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, `TIMER_DELAY_MS`) waits in
//! [`TIMER_TOPIC`], queue 0, with its deliver time in `TIMER_OUT_MS`. Its unit's tags code is
//! when the broker's timer service takes it up again ([`timer_tags_code`]): the deliver time,
//! or, for a message further out than the timer's roll window, the end of that window
//! ([`TIMER_FIRE_MS`]), when the message is written again at the queue's tail.

use ramjet_core::record::properties;

/// The topic scheduled messages wait in (one queue per delay level).
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// The topic timer messages wait in (RocketMQ 5.x's `TimerMessageStore.TIMER_TOPIC`).
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";

/// ramjet's property of a timer record that is taken up before its deliver time (`TIMER_OUT_MS`)
/// to be rolled: written again at the tail of [`TIMER_TOPIC`]. Absent when the two are the same.
pub const TIMER_FIRE_MS: &str = "TIMER_FIRE_MS";

/// RocketMQ's default `messageDelayLevel`: levels 1..=18.
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// Most delay levels a configuration may define (RocketMQ's queue ids of the schedule topic are
/// `level - 1`; a topic has at most this many queues here).
pub const MAX_DELAY_LEVELS: usize = 64;

/// Parses RocketMQ's `messageDelayLevel` syntax: delays separated by spaces, each a number
/// with unit `s`, `m`, `h` or `d` (e.g. `"1s 5s 10s 30s 1m"`), into milliseconds per level
/// (index 0 = level 1).
pub fn parse_delay_levels(s: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        let (num, unit) = item.split_at(item.len() - 1);
        let mult: u64 = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "delay `{item}`: needs a unit (s, m, h or d), e.g. `10s`"
                ))
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("delay `{item}`: `{num}` is not a whole number"))?;
        let ms = n
            .checked_mul(mult)
            .filter(|ms| *ms <= 365 * 86_400_000)
            .ok_or_else(|| format!("delay `{item}` is longer than a year"))?;
        out.push(ms);
    }
    if out.is_empty() {
        return Err("no delay level given".into());
    }
    if out.len() > MAX_DELAY_LEVELS {
        return Err(format!(
            "{} delay levels; at most {MAX_DELAY_LEVELS}",
            out.len()
        ));
    }
    Ok(out)
}

/// The delay level in `props` (`DELAY`), if it is a number > 0, capped at the highest level
/// (RocketMQ caps a level above the maximum, spec §7.5).
pub fn delay_level(levels: &[u64], props: &[u8]) -> Option<usize> {
    level_of(levels, properties::get(props, properties::DELAY)?)
}

/// The delay level a `DELAY` value asks for, as [`delay_level`] reads it.
pub fn level_of(levels: &[u64], value: &[u8]) -> Option<usize> {
    let level: i64 = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
    (level > 0).then(|| (level as u64).min(levels.len() as u64) as usize)
}

/// When a message stored at `store_ts` (ms) with `level` is due.
pub fn due_time(levels: &[u64], level: usize, store_ts: i64) -> i64 {
    assert!(
        level >= 1 && level <= levels.len(),
        "delay level {level} outside 1..={}",
        levels.len()
    );
    store_ts.saturating_add(levels[level - 1] as i64)
}

/// The ConsumeQueue tags code of a record of [`SCHEDULE_TOPIC`]: its due time, or `None` when
/// it has no valid `DELAY` property (then the ordinary tag hash applies).
pub fn scheduled_tags_code(levels: &[u64], props: &[u8], store_ts: i64) -> Option<i64> {
    delay_level(levels, props).map(|l| due_time(levels, l, store_ts))
}

/// The ConsumeQueue tags code of a record of [`TIMER_TOPIC`]: when the timer service takes it
/// up ([`TIMER_FIRE_MS`], else `TIMER_OUT_MS`), or `None` when neither is a number.
pub fn timer_tags_code(props: &[u8]) -> Option<i64> {
    let [fire, out] = properties::get_many(props, [TIMER_FIRE_MS, properties::TIMER_OUT_MS]);
    let parse = |v: &[u8]| std::str::from_utf8(v).ok()?.trim().parse::<i64>().ok();
    fire.and_then(parse).or_else(|| out.and_then(parse))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramjet_core::record::properties::PropertiesBuilder as Builder;

    #[test]
    fn default_levels_are_rocketmqs() {
        let l = parse_delay_levels(DEFAULT_DELAY_LEVELS).unwrap();
        assert_eq!(
            l,
            [
                1000, 5000, 10000, 30000, 60000, 120000, 180000, 240000, 300000, 360000, 420000,
                480000, 540000, 600000, 1200000, 1800000, 3600000, 7200000
            ]
        );
    }

    #[test]
    fn bad_levels_are_explained() {
        assert!(parse_delay_levels("").unwrap_err().contains("no delay"));
        assert!(parse_delay_levels("10").unwrap_err().contains("unit"));
        assert!(parse_delay_levels("xs")
            .unwrap_err()
            .contains("whole number"));
        assert!(parse_delay_levels("400d").unwrap_err().contains("year"));
        assert_eq!(
            parse_delay_levels(" 2d  1h ").unwrap(),
            [172_800_000, 3_600_000]
        );
        let many = vec!["1s"; MAX_DELAY_LEVELS + 1].join(" ");
        assert!(parse_delay_levels(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn levels_are_read_and_capped() {
        let levels = parse_delay_levels("1s 5s 10s").unwrap();
        let mut b = Builder::new();
        b.push_str("TAGS", "a")
            .unwrap()
            .push_str("DELAY", "2")
            .unwrap();
        assert_eq!(delay_level(&levels, b.as_bytes()), Some(2));
        assert_eq!(
            scheduled_tags_code(&levels, b.as_bytes(), 1_000),
            Some(6_000)
        );
        b.clear();
        b.push_str("DELAY", "99").unwrap();
        assert_eq!(delay_level(&levels, b.as_bytes()), Some(3));
        for v in ["0", "-1", "x"] {
            b.clear();
            b.push_str("DELAY", v).unwrap();
            assert_eq!(delay_level(&levels, b.as_bytes()), None, "DELAY={v}");
        }
        assert_eq!(scheduled_tags_code(&levels, b"", 5), None);
    }

    #[test]
    fn timer_units_hold_when_the_record_is_taken_up() {
        let mut b = Builder::new();
        b.push_str("TIMER_OUT_MS", "1700000000123").unwrap();
        assert_eq!(timer_tags_code(b.as_bytes()), Some(1_700_000_000_123));
        b.push_str(TIMER_FIRE_MS, "1700000000000").unwrap();
        assert_eq!(timer_tags_code(b.as_bytes()), Some(1_700_000_000_000));
        b.clear();
        b.push_str("TIMER_OUT_MS", "soon").unwrap();
        assert_eq!(timer_tags_code(b.as_bytes()), None);
        assert_eq!(timer_tags_code(b""), None);
    }
}
