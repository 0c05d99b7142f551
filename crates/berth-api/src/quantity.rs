//! Kubernetes resource quantities (`128Mi`, `500m`, `1.5`, `2G`, `12e6`),
//! parsed with apimachinery's `resource.ParseQuantity` grammar and errors.

use std::fmt;

/// Why a string is not a quantity, in apimachinery's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityError {
    /// `ErrFormatWrong`: not a number followed by a suffix.
    Format,
    /// `ErrSuffix`: suffix letters that mean nothing (`1MM`, `1Mii`).
    Suffix,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuantityError::Format => {
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            }
            QuantityError::Suffix => "unable to parse quantity's suffix",
        })
    }
}

impl std::error::Error for QuantityError {}

/// A parsed quantity, exact to the nano-unit (as apimachinery rounds it:
/// a non-zero amount below one nano-unit is one nano-unit). Amounts beyond
/// what 128 bits of nano-units hold saturate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    nano: i128,
}

impl Quantity {
    pub fn is_negative(self) -> bool {
        self.nano < 0
    }

    /// The amount in thousandths, rounded away from zero (`MilliValue()`).
    pub fn milli_value(self) -> i128 {
        scale_down(self.nano, 1_000_000)
    }

    /// The amount in whole units, rounded away from zero (`Value()`), at
    /// most `i64::MAX`.
    pub fn value(self) -> i64 {
        let units = scale_down(self.nano, 1_000_000_000);
        i64::try_from(units).unwrap_or(if units < 0 { i64::MIN } else { i64::MAX })
    }
}

/// `value / divisor`, rounded away from zero.
fn scale_down(value: i128, divisor: i128) -> i128 {
    let magnitude = value.unsigned_abs().div_ceil(divisor as u128);
    let magnitude = i128::try_from(magnitude).unwrap_or(i128::MAX);
    if value < 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Parses `text` as decoding a quantity does (`Quantity.UnmarshalJSON`:
/// surrounding whitespace trimmed, then `resource.ParseQuantity`).
pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(QuantityError::Format);
    }
    let parts = split(text)?;
    let (base, exponent) = interpret(parts.suffix).ok_or(QuantityError::Suffix)?;
    let nano = amount_in_nano(parts.num, parts.denom, base, exponent);
    Ok(Quantity {
        nano: if parts.negative { -nano } else { nano },
    })
}

/// The amount in whole units (`Value()`), or `None` when it does not parse.
pub fn value(text: &str) -> Option<i64> {
    parse(text).ok().map(Quantity::value)
}

/// The amount in thousandths (so `500m` is 500 and `1` is 1000), or `None`
/// when it does not parse.
pub fn milli_value(text: &str) -> Option<i128> {
    parse(text).ok().map(Quantity::milli_value)
}

/// A quantity's pieces: `-012.50Mi` is negative, `12`, `50`, `Mi`.
struct Parts<'a> {
    negative: bool,
    /// Integer digits, leading zeros stripped.
    num: &'a str,
    /// Fraction digits.
    denom: &'a str,
    suffix: &'a str,
}

/// `parseQuantityString`: sign, digits, an optional fraction, then suffix
/// letters, an optional sign and exponent digits. Anything else is a format
/// error; whether the suffix means something is decided later.
fn split(text: &str) -> Result<Parts<'_>, QuantityError> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let negative = bytes.first() == Some(&b'-');
    if matches!(bytes.first(), Some(b'-' | b'+')) {
        pos += 1;
    }
    while bytes.get(pos) == Some(&b'0') {
        pos += 1;
    }
    let num_start = pos;
    while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    let num = &text[num_start..pos];
    let mut denom = "";
    if bytes.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        denom = &text[start..pos];
    }
    let suffix_start = pos;
    while bytes.get(pos).is_some_and(|b| b"eEinumkKMGTP".contains(b)) {
        pos += 1;
    }
    if matches!(bytes.get(pos), Some(b'-' | b'+')) {
        pos += 1;
    }
    while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    if pos != bytes.len() {
        return Err(QuantityError::Format);
    }
    Ok(Parts {
        negative,
        num,
        denom,
        suffix: &text[suffix_start..],
    })
}

/// The base of a multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Ten,
    Two,
}

/// A suffix's multiplier as base and exponent (`Mi` is 2^20, `k` 10^3,
/// `e6` 10^6); `None` for an unknown suffix.
fn interpret(suffix: &str) -> Option<(Base, i64)> {
    let decimal = match suffix {
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "" => Some(0),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(exponent) = decimal {
        return Some((Base::Ten, exponent));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(exponent) = binary {
        return Some((Base::Two, exponent));
    }
    let exponent = suffix.strip_prefix(['e', 'E'])?;
    (!exponent.is_empty())
        .then(|| exponent.parse::<i64>().ok())
        .flatten()
        .map(|e| (Base::Ten, e))
}

/// `num.denom × base^exponent` in nano-units, rounded up, saturating.
fn amount_in_nano(num: &str, denom: &str, base: Base, exponent: i64) -> i128 {
    // The digits as one integer and the power of ten that scales them to
    // nano-units; digits beyond what 128 bits hold only decide rounding.
    let mut mantissa: u128 = 0;
    let mut ten_power: i64 = 9 - denom.len() as i64;
    let mut dropped_nonzero = false;
    for (i, digit) in num.bytes().chain(denom.bytes()).enumerate() {
        let digit = u128::from(digit - b'0');
        if i < 38 {
            mantissa = mantissa * 10 + digit;
        } else {
            ten_power += 1;
            dropped_nonzero |= digit != 0;
        }
    }
    if mantissa == 0 && !dropped_nonzero {
        return 0;
    }
    let mut two_power = 0;
    match base {
        Base::Ten => ten_power = ten_power.saturating_add(exponent),
        Base::Two => two_power = exponent as u32,
    }
    let scaled = mantissa.saturating_mul(1u128.checked_shl(two_power).unwrap_or(u128::MAX));
    let nano = if ten_power >= 0 {
        let factor = u32::try_from(ten_power)
            .ok()
            .and_then(|p| 10u128.checked_pow(p))
            .unwrap_or(u128::MAX);
        scaled.saturating_mul(factor)
    } else {
        let divisor = u32::try_from(-ten_power)
            .ok()
            .and_then(|p| 10u128.checked_pow(p));
        match divisor {
            Some(divisor) => {
                let whole = scaled / divisor;
                whole + u128::from(scaled % divisor != 0 || dropped_nonzero)
            }
            None => 1,
        }
    };
    i128::try_from(nano).unwrap_or(i128::MAX)
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
        assert_eq!(value("1E3"), Some(1000));
        assert_eq!(value("12e+6"), Some(12_000_000));
        assert_eq!(milli_value("5e-3"), Some(5));
        assert_eq!(value("0.5Gi"), Some(512 * 1024 * 1024));
        assert_eq!(value("1.5k"), Some(1500));
        assert_eq!(value("2E"), Some(2_000_000_000_000_000_000));
        assert_eq!(value("0"), Some(0));
        assert_eq!(value("+1"), Some(1));
        assert_eq!(value("-1"), Some(-1));
        assert!(parse("-1").unwrap().is_negative());
        // apimachinery reads these as zero, and so does berth.
        assert_eq!(value("."), Some(0));
        assert_eq!(value("-"), Some(0));
        assert_eq!(value("Mi"), Some(0));
        // Decoding trims whitespace.
        assert_eq!(value(" 1 "), Some(1));
    }

    #[test]
    fn rounds_up_as_apimachinery_does() {
        // Value() and MilliValue() round away from zero.
        assert_eq!(value("1m"), Some(1));
        assert_eq!(value("1001m"), Some(2));
        assert_eq!(milli_value("1u"), Some(1));
        assert_eq!(milli_value("0.5m"), Some(1));
        // Below a nano-unit is still something.
        assert_eq!(milli_value("1e-20"), Some(1));
    }

    #[test]
    fn huge_amounts_saturate() {
        assert_eq!(value("9999999999999999999999"), Some(i64::MAX));
        assert_eq!(value("1e400"), Some(i64::MAX));
        assert_eq!(value(&"9".repeat(60)), Some(i64::MAX));
        assert!(parse("1e400").unwrap() > parse("1Ei").unwrap());
    }

    #[test]
    fn compares_by_amount() {
        let q = |s| parse(s).unwrap();
        assert!(q("500m") < q("1"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1Ki"), q("1024"));
        assert!(q("1G") < q("1Gi"));
    }

    #[test]
    fn refuses_what_the_api_server_refuses() {
        for bad in [
            "lots", "fast", "1gb", "512MB", "", " ", "1 0", "1..5", "0x10", "1Gi5x",
        ] {
            assert_eq!(parse(bad), Err(QuantityError::Format), "{bad:?}");
        }
        for bad in ["1MM", "1e", "1Ki5", "2ee3", "1Kii", "1mm", "1i"] {
            assert_eq!(parse(bad), Err(QuantityError::Suffix), "{bad:?}");
        }
        assert_eq!(
            QuantityError::Format.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(
            QuantityError::Suffix.to_string(),
            "unable to parse quantity's suffix"
        );
    }
}
