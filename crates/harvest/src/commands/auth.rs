//! `harvest auth`: which credential sessions started from here will use, and where it
//! comes from, never the credential itself.

use anyhow::{Result, bail};
use std::process::ExitCode;

pub fn auth() -> Result<ExitCode> {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    let gateway = std::env::var("ANTHROPIC_BASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|u| {
            format!(
                ", sent to {}",
                harvest_termsafe::text(&u, harvest_termsafe::Sgr::Drop)
            )
        })
        .unwrap_or_default();
    for (var, what) in [
        ("ANTHROPIC_API_KEY", "an API key"),
        ("ANTHROPIC_AUTH_TOKEN", "an auth token"),
        (
            "CLAUDE_CODE_OAUTH_TOKEN",
            "a long-lived subscription token (`claude setup-token`)",
        ),
    ] {
        if set(var) {
            println!(
                "sessions started from here use {what}: {var} from this environment{gateway}; \
                 it stays in the model proxy outside the sandbox, and the agent gets a \
                 placeholder"
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    if let Some(path) = super::claude_login() {
        let info = harvest_proxy::login::describe(&path)?;
        let plan = info
            .subscription
            .map(|s| format!(" ({s} plan)"))
            .unwrap_or_default();
        let expiry = match info.expires_at_ms {
            Some(ms) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                let mins = (ms - now) / 60_000;
                if mins > 0 {
                    format!(
                        "its access token is good for {}h {:02}m more",
                        mins / 60,
                        mins % 60
                    )
                } else {
                    "its access token has expired and will be refreshed at the next request"
                        .to_owned()
                }
            }
            None => "its access token has no expiry".to_owned(),
        };
        println!(
            "sessions started from here use your Claude subscription login{plan} in {}{gateway}: \
             {expiry}. Harvest's model proxy, outside every sandbox, is the only place that \
             uses it and refreshes it (under Claude Code's own lock), writing the rotated \
             token back so your own `claude` stays logged in; each sandbox holds only a \
             placeholder. (Not for --sandbox daytona, whose agent would hold it remotely.)",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if set("ANTHROPIC_BASE_URL") {
        println!("sessions started from here use no key{gateway} (a gateway that needs none)");
        return Ok(ExitCode::SUCCESS);
    }
    bail!(
        "no credential for the agent: log in with `claude` (a Pro or Max subscription), or make \
         a long-lived token with `claude setup-token` and set CLAUDE_CODE_OAUTH_TOKEN, or set \
         ANTHROPIC_API_KEY; `harvest demo` needs none"
    )
}
