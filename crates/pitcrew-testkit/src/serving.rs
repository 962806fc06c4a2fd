//! Serving an axum app from a thread of its own, for the test servers of this crate.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use axum::Router;
use tokio::sync::oneshot;

/// A running app: where it listens, how to stop it, and its thread.
pub(crate) struct Serving {
    pub addr: SocketAddr,
    pub shutdown: oneshot::Sender<()>,
    pub thread: JoinHandle<()>,
}

/// Serves `app` on `127.0.0.1` on a free port, on its own thread and tokio runtime, so it
/// works from synchronous and async tests alike; `what` names it in panics and the thread.
/// Bound here, not on the thread, so the port is known on return. Panics if the port or the
/// thread cannot be had.
pub(crate) fn serve(what: &str, app: Router) -> Serving {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("{what}: cannot bind 127.0.0.1:0: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{what}: no local address: {e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{what}: cannot make the listener non-blocking: {e}"));
    let (shutdown, stop) = oneshot::channel::<()>();
    let name = what.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("{what}-{}", addr.port()))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{name}: cannot build a tokio runtime: {e}"));
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .unwrap_or_else(|e| panic!("{name}: cannot adopt the listener: {e}"));
                // Not a graceful shutdown: that would wait for held answers forever.
                tokio::select! {
                    served = axum::serve(listener, app).into_future() => {
                        served.unwrap_or_else(|e| panic!("{name}: serving failed: {e}"));
                    }
                    _ = stop => {}
                }
            });
            // Dropping the runtime cancels the connection tasks still answering.
            drop(runtime);
        })
        .unwrap_or_else(|e| panic!("{what}: cannot spawn its thread: {e}"));
    Serving {
        addr,
        shutdown,
        thread,
    }
}
