//! Small formatting shared by every way Harvest shows a session: the terminal client and
//! the CLI's readable stream (`harvest run`, `harvest logs`).

use serde_json::Value;

/// 950, 12.3k, 4.1M.
pub fn tokens(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else if n >= 1000 {
        format!("{:.1}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

/// The age of a Unix timestamp, short: 42s, 5m, 3h, 2d.
pub fn age(created_at: i64, now: i64) -> String {
    let s = (now - created_at).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// What a tool call is about, on one line: the command, the file, the pattern.
pub fn tool_summary(name: &str, input: &Value) -> String {
    let field = match name {
        "Bash" => "command",
        "Read" | "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => "file_path",
        "Glob" | "Grep" => "pattern",
        "WebFetch" => "url",
        "WebSearch" => "query",
        "Task" => "description",
        _ => "",
    };
    match input.get(field).and_then(Value::as_str) {
        Some(s) => s.lines().next().unwrap_or("").to_owned(),
        None if name == "TodoWrite" => "update the todo list".into(),
        None => input.to_string().chars().take(80).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms() {
        assert_eq!(tokens(950), "950");
        assert_eq!(tokens(12_345), "12.3k");
        assert_eq!(age(0, 125), "2m");
        assert_eq!(
            tool_summary("Bash", &serde_json::json!({"command": "ls -la\necho"})),
            "ls -la"
        );
    }
}
