//! The text forms HTTP gives numbers and dates, written and read without
//! allocating.

/// A decimal `u64` made of digits only.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// `n` in decimal, in the end of `out`.
pub fn decimal(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[i..];
        }
    }
}

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `secs` after the epoch as an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: u64, out: &mut [u8; 29]) -> &[u8] {
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let time = secs % 86_400;
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    out[..3].copy_from_slice(WEEKDAYS[((days + 4) % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&two(day));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[11] = b' ';
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year));
    out[16] = b' ';
    out[17..19].copy_from_slice(&two(time / 3600));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(time / 60 % 60));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(time % 60));
    out[25..].copy_from_slice(b" GMT");
    out
}

/// Seconds after the epoch of an IMF-fixdate (the only form HTTP/1.1
/// senders generate; others are ignored, as RFC 9110 allows).
pub fn parse_http_date(date: &[u8]) -> Option<u64> {
    if date.len() != 29 || &date[3..5] != b", " || &date[25..] != b" GMT" {
        return None;
    }
    let number = |range: std::ops::Range<usize>| parse_decimal(&date[range]);
    let day = number(5..7)?;
    let month = MONTHS.iter().position(|m| m[..] == date[8..11])? as u64 + 1;
    let year = number(12..16)?;
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    if date[19] != b':' || date[22] != b':' || year < 1970 || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Year, month, day of the `days`th day after 1970-01-01 (the proleptic
/// Gregorian calendar, by Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`], for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = year - u64::from(month <= 2);
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let mut out = [0; 29];
        assert_eq!(
            http_date(784_111_777, &mut out),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        for secs in [0, 951_782_400, 1_709_164_800, 4_102_444_799] {
            let mut out = [0; 29];
            let text = http_date(secs, &mut out).to_vec();
            assert_eq!(
                parse_http_date(&text),
                Some(secs),
                "{}",
                String::from_utf8_lossy(&text)
            );
        }
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    #[test]
    fn decimals() {
        let mut out = [0; 20];
        assert_eq!(decimal(0, &mut out), b"0");
        assert_eq!(decimal(u64::MAX, &mut out), b"18446744073709551615");
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"1 "), None);
    }
}
