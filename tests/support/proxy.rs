//! A TCP proxy in front of PostgreSQL that a test can cut and restore, to play a database outage
//! without stopping the server other tests share.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct TcpProxy {
    addr: SocketAddr,
    /// Cancelled on `cut`: ends every proxied connection; replaced on `restore`.
    live: Arc<Mutex<Option<CancellationToken>>>,
}

impl TcpProxy {
    /// Proxies to the host and port of `database_url`.
    pub async fn start(database_url: &str) -> Self {
        let url = url::Url::parse(database_url).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let live = Arc::new(Mutex::new(Some(CancellationToken::new())));
        let state = live.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let token = state.lock().unwrap().clone();
                // While cut, connections are accepted and closed at once, like a server going away.
                let Some(token) = token else { continue };
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        Self { addr, live }
    }

    /// `database_url` with its host and port replaced by the proxy's.
    pub fn database_url(&self, database_url: &str) -> String {
        let mut url = url::Url::parse(database_url).unwrap();
        url.set_port(Some(self.addr.port())).unwrap();
        url.to_string()
    }

    pub fn cut(&self) {
        if let Some(token) = self.live.lock().unwrap().take() {
            token.cancel();
        }
    }

    pub fn restore(&self) {
        *self.live.lock().unwrap() = Some(CancellationToken::new());
    }
}
