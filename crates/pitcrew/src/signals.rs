//! SIGINT and SIGTERM, the two ways a user or a supervisor stops pitcrew.

/// Resolves at the next SIGINT or SIGTERM. (Never, if the handlers cannot be installed.)
pub async fn first() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
