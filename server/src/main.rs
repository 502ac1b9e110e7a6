//! `switchyard-server`: parse configuration, start logging, serve until SIGTERM.

use switchyard_server::config::{Config, EXIT_CONFIG};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Configuration errors stop us before anything binds, with one line and exit code 64.
    let config = match Config::load() {
        Ok(config) => config,
        Err(line) => {
            eprintln!("{line}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let _telemetry = switchyard_server::telemetry::init(&config.log, &config.tracing)?;
    let listener = switchyard_sio::listen(std::net::SocketAddr::new(config.host, config.port))?;
    // SIGTERM (Kubernetes) or Ctrl-C.
    switchyard_server::serve(listener, config, sigterm::wait()).await
}
