//! Serving TCP connections from one single-threaded tokio runtime per
//! core, the way an nginx worker serves its share.
//!
//! Why: roost's proxies (the edge proxy, the tokenizer) turn each request
//! into work on two connections, the client's and the upstream's. On a
//! multi-threaded runtime those connections' tasks land on different
//! threads, and the cross-thread wake-ups between them dominated the
//! proxies' profiles. Here a connection, and every task its handler
//! spawns (upstream connections included), stays on the worker thread that
//! was handed it.
//!
//! Why hand connections over rather than let every worker accept on the
//! shared socket: workers racing for `accept` leave one of them with most
//! of a burst of keep-alive connections, and the other idle for as long as
//! those connections last. [`Workers`] deals connections out in turn.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! struct Echo;
//! impl roost_workers::Worker for Echo {
//!     fn serve(&self, mut stream: tokio::net::TcpStream, _peer: std::net::SocketAddr) {
//!         tokio::spawn(async move {
//!             let (mut read, mut write) = stream.split();
//!             let _ = tokio::io::copy(&mut read, &mut write).await;
//!         });
//!     }
//! }
//! let workers = roost_workers::Workers::start("echo", vec![Echo, Echo])?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! workers.serve(&listener, std::future::pending()).await;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How many workers to run by default: one per CPU this process may use
/// (its affinity and cgroup quota count), at least one.
pub fn per_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a worker thread does with each connection it is handed. Called on
/// the worker's runtime: spawn the connection's task there.
pub trait Worker: Send + 'static {
    fn serve(&self, stream: TcpStream, peer: SocketAddr);
}

type Handoff = mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>;

/// Worker threads, each with a single-threaded runtime, fed connections in
/// turn. Dropping it ends the threads: each drops its runtime, closing the
/// connections still open there. Threads are not joined, so a long
/// response cannot hold up the owner's shutdown.
pub struct Workers {
    handoffs: Vec<Handoff>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts one thread per element of `workers`, named `<name>-<n>`.
    pub fn start<W: Worker>(name: &str, workers: Vec<W>) -> io::Result<Workers> {
        let mut handoffs = Vec::with_capacity(workers.len());
        for (n, worker) in workers.into_iter().enumerate() {
            let (handoff, mut handed) = mpsc::unbounded_channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some((stream, peer)) = handed.recv().await {
                            match TcpStream::from_std(stream) {
                                Ok(stream) => worker.serve(stream, peer),
                                Err(err) => {
                                    tracing::warn!(%peer, error = %err, "worker cannot take a connection")
                                }
                            }
                        }
                    })
                })?;
            handoffs.push(handoff);
        }
        if handoffs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "at least one worker is needed",
            ));
        }
        Ok(Workers {
            handoffs,
            next: AtomicUsize::new(0),
        })
    }

    /// Accepts on `listener` (any number of listeners may feed the same
    /// workers) until `shutdown` resolves.
    pub async fn serve(&self, listener: &TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        while let Some((stream, peer)) = accept(listener, &mut shutdown).await {
            self.hand_over(stream, peer);
        }
    }

    /// Gives `stream` to the next worker.
    pub fn hand_over(&self, stream: TcpStream, peer: SocketAddr) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(%peer, error = %err, "cannot hand a connection over");
                return;
            }
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.handoffs.len();
        if self.handoffs[n].send((stream, peer)).is_err() {
            tracing::error!(worker = n, "a worker thread is gone; connection dropped");
        }
    }
}

/// The next connection, with Nagle off (proxied responses go out in small
/// writes that must not wait), or `None` once `shutdown` resolves. Accept
/// errors (EMFILE and friends) are logged and retried after a pause rather
/// than spun on.
pub async fn accept(
    listener: &TcpListener,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, error = %err, "cannot set TCP_NODELAY");
                    }
                    return Some((stream, peer));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers each connection with the name of the thread serving it.
    struct NameThread(Arc<Mutex<Vec<String>>>);

    impl Worker for NameThread {
        fn serve(&self, mut stream: TcpStream, _peer: SocketAddr) {
            let name = std::thread::current().name().unwrap_or("").to_string();
            self.0.lock().unwrap().push(name.clone());
            tokio::spawn(async move {
                let _ = stream.write_all(name.as_bytes()).await;
            });
        }
    }

    #[tokio::test]
    async fn connections_are_dealt_out_in_turn_and_served_on_worker_threads() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let workers = Workers::start(
            "test-worker",
            vec![NameThread(seen.clone()), NameThread(seen.clone())],
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            workers
                .serve(&listener, async {
                    let _ = stopped.await;
                })
                .await
        });
        let mut answers = Vec::new();
        for _ in 0..6 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            answers.push(answer);
        }
        let _ = stop.send(());
        serving.await.unwrap();
        let expected: Vec<String> = (0..6).map(|i| format!("test-worker-{}", i % 2)).collect();
        assert_eq!(answers, expected);
        assert_eq!(*seen.lock().unwrap(), expected);
    }

    #[test]
    fn no_workers_is_an_error() {
        let none: Vec<NameThread> = Vec::new();
        let err = Workers::start("none", none).err().expect("an error");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
