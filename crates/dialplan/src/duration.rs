//! Durations as operators write them: `30` (seconds, as the Brekeke seed does), `"1.5s"`,
//! `"800ms"`, `"2m"`.

use std::time::Duration;

use serde::Deserialize;

/// Parses a duration as the configuration writes it: `10` (seconds), `1.5s`, `800ms`,
/// `2m`. For command-line flags, so they read like the file.
pub fn parse_duration(s: &str) -> Option<Duration> {
    RawDuration::Text(s.to_owned()).to_duration().ok()
}

/// A duration value before checking.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDuration {
    Int(i64),
    Float(f64),
    Text(String),
}

impl RawDuration {
    pub fn to_duration(&self) -> Result<Duration, String> {
        let bad = || format!("expected a duration such as 30, \"1.5s\" or \"800ms\", got {self}");
        match self {
            RawDuration::Int(i) => u64::try_from(*i)
                .map(Duration::from_secs)
                .map_err(|_| bad()),
            RawDuration::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e9 => {
                Ok(Duration::from_secs_f64(*f))
            }
            RawDuration::Float(_) => Err(bad()),
            RawDuration::Text(s) => {
                let s = s.trim();
                let (num, unit) =
                    s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
                let v: f64 = num.trim().parse().map_err(|_| bad())?;
                let secs = match unit.trim() {
                    "" | "s" => v,
                    "ms" => v / 1000.0,
                    "m" | "min" => v * 60.0,
                    _ => return Err(bad()),
                };
                if secs.is_finite() && (0.0..1e9).contains(&secs) {
                    Ok(Duration::from_secs_f64(secs))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl std::fmt::Display for RawDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawDuration::Int(i) => write!(f, "{i}"),
            RawDuration::Float(v) => write!(f, "{v}"),
            RawDuration::Text(s) => write!(f, "{s:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_like_the_file() {
        assert_eq!(parse_duration("800ms"), Some(Duration::from_millis(800)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
