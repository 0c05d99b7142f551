//! A TCP forwarder a test can cut and restore, to take a link away (an
//! agent's connection to its API server) without stopping either end.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    port: u16,
    open: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Forwards a free loopback port to `upstream`, open.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        Self::serve(listener, upstream)
    }

    /// Forwards what `listener` accepts (wherever it was bound, as in a
    /// node's network namespace) to `upstream`, open.
    pub fn serve(listener: std::net::TcpListener, upstream: SocketAddr) -> Self {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let listener = TcpListener::from_std(listener).expect("register the proxy listener");
        let port = listener.local_addr().expect("proxy address").port();
        let (open, _) = watch::channel(true);
        let accept = tokio::spawn(accept_loop(listener, upstream, open.clone()));
        Self { port, open, accept }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every forwarded connection and closes new ones at once.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, open: watch::Sender<bool>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let mut state = open.subscribe();
        if !*state.borrow_and_update() {
            continue; // dropped: the client sees the connection close
        }
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = state.wait_for(|open| !open) => {}
            }
        });
    }
}
