//! `harvest demo`: the whole product offline. A scripted model server (clearly not a real
//! model) plays a short session through the real `claude` CLI, in a real sandbox, on a
//! small project with a failing test.

use super::run::run_session;
use crate::cli::NewArgs;
use anyhow::{Context, Result};
use harvest_config::Paths;
use harvest_protocol::Secret;
use harvest_scripted_model::{ModelServer, Script};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

const DEMO_SCRIPT: &str = include_str!("demo/script.toml");

const CALC: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";
const TEST: &str = "import unittest\n\nfrom calc import add, mul\n\n\nclass CalcTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n\n\nif __name__ == \"__main__\":\n    unittest.main()\n";

pub async fn demo(paths: &Paths, json: bool) -> Result<ExitCode> {
    let script = Script::from_toml_str(DEMO_SCRIPT).context("the built-in demo script")?;
    let server = ModelServer::start(script, "127.0.0.1:0".parse()?)
        .await
        .context("cannot start the scripted model server")?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    // Not inside Harvest's own folders, which no workspace may be: a private folder of the
    // user's under the temp dir.
    // SAFETY: getuid(2) cannot fail.
    let uid = unsafe { libc::getuid() };
    let parent = std::env::temp_dir().join(format!("harvest-demo-{uid}"));
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&parent);
        // Made with the mode, and checked: a folder of that name another user made (or a
        // link) is not used.
        let meta = std::fs::symlink_metadata(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
            anyhow::bail!(
                "{} is not a private folder of yours; remove it and run the demo again",
                parent.display()
            );
        }
    }
    let workspace = parent.join(format!("calc-{stamp}"));
    std::fs::create_dir_all(&workspace)
        .with_context(|| format!("cannot create {}", workspace.display()))?;
    std::fs::write(workspace.join("calc.py"), CALC)?;
    std::fs::write(workspace.join("test_calc.py"), TEST)?;
    if !json {
        eprintln!(
            "┌ harvest demo ─ SCRIPTED MODEL: a local fake of the Anthropic API plays a fixed \
             script.\n│ The real claude CLI and a real sandbox run it; no API key is used.\n└ \
             workspace: {}\n",
            workspace.display()
        );
    }
    let mut env = BTreeMap::new();
    env.insert(
        "ANTHROPIC_BASE_URL".to_owned(),
        Secret::new(server.base_url()),
    );
    env.insert(
        "ANTHROPIC_API_KEY".to_owned(),
        Secret::new("scripted-demo-key-not-a-real-key"),
    );
    let mut client = super::connect(paths).await?;
    let info = super::run::create(
        &mut client,
        NewArgs {
            workspace: Some(workspace.clone()),
            repo: None,
            in_place: false,
            sandbox: Some("local".into()),
            ports: Vec::new(),
            image: None,
            // The offline demo plays a script: the user's own settings (a model, hooks) must
            // not change it.
            no_user_config: true,
            trust_project_mcp: false,
            no_setup: true,
            network: None,
            name: Some("demo: fix the failing test".into()),
            model: None,
            permissions: None,
            prompt: "Fix the failing test in this project.".into(),
        },
        env,
    )
    .await?;
    let code = run_session(&mut client, &info, json).await?;
    if !json {
        show_result(&workspace);
        eprintln!(
            "\nThe session stays: `harvest logs {}` replays it, `harvest rm {}` removes it.",
            info.id, info.id
        );
    }
    server.shutdown();
    Ok(code)
}

fn show_result(workspace: &Path) {
    if let Ok(calc) = std::fs::read_to_string(workspace.join("calc.py")) {
        eprintln!(
            "\n{} now reads:\n{calc}",
            workspace.join("calc.py").display()
        );
    }
}

/// `harvest scripted-model --script F`: serve a script until interrupted; prints the base
/// URL to use as ANTHROPIC_BASE_URL.
pub async fn serve_script(path: &Path, port: u16) -> Result<ExitCode> {
    let script = Script::load(path)?;
    let server = ModelServer::start(script, ([127, 0, 0, 1], port).into()).await?;
    println!("{}", server.base_url());
    tokio::signal::ctrl_c().await?;
    server.shutdown();
    Ok(ExitCode::SUCCESS)
}
