//! A TCP proxy in front of a test server that can slow the answers down, cut
//! every open connection and refuse new ones: a network failure in the
//! middle of a transfer, on cue.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Answers are forwarded in pieces of this size, each followed by the pause
/// the rate asks for.
const CHUNK: usize = 16 * 1024;

#[derive(Debug, Default)]
struct State {
    /// Bytes per second from the server to the client; 0 is unlimited.
    rate: AtomicU64,
    refusing: AtomicBool,
}

/// Forwards 127.0.0.1:`port()` to a target; stops on drop.
#[derive(Debug)]
pub struct ThrottledProxy {
    port: u16,
    state: Arc<State>,
    /// Bumped by [`Self::cut`]; connections opened before end.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl ThrottledProxy {
    /// Forwards to `target` (`host:port`), answers limited to
    /// `bytes_per_second` (0: unlimited).
    pub async fn start(target: String, bytes_per_second: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(State {
            rate: AtomicU64::new(bytes_per_second),
            refusing: AtomicBool::new(false),
        });
        let (generation, _) = watch::channel(0);
        let (task_state, task_generation) = (state.clone(), generation.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if task_state.refusing.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let cut = task_generation.subscribe();
                tokio::spawn(forward(client, target.clone(), task_state.clone(), cut));
            }
        });
        Self {
            port,
            state,
            generation,
            task,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Closes every open connection; with `refuse`, new ones too until
    /// [`Self::restore`].
    pub fn cut(&self, refuse: bool) {
        self.state.refusing.store(refuse, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts again, at full speed.
    pub fn restore(&self) {
        self.state.rate.store(0, Ordering::SeqCst);
        self.state.refusing.store(false, Ordering::SeqCst);
    }
}

impl Drop for ThrottledProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn forward(
    client: TcpStream,
    target: String,
    state: Arc<State>,
    mut cut: watch::Receiver<u64>,
) {
    let Ok(server) = TcpStream::connect(&target).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // A client that half-closes still gets the whole answer.
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        std::future::pending::<()>().await
    };
    let answers = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = server_read.read(&mut buf).await?;
            if n == 0 {
                return client_write.shutdown().await;
            }
            client_write.write_all(&buf[..n]).await?;
            let rate = state.rate.load(Ordering::SeqCst);
            if rate > 0 {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
            }
        }
    };
    tokio::select! {
        _ = requests => {}
        _ = answers => {}
        _ = cut.changed() => {}
    }
}
