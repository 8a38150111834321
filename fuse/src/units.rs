//! Human units on the command line: sizes like `64M`, durations like `10s` and rates like
//! `100` (Mbps, as JuiceFS takes them) or `50MiB/s`.

use std::time::Duration;

/// `s` trimmed and split where its number ends: `("4", "M")` for `"4M"`.
fn number_and_unit(s: &str) -> (&str, &str) {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    t.split_at(split)
}

/// Parses a size: a number with an optional binary unit `K`, `M`, `G`, `T`, `P`
/// (`k`/`KB`/`KiB` and friends are accepted too). A plain number is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = number_and_unit(s);
    let bad = || {
        format!("invalid size '{s}': use a number with an optional unit K, M, G, T (for example 4M or 1G)")
    };
    if num.is_empty() {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "P" | "PB" | "PIB" => 50,
        _ => return Err(bad()),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("invalid size '{s}': too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a rate into bytes per second. A plain number is megabits per second (JuiceFS's
/// `--upload-limit` unit); bits: `bps`, `Kbps`, `Mbps`, `Gbps` (decimal); bytes per second:
/// `B/s`, `KB/s`, `MB/s`, `GB/s` (decimal) and `KiB/s`, `MiB/s`, `GiB/s` (binary). 0 is
/// no limit.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let (num, unit) = number_and_unit(s);
    let bad = || {
        format!(
            "invalid rate '{s}': use megabits per second (100), or a unit: 100Mbps, 1Gbps, 50MiB/s, 200MB/s"
        )
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    let per_sec = match unit.trim() {
        "" | "Mbps" | "mbps" | "Mbit/s" => 1e6 / 8.0,
        "bps" => 1.0 / 8.0,
        "Kbps" | "kbps" | "Kbit/s" => 1e3 / 8.0,
        "Gbps" | "gbps" | "Gbit/s" => 1e9 / 8.0,
        "B/s" => 1.0,
        "KB/s" | "kB/s" => 1e3,
        "MB/s" => 1e6,
        "GB/s" => 1e9,
        "KiB/s" => 1024.0,
        "MiB/s" => (1u64 << 20) as f64,
        "GiB/s" => (1u64 << 30) as f64,
        _ => return Err(bad()),
    };
    let rate = value * per_sec;
    if !rate.is_finite() || rate > u64::MAX as f64 {
        return Err(format!("invalid rate '{s}': too large"));
    }
    Ok(rate.round() as u64)
}

/// Parses a duration: a number with an optional unit `ms`, `s`, `m`, `h`. A plain
/// number is seconds (`1.5` = 1.5 s).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = number_and_unit(s);
    let bad = || {
        format!("invalid duration '{s}': use a number with a unit ms, s, m or h (for example 500ms or 10s)")
    };
    if num.is_empty() {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// Formats a byte count for people: `1.5 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100"), Ok(12_500_000), "a plain number is Mbps");
        assert_eq!(parse_rate("100Mbps"), Ok(12_500_000));
        assert_eq!(parse_rate("1Gbps"), Ok(125_000_000));
        assert_eq!(parse_rate("50MiB/s"), Ok(50 << 20));
        assert_eq!(parse_rate("200MB/s"), Ok(200_000_000));
        assert_eq!(parse_rate("1.5GiB/s"), Ok(3 << 29));
        assert_eq!(parse_rate("0"), Ok(0));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10MiB").is_err(), "a size is not a rate");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("4X").unwrap_err().contains("invalid size '4X'"));
        assert!(parse_size("M").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn format() {
        assert_eq!(format_size(10), "10 B");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
    }
}
