//! What a sandbox gives its agent for the user's MCP servers: the supervisor's relays to
//! the remote ones (their credentials stay with the supervisor; see `harvest_proxy::mcp`)
//! and the secrets the user named for stdio ones.

use harvest_agent::AgentCommand;
use harvest_supervisor::McpLink;
use std::path::PathBuf;

/// Where the `index`th relay is on the loopback of a sandbox with a network of its own
/// (`harvest forward` listens there and relays to the supervisor's socket).
pub fn relay_addr(index: usize) -> String {
    format!("127.0.0.1:{}", 8730 + index)
}

/// The supervisor's socket for the `index`th relay, in a sandbox's run folder.
pub fn relay_socket_file(index: usize) -> String {
    format!("mcp-{index}.sock")
}

/// The relays for `cmd`'s servers, and what the agent's environment gets for them (the
/// relays' token, the named secrets). `place` says, for a relay, which host socket the
/// supervisor listens on and the address the agent uses for it; `None`: the host's
/// loopback, which the agent shares.
pub fn links(
    cmd: &AgentCommand,
    place: impl Fn(usize) -> Option<(PathBuf, String)>,
) -> (Vec<McpLink>, Vec<(String, String)>) {
    let mut env: Vec<(String, String)> = cmd
        .secret_env
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect();
    if cmd.mcp_relays.is_empty() {
        return (Vec::new(), env);
    }
    let (token, relays) = harvest_proxy::mcp::relays(&cmd.mcp_relays);
    env.push((
        harvest_protocol::mcp::RELAY_TOKEN_VAR.into(),
        token.expose().to_owned(),
    ));
    let links = relays
        .into_iter()
        .enumerate()
        .map(|(index, relay)| {
            let placed = place(index);
            McpLink {
                relay,
                socket: placed.as_ref().map(|(s, _)| s.clone()),
                url: placed.map(|(_, addr)| format!("http://{addr}")),
            }
        })
        .collect();
    (links, env)
}

/// `harvest forward`'s arguments for the relays that listen inside the sandbox:
/// `--listen ADDR --to SOCKET` each, with the socket at `socket_in(index)` there.
pub fn forward_args(count: usize, socket_in: impl Fn(usize) -> String) -> Vec<String> {
    (0..count)
        .flat_map(|i| {
            [
                "--listen".into(),
                relay_addr(i),
                "--to".into(),
                socket_in(i),
            ]
        })
        .collect()
}
