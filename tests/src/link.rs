//! A TCP link between one client and a server that a test can slow down or cut, so one
//! proxy's connection to Redis (or anything else) misbehaves while every other proxy's is
//! fine: bytes from the client are held for `delay` before they go on; a cut link closes
//! its connections and refuses new ones until it is restored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running link; its tasks end when it is dropped.
pub struct Link {
    /// The port clients connect to.
    pub port: u16,
    delay_ms: Arc<AtomicU64>,
    up: Arc<AtomicBool>,
    /// Bumped when the link is cut: every open connection ends.
    cuts: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Link {
    /// A link to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let accept = {
            let (delay_ms, up, cuts) = (delay_ms.clone(), up.clone(), cuts.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !up.load(Relaxed) {
                        continue; // dropped: the client sees the connection close
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        continue;
                    };
                    tokio::spawn(carry(client, server, delay_ms.clone(), cuts.subscribe()));
                }
            })
        };
        Link {
            port,
            delay_ms,
            up,
            cuts,
            accept,
        }
    }

    /// `redis://127.0.0.1:PORT` through this link.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Holds every chunk the client sends for `delay` before passing it on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Relaxed);
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Relaxed);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Relaxed);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.accept.abort();
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// Carries one connection both ways until either side closes or the link is cut.
async fn carry(
    client: TcpStream,
    server: TcpStream,
    delay_ms: Arc<AtomicU64>,
    mut cut: watch::Receiver<u64>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = delay_ms.load(Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = cut.changed() => {}
    }
}
