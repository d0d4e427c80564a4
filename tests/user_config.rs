//! Your own Claude Code in the sandbox: a realistic HOME (CLAUDE.md, settings.json with a
//! model and an env, a command, a skill, an agent, a user-scope stdio MCP server the tests
//! ship, and one that needs a secret) reaches the real CLI read-only, through the
//! scripted model; `--no-user-config` runs clean; no secret comes along.

// Integration tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harvest_e2e::{Harness, of_type, summarize};
use serde_json::{Value, json};
use std::time::Duration;

const SCRIPT: &str = r#"
[[turn]]
prompt = "SHIP-COMMAND-EXPANDED"
[[turn.step]]
text = "Shipping."

[[turn]]
prompt = "use the tiny server"
[[turn.step]]
tool_use = { name = "mcp__tiny__echo_marker", input = {} }
[[turn.step]]
text = "The server answered."

[[turn]]
prompt = "recall the graph"
[[turn.step]]
tool_use = { name = "mcp__memory__read_graph", input = {} }
[[turn.step]]
text = "Recalled."

[[turn]]
[[turn.step]]
text = "Hello."
"#;

fn realistic_home(h: &Harness) {
    let home = h.path("home");
    let claude = home.join(".claude");
    for d in ["commands", "skills/greet", "agents"] {
        std::fs::create_dir_all(claude.join(d)).unwrap();
    }
    std::fs::write(
        claude.join("CLAUDE.md"),
        "Answer briefly. MEMORY-MARKER-42\n",
    )
    .unwrap();
    std::fs::write(
        claude.join("settings.json"),
        json!({"model": "claude-sonnet-4-5",
               "env": {"USER_SETTING_MARKER": "from-settings", "GITHUB_TOKEN": "ghp_LEAKVALUE",
                       "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/around-the-proxy"},
               "apiKeyHelper": "echo sk-ant-api03-LEAKED-BY-HELPER",
               "permissions": {"allow": ["Bash(echo:*)"]}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        claude.join("commands/ship.md"),
        "---\ndescription: Ship it\n---\nShip it now: SHIP-COMMAND-EXPANDED $ARGUMENTS\n",
    )
    .unwrap();
    std::fs::write(
        claude.join("skills/greet/SKILL.md"),
        "---\nname: greet\ndescription: Greets the user warmly.\n---\nSay hello.\n",
    )
    .unwrap();
    std::fs::write(
        claude.join("agents/reviewer.md"),
        "---\nname: reviewer\ndescription: Reviews a change.\n---\nYou review changes.\n",
    )
    .unwrap();
    std::fs::write(
        home.join(".claude.json"),
        json!({"mcpServers": {
            "tiny": {"type": "stdio", "command": "python3", "args": ["tiny_mcp.py"]},
            "broken": {"type": "stdio", "command": "/nonexistent/mcp-server", "args": []},
            "needs-secret": {"type": "stdio", "command": "python3", "args": ["tiny_mcp.py"],
                              "env": {"SERVICE_TOKEN": "sk-mcp-SECRET-VALUE-123"}}
        }})
        .to_string(),
    )
    .unwrap();
    // An installed plugin, as `claude plugin install` leaves it, with a command.
    let plugin = claude.join("plugins/cache/market/shipkit/1.0.0");
    std::fs::create_dir_all(plugin.join(".claude-plugin")).unwrap();
    std::fs::create_dir_all(plugin.join("commands")).unwrap();
    std::fs::write(
        plugin.join(".claude-plugin/plugin.json"),
        json!({"name": "shipkit", "version": "1.0.0", "description": "Ship things"}).to_string(),
    )
    .unwrap();
    std::fs::write(
        plugin.join("commands/release.md"),
        "---\ndescription: Release\n---\nRelease it.\n",
    )
    .unwrap();
    std::fs::write(
        claude.join("plugins/installed_plugins.json"),
        json!({"version": 2, "plugins": {"shipkit@market": [{"scope": "user",
            "installPath": plugin, "version": "1.0.0"}]}})
        .to_string(),
    )
    .unwrap();
    // Readable by a container's agent too (uid 1000 when the tests run as root).
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&claude)
        .status();
}

fn init_of(evs: &[Value]) -> Value {
    of_type(evs, "agent_init")
        .last()
        .map(|e| e["raw"].clone())
        .unwrap_or(Value::Null)
}

fn listed(init: &Value, field: &str, name: &str) -> bool {
    init[field].as_array().is_some_and(|a| {
        a.iter()
            .any(|v| v.as_str() == Some(name) || v["name"].as_str() == Some(name))
    })
}

fn brings_the_users_configuration(kind: &str) {
    let h = Harness::new(SCRIPT);
    h.write_config(&format!("[sandbox]\ndefault = \"{kind}\"\n"));
    if kind == "docker" {
        harvest_e2e::docker::prepare(&h);
    }
    realistic_home(&h);
    std::fs::write(
        h.workspace.join("tiny_mcp.py"),
        include_str!("support/tiny_mcp.py"),
    )
    .unwrap();
    let ws = h.workspace.to_str().unwrap();

    let out = h.run(&["run", "--json", "--workspace", ws, "/ship now"]);
    let live = harvest_e2e::parse_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}\n{}",
        summarize(&live),
        h.daemon_log_tail()
    );
    let init = init_of(&live);
    assert!(
        listed(&init, "slash_commands", "ship"),
        "the command is not in the init: {init}"
    );
    assert!(
        listed(&init, "skills", "greet"),
        "the skill is not in the init: {init}"
    );
    assert!(
        listed(&init, "agents", "reviewer"),
        "the agent is not in the init: {init}"
    );
    assert!(
        listed(&init, "slash_commands", "shipkit:release"),
        "the plugin's command is not in the init: {init}"
    );
    let servers = init["mcp_servers"].to_string();
    assert!(
        servers.contains("tiny") && !servers.contains("needs-secret"),
        "{servers}"
    );
    // A server that fails to start is said, once.
    let failed: Vec<&Value> = of_type(&live, "error")
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("MCP server broken"))
        })
        .collect();
    assert_eq!(failed.len(), 1, "{}", summarize(&live));
    // The command expanded, the memory reached the model, the settings' model is used.
    let req = h.last_request_for("SHIP-COMMAND-EXPANDED");
    assert!(
        req.all_text().contains("MEMORY-MARKER-42"),
        "no memory in the request"
    );
    assert_eq!(
        req.body["model"], "claude-sonnet-4-5",
        "the settings' model"
    );
    // The server that needs a secret was left out, and said so, without its value.
    let said = serde_json::to_string(&live).unwrap();
    assert!(
        said.contains("needs-secret") && said.contains("SERVICE_TOKEN"),
        "{}",
        summarize(&live)
    );
    assert!(
        !said.contains("sk-mcp-SECRET-VALUE-123"),
        "a server's secret reached the session"
    );
    // The settings' credentials and the model's address stayed out (the run reached the
    // model through the proxy, not around it), and the session says what was left out.
    assert!(
        said.contains("apiKeyHelper") && said.contains("GITHUB_TOKEN"),
        "{}",
        summarize(&live)
    );
    for leaked in ["ghp_LEAKVALUE", "LEAKED-BY-HELPER", "around-the-proxy"] {
        assert!(!said.contains(leaked), "{leaked} reached the session");
    }

    // A tool call reaches the stdio server inside the sandbox.
    let id = live[0]["session"].as_str().unwrap().to_owned();
    h.ok(&["send", &id, "use the tiny server"]);
    let evs = h.wait_events(&id, "the MCP call", Duration::from_secs(60), |e| {
        of_type(e, "turn_result").len() >= 2
    });
    let results = serde_json::to_string(&of_type(&evs, "tool_result")).unwrap();
    assert!(results.contains("MCP-TOOL-REACHED"), "{}", summarize(&evs));

    // The user's files stayed theirs: read-only in the sandbox.
    assert_eq!(
        std::fs::read_to_string(h.path("home/.claude/CLAUDE.md")).unwrap(),
        "Answer briefly. MEMORY-MARKER-42\n"
    );

    // --no-user-config runs clean.
    let out = h.run(&[
        "run",
        "--json",
        "--no-user-config",
        "--workspace",
        ws,
        "hello there",
    ]);
    let clean = harvest_e2e::parse_lines(&String::from_utf8_lossy(&out.stdout));
    let init = init_of(&clean);
    assert!(!listed(&init, "slash_commands", "ship"), "{init}");
    assert!(
        !h.last_request_for("hello there")
            .all_text()
            .contains("MEMORY-MARKER-42")
    );
}

#[test]
fn the_users_configuration_comes_along_read_only() {
    brings_the_users_configuration("local");
}

#[test]
fn the_users_configuration_comes_along_in_a_container() {
    brings_the_users_configuration("docker");
}

/// A project's `.mcp.json` starts its servers only once the user trusted that file: not
/// before, not after it changed, and remembered while it stays the same.
#[test]
fn a_projects_mcp_servers_start_only_once_trusted() {
    let h = Harness::new(SCRIPT);
    std::fs::write(
        h.workspace.join("tiny_mcp.py"),
        include_str!("support/tiny_mcp.py"),
    )
    .unwrap();
    let mcp = json!({"mcpServers": {"proj": {"command": "python3", "args": ["tiny_mcp.py"]}}});
    std::fs::write(h.workspace.join(".mcp.json"), mcp.to_string()).unwrap();
    let ws = h.workspace.to_str().unwrap().to_owned();
    let started = |extra: &[&str]| {
        let mut args = vec!["run", "--json"];
        args.extend_from_slice(extra);
        args.extend(["--workspace", ws.as_str(), "hello"]);
        let out = h.run(&args);
        let evs = harvest_e2e::parse_lines(&String::from_utf8_lossy(&out.stdout));
        let servers = init_of(&evs)["mcp_servers"].to_string();
        (
            servers.contains("proj"),
            serde_json::to_string(&evs).unwrap(),
        )
    };
    let (on, said) = started(&[]);
    assert!(!on, "an untrusted .mcp.json started its server");
    assert!(said.contains("not trusted"), "the session does not say why");
    let (on, _) = started(&["--trust-project-mcp"]);
    assert!(on, "a trusted .mcp.json did not start its server");
    let (on, _) = started(&[]);
    assert!(on, "the trust was not remembered");
    std::fs::write(h.workspace.join(".mcp.json"), format!("{mcp}\n")).unwrap();
    let (on, _) = started(&[]);
    assert!(
        !on,
        "a changed .mcp.json started without being trusted again"
    );
}

/// The sandbox image's memory server, enabled in the config, starts from a seed graph: a
/// tool call in a container reads the seeded entity (also without the user's own
/// configuration: the server is the image's).
#[test]
fn the_images_memory_server_starts_from_its_seed() {
    let h = Harness::new(SCRIPT);
    let seed = h.path("seed.json");
    std::fs::write(
        &seed,
        json!({"entities": [{"name": "HarvestSeedEntity", "entityType": "project",
                             "observations": ["seeded before the session"]}],
               "relations": []})
        .to_string(),
    )
    .unwrap();
    h.write_config(&format!(
        "[sandbox]\ndefault = \"docker\"\n[mcp]\nmemory = true\nmemory_seed = \"{}\"\n",
        seed.display()
    ));
    harvest_e2e::docker::prepare(&h);
    let _ = std::process::Command::new("chmod")
        .args(["a+r"])
        .arg(&seed)
        .status();
    let ws = h.workspace.to_str().unwrap();
    let out = h.run(&[
        "run",
        "--json",
        "--no-user-config",
        "--workspace",
        ws,
        "recall the graph",
    ]);
    let live = harvest_e2e::parse_lines(&String::from_utf8_lossy(&out.stdout));
    let results = serde_json::to_string(&of_type(&live, "tool_result")).unwrap();
    assert!(
        results.contains("HarvestSeedEntity") && results.contains("seeded before the session"),
        "{}\n{results}\n{}",
        summarize(&live),
        serde_json::to_string(&of_type(&live, "agent_init")).unwrap()
    );
}

const REMOTE_SCRIPT: &str = r#"
[[turn]]
prompt = "use the remote servers"
[[turn.step]]
tool_use = { name = "mcp__remote__whoami", input = {} }
[[turn.step]]
tool_use = { name = "mcp__named__echo_marker", input = {} }
[[turn.step]]
tool_use = { name = "Bash", input = { command = "python3 leak_probe.py sk-http-mcp- SECRET-4242" } }
[[turn.step]]
text = "Both answered."

[[turn]]
[[turn.step]]
text = "Hello."
"#;

/// A remote MCP server that demands a bearer token is reached through the supervisor,
/// which adds the token outside the sandbox: the call answers, nothing in the sandbox
/// holds the token (every environment, command line and reachable file searched), the
/// relay lends it to no other path and to no caller without the agent's token, and all
/// of it without a network. A stdio server's secret enters only because the user named
/// it, and the session says so.
fn remote_servers_keep_their_credentials_outside(kind: &str) {
    let h = Harness::new(REMOTE_SCRIPT);
    h.write_config(&format!(
        "[sandbox]\ndefault = \"{kind}\"\n[mcp.secrets]\nnamed = [\"SERVICE_TOKEN\"]\n"
    ));
    let log = h.path("http_mcp.log");
    let server_py = h.path("http_mcp.py");
    std::fs::write(&server_py, include_str!("support/http_mcp.py")).unwrap();
    let (mut server, url) = harvest_e2e::spawn_listening(
        std::process::Command::new("python3")
            .arg(&server_py)
            .args(["0", "sk-http-mcp-SECRET-4242"])
            .arg(&log),
        "the HTTP MCP server",
    );
    let home = h.path("home");
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    std::fs::write(
        home.join(".claude.json"),
        json!({"mcpServers": {
            "remote": {"type": "http", "url": format!("{url}/mcp"),
                       "headers": {"Authorization": "Bearer sk-http-mcp-SECRET-4242"}},
            "named": {"type": "stdio", "command": "python3", "args": ["tiny_mcp.py"],
                      "env": {"SERVICE_TOKEN": "sk-named-VALUE-77"}},
        }})
        .to_string(),
    )
    .unwrap();
    for (f, text) in [
        ("tiny_mcp.py", include_str!("support/tiny_mcp.py")),
        ("leak_probe.py", include_str!("support/leak_probe.py")),
    ] {
        std::fs::write(h.workspace.join(f), text).unwrap();
    }
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&home)
        .status();
    if kind == "docker" {
        harvest_e2e::docker::prepare(&h);
    }
    let ws = h.workspace.to_str().unwrap();
    let out = h.run(&[
        "run",
        "--json",
        "--network",
        "none",
        "--workspace",
        ws,
        "use the remote servers",
    ]);
    let _ = server.kill();
    let live = harvest_e2e::parse_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}\n{}",
        summarize(&live),
        h.daemon_log_tail()
    );
    let results = serde_json::to_string(&of_type(&live, "tool_result")).unwrap();
    assert!(
        results.contains("HTTP-MCP-REACHED"),
        "the remote server was not reached: {}",
        summarize(&live)
    );
    assert!(
        results.contains("named-secret=given"),
        "the named secret did not reach its server: {results}"
    );
    assert!(
        results.contains("LEAKS none"),
        "a secret is inside the sandbox: {results}"
    );
    assert!(
        results.contains("OTHER-PATH 403"),
        "the relay lent the token to another path: {results}"
    );
    assert!(
        results.contains("NO-TOKEN 401"),
        "the relay served a caller without the agent's token: {results}"
    );
    // The server saw its token on every request that reached it.
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(
        !seen.is_empty() && !seen.contains("\"authorized\": false"),
        "{seen}"
    );
    assert!(!seen.contains("/admin"), "{seen}");
    // The session says which secrets are inside, by name only; the events hold neither
    // value.
    let said = serde_json::to_string(&live).unwrap();
    assert!(
        said.contains("named: SERVICE_TOKEN"),
        "{}",
        summarize(&live)
    );
    assert!(!said.contains("sk-named-VALUE-77") && !said.contains("sk-http-mcp-SECRET-4242"));
    let ls = h.ok(&["ls"]);
    assert!(
        ls.contains("secrets inside the sandbox: named: SERVICE_TOKEN"),
        "{ls}"
    );
    assert!(!ls.contains("sk-named-VALUE-77"));
}

#[test]
fn remote_mcp_servers_get_their_credentials_outside_the_sandbox() {
    remote_servers_keep_their_credentials_outside("local");
}

#[test]
fn remote_mcp_servers_get_their_credentials_outside_a_container() {
    remote_servers_keep_their_credentials_outside("docker");
}
