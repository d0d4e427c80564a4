//! The user's installed plugins, loaded with the CLI's `--plugin-dir`: each installed
//! plugin's folder (from `plugins/installed_plugins.json` in their Claude folder) is bound
//! read-only into the agent's HOME and named on the command line. The CLI's own plugin
//! bookkeeping (which would point at this machine's paths) is not copied. A plugin the
//! user's settings disable (`enabledPlugins`) stays out; one installed for another
//! project does too.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where the `index`th plugin is shown, relative to the agent's HOME.
pub fn home_path(index: usize) -> String {
    format!(".harvest/plugins/{index}")
}

/// The folders of the plugins this session loads, in a stable order.
pub fn installed(dir: &Path, projects: &[String], notes: &mut Vec<String>) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(dir.join("plugins/installed_plugins.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        notes.push(format!(
            "{} is not valid JSON; no plugin came along",
            dir.join("plugins/installed_plugins.json").display()
        ));
        return Vec::new();
    };
    let enabled = std::fs::read_to_string(dir.join("settings.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|s| s["enabledPlugins"].clone())
        .unwrap_or(Value::Null);
    let Some(plugins) = v["plugins"].as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, installs) in plugins {
        if enabled[name].as_bool() == Some(false) {
            continue;
        }
        // Version 2 lists installs by scope; version 1 has one.
        let installs: Vec<&Value> = match installs {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let install = installs
            .into_iter()
            .find(|i| match i["projectPath"].as_str() {
                Some(p) => projects.iter().any(|k| k == p),
                None => true,
            });
        let Some(path) = install.and_then(|i| i["installPath"].as_str()) else {
            continue;
        };
        let path = PathBuf::from(path);
        if path.is_dir() {
            out.push(path);
        } else {
            notes.push(format!(
                "the plugin {name} was left out: its folder {} is missing (reinstall it with `claude plugin install`)",
                path.display()
            ));
        }
    }
    out
}
