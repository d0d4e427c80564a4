//! The daemon's sandbox providers, built once at start.

use crate::context::Providers;
use harvest_config::{Config, Paths};
use harvest_sandbox::LocalProvider;
use harvest_sandbox::local::LocalLayout;
use harvest_store::Store;
use std::sync::Arc;

/// `HARVEST_TEST_PROVIDERS=fake-remote` adds the remote-shaped fake provider that the
/// conformance suite runs against. It is a test double, never offered otherwise.
pub const TEST_PROVIDERS_ENV: &str = "HARVEST_TEST_PROVIDERS";

pub fn build(paths: &Paths, config: &Config, store: &Arc<Store>) -> Providers {
    let mut providers = Providers::default();
    let local = Arc::new(LocalProvider::new(local_layout(paths, config, store)));
    providers.add(local.clone());
    providers.add(Arc::new(harvest_docker::DockerProvider::new(
        docker_layout(paths, config),
    )));
    providers.add(Arc::new(harvest_daytona::DaytonaProvider::new(
        daytona_options(paths, config),
    )));
    if std::env::var(TEST_PROVIDERS_ENV).is_ok_and(|v| v.split(',').any(|p| p == "fake-remote")) {
        providers.add(Arc::new(crate::fake_remote::FakeRemote::new(local)));
    }
    providers
}

fn local_layout(paths: &Paths, config: &Config, store: &Arc<Store>) -> LocalLayout {
    // The supervisor is this same binary (`harvest supervise`).
    let exe = std::env::current_exe().unwrap_or_else(|_| "harvest".into());
    let (paths2, store) = (paths.clone(), store.clone());
    LocalLayout {
        sessions_dir: paths.sessions_dir(),
        workspaces_dir: paths.workspaces_dir(),
        supervisor: (exe, vec!["supervise".into()]),
        bwrap: config.sandbox.bwrap_path.clone(),
        hidden: Arc::new(move |workspace: &std::path::Path| {
            crate::policy::hidden_paths(&paths2, &store, workspace)
        }),
    }
}

fn docker_layout(paths: &Paths, config: &Config) -> harvest_docker::DockerLayout {
    let exe = std::env::current_exe().unwrap_or_else(|_| "harvest".into());
    let d = &config.docker;
    harvest_docker::DockerLayout {
        sessions_dir: paths.sessions_dir(),
        workspaces_dir: paths.workspaces_dir(),
        supervisor: (exe.clone(), vec!["supervise".into()]),
        harvest: exe,
        instance: paths.instance(),
        setup_dir: paths.kept_setups_dir(),
        options: harvest_docker::DockerOptions {
            image: d.image.clone(),
            cpus: d.cpus,
            memory_mb: d.memory_mb,
            pids: d.pids,
            disk_mb: d.disk_mb,
        },
    }
}

fn daytona_options(paths: &Paths, config: &Config) -> harvest_daytona::DaytonaOptions {
    let d = &config.daytona;
    harvest_daytona::DaytonaOptions {
        api_url: d.api_url.clone(),
        target: d.target.clone(),
        snapshot: d.snapshot.clone(),
        auto_stop_minutes: d.auto_stop_minutes,
        auto_archive_minutes: d.auto_archive_minutes,
        create_timeout: std::time::Duration::from_secs(d.create_timeout_secs.max(1)),
        keepalive: (d.keepalive_ms > 0).then(|| std::time::Duration::from_millis(d.keepalive_ms)),
        instance: paths.instance(),
        sessions_dir: paths.sessions_dir(),
    }
}
