//! `harvest-fake-daytona`: a FAKE Daytona on loopback (see the library's docs).

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    about = "A fake Daytona (API under /api, toolbox under /toolbox/{id}) whose sandboxes run in bubblewrap"
)]
struct Args {
    /// Where to listen, e.g. 127.0.0.1:3986 (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The one API key it accepts.
    #[arg(long, env = "FAKE_DAYTONA_API_KEY")]
    api_key: String,
    /// Where sandboxes keep their files (default: a temporary folder).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The claude binary each sandbox shows at /usr/local/bin/claude.
    #[arg(long)]
    claude: Option<PathBuf>,
    /// Milliseconds each lifecycle transition takes.
    #[arg(long, default_value_t = 300)]
    transition_ms: u64,
    /// Milliseconds a finished command's log WebSocket stays open.
    #[arg(long, default_value_t = 1000)]
    close_ms: u64,
    /// The longest log WebSocket frame, in bytes.
    #[arg(long, default_value_t = 1024)]
    frame_bytes: usize,
    /// Milliseconds one minute of auto-stop lasts.
    #[arg(long, default_value_t = 60_000)]
    minute_ms: u64,
    /// Exit when stdin closes (a test that started it has ended, however it ended).
    #[arg(long)]
    exit_with_stdin: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    if args.exit_with_stdin {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let temp;
    let root = match args.root {
        Some(r) => r,
        None => {
            temp =
                std::env::temp_dir().join(format!("harvest-fake-daytona-{}", std::process::id()));
            temp
        }
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let base = format!("http://{addr}");
    println!("listening on {base}");
    let opts = harvest_fake_daytona::Options {
        api_key: args.api_key,
        root,
        claude: args.claude,
        transition: Duration::from_millis(args.transition_ms),
        close_after: Duration::from_millis(args.close_ms),
        frame_bytes: args.frame_bytes,
        minute: Duration::from_millis(args.minute_ms),
        base,
    };
    harvest_fake_daytona::serve(listener, opts).await?;
    Ok(())
}
