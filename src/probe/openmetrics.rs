//! A small parser of the OpenMetrics (and Prometheus) text format: enough to read a prober's
//! `/metrics` back. Pure: text in, samples out. It keeps sample lines (`name{labels} value`,
//! an optional timestamp and exemplar ignored) and skips `#` lines; it does not check types
//! or families.

use std::fmt;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A line that is not a sample: its number (from 1) and what is wrong.
#[derive(Debug, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub msg: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// Parses every sample of `text`.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(sample(line).map_err(|msg| ParseError { line: i + 1, msg })?);
    }
    Ok(out)
}

fn sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    if name_end == 0 {
        return Err("no metric name");
    }
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = label_set(after, &mut labels)?;
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = rest.split(' ').next().unwrap_or_default();
    Ok(Sample {
        name: name.to_string(),
        labels,
        value: number(value)?,
    })
}

/// Parses `k="v",k2="v2"}` into `labels`; what follows the `}`.
fn label_set<'a>(
    mut s: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, &'static str> {
    loop {
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = &s[..eq];
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("bad label name");
        }
        let body = s[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let (value, after) = quoted(body)?;
        labels.push((key.to_string(), value));
        s = after.strip_prefix(',').unwrap_or(after);
        if !s.starts_with('}') && after.len() == s.len() {
            return Err("expected ',' or '}' after a label");
        }
    }
}

/// Reads an escaped label value up to its closing quote; the value and what follows it.
fn quoted(s: &str) -> Result<(String, &str), &'static str> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                _ => return Err("bad escape in a label value"),
            },
            c => out.push(c),
        }
    }
    Err("unterminated label value")
}

fn number(s: &str) -> Result<f64, &'static str> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| "value is not a number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_and_without_labels() {
        let text = "# HELP gateway_alive Gateway is alive.\n# TYPE gateway_alive gauge\n\
                    gateway_alive{target_cluster_name=\"east\"} 1\n\
                    up 0.5 1700000000\n\
                    gateway_probe_latency_ms_bucket{le=\"+Inf\",target_cluster_name=\"east\"} 7 # {a=\"b\"} 1\n\
                    # EOF\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "gateway_alive");
        assert_eq!(s[0].label("target_cluster_name"), Some("east"));
        assert_eq!(s[0].value, 1.0);
        assert_eq!((s[1].name.as_str(), s[1].value), ("up", 0.5));
        assert!(s[1].labels.is_empty());
        assert_eq!(s[2].label("le"), Some("+Inf"));
        assert_eq!(s[2].value, 7.0);
    }

    #[test]
    fn escapes_and_special_values() {
        let s = parse("m{a=\"x\\\"y\\\\z\\n\",b=\"\"} +Inf\nn{} NaN\no -Inf\np{a=\"1\",} 2e3\n")
            .unwrap();
        assert_eq!(s[0].label("a"), Some("x\"y\\z\n"));
        assert_eq!(s[0].label("b"), Some(""));
        assert_eq!(s[0].value, f64::INFINITY);
        assert!(s[1].value.is_nan());
        assert_eq!(s[2].value, f64::NEG_INFINITY);
        assert_eq!(s[3].value, 2000.0);
    }

    #[test]
    fn malformed_lines_name_their_number() {
        for (text, msg) in [
            ("ok 1\nm{a=\"x} 1\n", "unterminated label value"),
            ("ok 1\nm{a=x} 1\n", "label value not quoted"),
            (
                "ok 1\nm{a=\"x\"b=\"y\"} 1\n",
                "expected ',' or '}' after a label",
            ),
            ("ok 1\nm 1x\n", "value is not a number"),
            ("ok 1\nm\n", "no space before the value"),
            ("ok 1\n{a=\"b\"} 1\n", "no metric name"),
            ("ok 1\nm{a=\"\\q\"} 1\n", "bad escape in a label value"),
        ] {
            assert_eq!(parse(text), Err(ParseError { line: 2, msg }), "{text:?}");
        }
    }
}
