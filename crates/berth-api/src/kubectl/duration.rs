//! apimachinery's `duration.HumanDuration`, kubectl's AGE format: about two
//! significant figures (`90s`, `5m3s`, `15m`, `3h20m`, `2d5h`, `400d`, `3y12d`).

use std::time::Duration;

/// `HumanDuration` of a non-negative duration.
pub fn human_duration(d: Duration) -> String {
    human_duration_nanos(d.as_nanos().min(i128::MAX as u128) as i128)
}

/// `HumanDuration` of a signed span in nanoseconds: slightly negative spans
/// (clock skew up to 2 s) print as `0s`, more negative ones as `<invalid>`.
pub(crate) fn human_duration_nanos(nanos: i128) -> String {
    const SEC: i128 = 1_000_000_000;
    let seconds = nanos / SEC; // truncates toward zero like Go's int(d.Seconds())
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 || nanos < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_table() {
        let s = |n: u64| Duration::from_secs(n);
        let (m, h, d, y) = (60, 3600, 86_400, 365 * 86_400);
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(999), "0s"),
            (s(1), "1s"),
            (s(59), "59s"),
            (s(60), "60s"),
            (s(90), "90s"),
            (s(119), "119s"),
            (s(120), "2m"),
            (s(2 * m + 3), "2m3s"),
            (s(5 * m + 3), "5m3s"),
            (s(9 * m + 59), "9m59s"),
            (s(10 * m), "10m"),
            (s(10 * m + 30), "10m"),
            (s(179 * m + 59), "179m"),
            (s(3 * h), "3h"),
            (s(3 * h + 20 * m), "3h20m"),
            (s(7 * h + 59 * m), "7h59m"),
            (s(8 * h), "8h"),
            (s(8 * h + 30 * m), "8h"),
            (s(47 * h), "47h"),
            (s(2 * d), "2d"),
            (s(2 * d + 5 * h), "2d5h"),
            (s(7 * d + 23 * h), "7d23h"),
            (s(8 * d), "8d"),
            (s(400 * d), "400d"),
            (s(2 * y - d), "729d"),
            (s(2 * y), "2y"),
            (s(3 * y + 12 * d), "3y12d"),
            (s(8 * y), "8y"),
            (s(10 * y + 100 * d), "10y"),
        ];
        for (dur, want) in cases {
            assert_eq!(human_duration(dur), want, "{dur:?}");
        }
    }

    #[test]
    fn negative_spans() {
        let sec = 1_000_000_000i128;
        assert_eq!(human_duration_nanos(-sec / 2), "0s");
        assert_eq!(human_duration_nanos(-sec), "0s");
        assert_eq!(human_duration_nanos(-sec - sec / 2), "0s");
        assert_eq!(human_duration_nanos(-2 * sec), "<invalid>");
        assert_eq!(human_duration_nanos(-3600 * sec), "<invalid>");
    }
}
