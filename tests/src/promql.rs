//! PromQL as the dashboards and alert rules hold it: extracting expressions and the metric names
//! they read.

use std::collections::BTreeSet;

use serde_json::Value;

/// Every `expr` string anywhere in a Grafana dashboard (panel targets, nested rows).
pub fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr", Value::String(expr)) => out.push(expr.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The `expr:` values of a Prometheus rule file: inline ones and `|` / `>` block scalars.
pub fn rule_exprs(yaml: &str) -> Vec<String> {
    let indent_of = |line: &str| line.len() - line.trim_start().len();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(rest) = trimmed.strip_prefix("expr:") else {
            i += 1;
            continue;
        };
        let key_indent = indent_of(line);
        let rest = rest.trim();
        i += 1;
        if rest.starts_with('|') || rest.starts_with('>') {
            let mut block = Vec::new();
            while i < lines.len()
                && (lines[i].trim().is_empty() || indent_of(lines[i]) > key_indent)
            {
                block.push(lines[i].trim());
                i += 1;
            }
            out.push(block.join("\n").trim().to_string());
        } else {
            out.push(rest.trim_matches(['"', '\'']).to_string());
        }
    }
    out
}

/// Keywords followed by a label list in parentheses (`by (le)`, `on (instance)`).
const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Operators, aggregations and literals that look like identifiers.
const OTHER_KEYWORDS: [&str; 20] = [
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "inf",
    "nan",
];

/// Metric names a PromQL expression reads: identifiers outside strings, label matchers (`{…}`),
/// ranges (`[…]`) and label lists (`by (…)`, `on (…)`, …) that are neither a function call (followed
/// by `(`), an aggregation operator nor a keyword.
pub fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let scanner = Scanner {
        chars: expr.chars().collect(),
    };
    let chars = &scanner.chars;
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i = if matches!(c, '"' | '\'' | '`') {
            scanner.skip_string(i)
        } else if c == '{' || c == '[' {
            scanner.skip_group(i)
        } else if c == '#' {
            scanner.skip_while(i, |c| c != '\n')
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // numbers, durations (after offset), hex and exponents
            scanner.skip_while(i, |c| c.is_ascii_alphanumeric() || c == '.')
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            scanner.identifier(i, &mut names)
        } else {
            i + 1
        };
    }
    names
}

/// The characters of a PromQL expression, read by index.
struct Scanner {
    chars: Vec<char>,
}

impl Scanner {
    /// The index of the first character at or after `i` that is not `pred`.
    fn skip_while(&self, mut i: usize, pred: impl Fn(char) -> bool) -> usize {
        while i < self.chars.len() && pred(self.chars[i]) {
            i += 1;
        }
        i
    }

    /// The index just past the string that starts at `i`.
    fn skip_string(&self, mut i: usize) -> usize {
        let quote = self.chars[i];
        i += 1;
        while i < self.chars.len() && self.chars[i] != quote {
            if self.chars[i] == '\\' && quote != '`' {
                i += 1;
            }
            i += 1;
        }
        i + 1
    }

    /// The index just past the bracket group (with nested strings and groups) that opens at `i`.
    fn skip_group(&self, mut i: usize) -> usize {
        let mut depth = 0usize;
        while i < self.chars.len() {
            match self.chars[i] {
                '"' | '\'' | '`' => {
                    i = self.skip_string(i);
                    continue;
                }
                '(' | '{' | '[' => depth += 1,
                ')' | '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    }

    /// Reads the identifier at `start`, adds it to `names` when it is a metric name, and returns the
    /// index after it (after its label list, for `by (…)` and the like).
    fn identifier(&self, start: usize, names: &mut BTreeSet<String>) -> usize {
        let end = self.skip_while(start, |c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let ident: String = self.chars[start..end].iter().collect();
        let lower = ident.to_ascii_lowercase();
        let next = self.skip_while(end, char::is_whitespace);
        let followed_by_paren = self.chars.get(next) == Some(&'(');
        if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
            if followed_by_paren {
                return self.skip_group(next);
            }
        } else if !(followed_by_paren || OTHER_KEYWORDS.contains(&lower.as_str())) {
            // not a function call, an aggregation or an operator keyword
            names.insert(ident);
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        promql_metric_names(expr).into_iter().collect()
    }

    #[test]
    fn scanner_finds_metrics_not_functions_labels_or_keywords() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.95, sum by (le, phase) (rate(lucid_worker_phase_seconds_bucket{job="lucid-worker"}[$__rate_interval])))"#
            ),
            ["lucid_worker_phase_seconds_bucket"]
        );
        assert_eq!(
            names(
                "(time() - lucid_worker_last_success_timestamp_seconds{job=\"lucid-worker\"}) > 1800\nand on (instance)\nlucid_worker_in_flight{job=\"lucid-worker\"} > 0"
            ),
            [
                "lucid_worker_in_flight",
                "lucid_worker_last_success_timestamp_seconds"
            ]
        );
        assert_eq!(
            names(
                r#"max(up{job="lucid-coordinator", x="a}b"}) == 0 or sum without (a) (b offset 5m)"#
            ),
            ["b", "up"]
        );
        assert_eq!(names("1e3 + 0x1f * .5"), Vec::<String>::new());
    }

    #[test]
    fn rule_exprs_reads_inline_and_block_scalars() {
        let yaml = "groups:\n  - rules:\n      - alert: A\n        expr: |\n          sum(a)\n          > 0\n        for: 5m\n      - alert: B\n        expr: up == 0\n      - expr: \"b > 1\"\n";
        assert_eq!(rule_exprs(yaml), ["sum(a)\n> 0", "up == 0", "b > 1"]);
    }
}
