//! A plain tonic unary echo: the ceiling for one gRPC round trip here.
use std::{path::Path, time::Instant};

use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::stats::summarize;

/// Generated from `proto/echo.proto`.
#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("bench.echo.v1");
}

use pb::{
    EchoMessage,
    echo_client::EchoClient,
    echo_server::{Echo, EchoServer},
};

struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, request: Request<EchoMessage>) -> Result<Response<EchoMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// Serves the echo on `listen` (port 0 picks one), printing
/// `echo listening on ADDR`, until SIGTERM or Ctrl-C.
pub async fn serve(listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("echo listening on {}", listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tonic::transport::Server::builder()
        .add_service(EchoServer::new(EchoService))
        .serve_with_incoming_shutdown(incoming, async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}

/// `count` sequential echoes of `payload` bytes over one connection: the
/// round trip time of each, after `count / 10` warm-up calls.
pub async fn measure(
    addr: &str,
    count: usize,
    payload: usize,
    samples: Option<&Path>,
) -> anyhow::Result<Value> {
    let channel = errand_client::endpoint(addr)?.connect().await?;
    let mut client = EchoClient::new(channel);
    let message = EchoMessage {
        payload: vec![b'x'; payload],
    };
    for _ in 0..count / 10 {
        client.echo(message.clone()).await?;
    }
    let mut rtt = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        client.echo(message.clone()).await?;
        rtt.push(t.elapsed().as_nanos() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "workload": "echo",
        "calls_per_s": count as f64 / secs,
        "rtt": summarize(rtt, samples)?,
    }))
}
