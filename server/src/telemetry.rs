//! Logging: JSON or text lines on stdout, and optionally daily-rotated files.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::{LogConfig, LogFormat};

/// Days of log files kept under `LOG_DIR` (the seed's retention).
const LOG_RETENTION_DAYS: usize = 14;

/// Installs the global subscriber. Keep the returned guard alive: it flushes file logs.
pub fn init(config: &LogConfig) -> anyhow::Result<Option<WorkerGuard>> {
    let filter = || EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let stdout = match config.log_format {
        LogFormat::Json => fmt::layer().json().flatten_event(true).with_current_span(true).boxed(),
        LogFormat::Text => fmt::layer().boxed(),
    };
    let (file, guard) = match &config.log_dir {
        Some(dir) => {
            let appender = RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix("switchyard")
                .filename_suffix("log")
                .max_log_files(LOG_RETENTION_DAYS)
                .build(dir)?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(fmt::layer().json().flatten_event(true).with_writer(writer).with_filter(filter())), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(stdout.with_filter(filter())).with(file).try_init()?;
    Ok(guard)
}
