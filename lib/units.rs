//! Parsing of the quantities operators type: sizes and rates (`4M`, `100K`, `1G`, bytes
//! with a binary suffix), piece lengths (`4M` or a power-of-two exponent like `22`) and
//! durations (`90s`, `5m`, `2h`, plain seconds).

/// Parses a byte count with an optional K/M/G/T suffix (powers of 1024, optional `iB`/`B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let stripped = lower.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match stripped.chars().last() {
        Some('k') => (&stripped[..stripped.len() - 1], 1u64 << 10),
        Some('m') => (&stripped[..stripped.len() - 1], 1 << 20),
        Some('g') => (&stripped[..stripped.len() - 1], 1 << 30),
        Some('t') => (&stripped[..stripped.len() - 1], 1 << 40),
        _ => (stripped, 1),
    };
    let bad = || format!("invalid size {s:?} (expected a number with an optional K, M, G or T suffix)");
    if num.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(bad);
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    if !(f.is_finite() && f >= 0.0) || f * mult as f64 > u64::MAX as f64 {
        return Err(bad());
    }
    Ok((f * mult as f64) as u64)
}

/// Parses a piece length: a number below 32 is a power-of-two exponent (like Debian's
/// mktorrent `-l 22`), anything else a size.
pub fn parse_piece_length(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n < 32 => Ok(1u64 << n),
        _ => parse_size(s),
    }
}

/// Parses a duration: plain seconds or a number with s, m, h or d.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let bad = || format!("invalid duration {s:?} (expected e.g. 90s, 5m, 2h)");
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1.0),
        Some('m') => (&t[..t.len() - 1], 60.0),
        Some('h') => (&t[..t.len() - 1], 3600.0),
        Some('d') => (&t[..t.len() - 1], 86400.0),
        _ => (t, 1.0),
    };
    let f: f64 = num.parse().map_err(|_| bad())?;
    if !(f.is_finite() && f >= 0.0 && f * mult < 1e10) {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(f * mult))
}

/// Formats a byte count for people: `1.50 GiB`.
pub fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M").unwrap(), 4 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5K").unwrap(), 1536);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("nan").is_err());
    }

    #[test]
    fn piece_lengths() {
        assert_eq!(parse_piece_length("22").unwrap(), 4 << 20);
        assert_eq!(parse_piece_length("4M").unwrap(), 4 << 20);
        assert_eq!(parse_piece_length("262144").unwrap(), 262144);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(3 << 29), "1.50 GiB");
    }
}
