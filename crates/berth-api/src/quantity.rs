//! Kubernetes resource quantities (`128Mi`, `500m`, `1.5`, `2G`), as far as
//! cgroup settings and the QoS class need them.

/// The quantity in its base unit, scaled by 1000 (so `500m` is 500 and `1` is
/// 1000), or `None` when it does not parse.
pub fn milli_value(text: &str) -> Option<i128> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier_milli: i128 = match suffix {
        "" => 1000,
        "m" => 1,
        "k" => 1000 * 1000,
        "M" => 1000 * 1000_i128.pow(2),
        "G" => 1000 * 1000_i128.pow(3),
        "T" => 1000 * 1000_i128.pow(4),
        "P" => 1000 * 1000_i128.pow(5),
        "E" => 1000 * 1000_i128.pow(6),
        "Ki" => 1000 * 1024,
        "Mi" => 1000 * 1024_i128.pow(2),
        "Gi" => 1000 * 1024_i128.pow(3),
        "Ti" => 1000 * 1024_i128.pow(4),
        "Pi" => 1000 * 1024_i128.pow(5),
        "Ei" => 1000 * 1024_i128.pow(6),
        _ => {
            // Decimal exponent form: 1e3, 12E6.
            let (mantissa, exp) = text.split_once(['e', 'E'])?;
            let exp: u32 = exp.parse().ok()?;
            return milli_value(mantissa).map(|m| m * 10_i128.pow(exp));
        }
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int * multiplier_milli;
    if !frac.is_empty() {
        let digits = frac.len() as u32;
        let frac: i128 = frac.parse().ok()?;
        value += frac * multiplier_milli / 10_i128.pow(digits);
    }
    Some(value)
}

/// Whole units, rounded up as the kubelet rounds memory (`Value()`).
pub fn value(text: &str) -> Option<i64> {
    milli_value(text).map(|m| ((m + 999) / 1000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(value("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(milli_value("500m"), Some(500));
        assert_eq!(milli_value("1.5"), Some(1500));
        assert_eq!(milli_value("2"), Some(2000));
        assert_eq!(value("1e3"), Some(1000));
        assert_eq!(value("0.5Gi"), Some(512 * 1024 * 1024));
        assert_eq!(value("12x"), None);
    }
}
