//! Builds the tracing subscriber: text or JSON lines on stderr, filtered by `DMF_LOG`.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. Later calls are ignored (tests start several apps).
pub fn init(filter: &str, format: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
