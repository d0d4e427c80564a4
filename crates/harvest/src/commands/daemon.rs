//! `harvest daemon [--foreground] | stop [--end-sessions] | reload | status`.

use crate::cli::DaemonAction;
use anyhow::{Context, Result};
use harvest_client::{Client, ClientError};
use harvest_config::Paths;
use harvest_protocol::methods as m;
use std::process::ExitCode;

pub async fn run(
    paths: &Paths,
    action: Option<DaemonAction>,
    foreground: bool,
) -> Result<ExitCode> {
    match action {
        None if foreground => serve(paths).await,
        None => {
            let client = super::connect(paths).await?;
            println!("harvest daemon running (pid {})", client.daemon.pid);
            Ok(ExitCode::SUCCESS)
        }
        Some(DaemonAction::Stop { end_sessions }) => {
            match Client::connect(paths, "harvest-cli").await {
                Ok(client) => {
                    let pid = client.daemon.pid;
                    client
                        .call::<m::DaemonStop>(m::DaemonStopParams { end_sessions })
                        .await?;
                    wait_gone(paths).await;
                    if end_sessions {
                        println!("harvest daemon stopped (pid {pid}), and its sessions' agents");
                    } else {
                        println!(
                            "harvest daemon stopped (pid {pid}); its agents run on, and the next harvest command takes them up again"
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(ClientError::Connect { .. }) => {
                    println!("harvest daemon is not running");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(e.into()),
            }
        }
        Some(DaemonAction::Reload) => {
            // A config the new daemon could not start with is refused here, the running
            // daemon kept.
            super::load_config(paths).context("the configuration was not reloaded")?;
            if let Ok(client) = Client::connect(paths, "harvest-cli").await {
                client
                    .call::<m::DaemonStop>(m::DaemonStopParams {
                        end_sessions: false,
                    })
                    .await?;
                wait_gone(paths).await;
            }
            let client = super::connect(paths).await?;
            println!(
                "harvest daemon reloaded its configuration (pid {}); running agents carried on",
                client.daemon.pid
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(DaemonAction::Status { json }) => match Client::connect(paths, "harvest-cli").await {
            Ok(client) => {
                let s = client.call::<m::DaemonStatus>(m::Empty {}).await?;
                if json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    println!(
                        "harvest daemon {} running: pid {}, up {}s, {} sessions ({} running), {} clients\nsocket {}\ndata   {}\nstate  {}",
                        s.version,
                        s.pid,
                        s.uptime_secs,
                        s.sessions,
                        s.running,
                        s.clients,
                        s.socket,
                        s.data_dir,
                        s.state_dir
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(ClientError::Connect { .. }) => {
                println!(
                    "harvest daemon is not running (socket {})",
                    paths.socket.display()
                );
                Ok(ExitCode::from(3))
            }
            Err(e) => Err(e.into()),
        },
    }
}

async fn serve(paths: &Paths) -> Result<ExitCode> {
    harvest_daemon::private_files();
    let config = super::load_config(paths)?;
    std::fs::create_dir_all(paths.log_dir())
        .with_context(|| format!("cannot create {}", paths.log_dir().display()))?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("harvestd")
        .filename_suffix("log")
        .max_log_files(7)
        .build(paths.log_dir())
        .context("cannot open the daemon log")?;
    let (writer, _guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("HARVEST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .init();
    harvest_daemon::serve(paths.clone(), config).await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_gone(paths: &Paths) {
    for _ in 0..200 {
        if !paths.socket.exists() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
