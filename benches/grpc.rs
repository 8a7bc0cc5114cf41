//! gRPC throughput: the same unary handler (`hello.v1.Greeter/SayHello`) served by tonic's
//! own server (`tonic::transport::Server` with its graceful shutdown) and by zdd
//! (`zdd::tonic::serve`), in turn and alternating, each loaded by `zdd-check --grpc` on
//! HTTP/2; medians of the rounds and zdd's ratio to tonic within each round.
//!
//! ```sh
//! cargo bench --bench grpc                              # 5 rounds of 5 s
//! cargo bench --bench grpc -- --rounds 7 --seconds 3 --concurrency 32 --pin 0,1
//! ```
//!
//! With `--pin S,C` (through `taskset`) the server runs on CPU `S` and the load generator on
//! CPU `C`. Client and server share the machine: compare ratios, not absolute rates.

#[path = "common/mod.rs"]
#[allow(dead_code)] // each driver uses a part of it
mod common;

#[allow(
    clippy::all,
    missing_docs,
    unreachable_pub,
    missing_debug_implementations
)]
#[path = "../examples/grpc/hello.v1.rs"]
mod hello;

use hello::{
    CountReply, CountRequest, HelloReply, HelloRequest,
    greeter_server::{Greeter, GreeterServer},
};
use tonic::{Request, Response, Status, service::Routes};

const SERVERS: [&str; 2] = ["tonic", "zdd"];

fn main() {
    if let Some(kind) = common::value("--server") {
        server(&kind);
        return;
    }
    let rounds: usize = common::arg("--rounds", 5);
    let seconds: u64 = common::arg("--seconds", 5);
    let concurrency: usize = common::arg("--concurrency", 32);
    let pin = common::pin();
    let checker = common::build_checker();
    // Per server: (requests/s, p99 ms) of each round.
    let mut results: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        for i in order {
            let kind = SERVERS[i];
            let mut server =
                common::ServerProcess::start_on(kind, pin.as_ref().map(|(s, _)| s.as_str()));
            let mut check =
                common::command_on(&checker, pin.as_ref().map(|(_, client)| client.as_str()));
            let url = format!("http://127.0.0.1:{}/hello.v1.Greeter/SayHello", server.port);
            let output = check
                .args(["--grpc", &url, "--json", "--concurrency"])
                .arg(concurrency.to_string())
                .args(["--duration", &format!("{seconds}s")])
                .output()
                .expect("zdd-check runs");
            server.terminate();
            let _ = server.child.wait();
            let summary: serde_json::Value =
                serde_json::from_slice(&output.stdout).expect("zdd-check summary");
            assert_eq!(summary["failed"], 0, "{kind}: {summary}");
            let rps = summary["total"].as_f64().unwrap_or(f64::NAN)
                / summary["elapsed_s"].as_f64().unwrap_or(f64::NAN);
            let p99 = summary["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
            println!("round {round} {kind:<6} {rps:>9.0} calls/s  p99 {p99:>6.2} ms");
            results[i].push((rps, p99));
        }
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!("\n{rounds} rounds of {seconds} s, {concurrency} gRPC clients (HTTP/2), medians:");
    for (i, kind) in SERVERS.iter().enumerate() {
        println!(
            "{kind:<6} {:>9.0} calls/s  p99 {:>6.2} ms",
            median(results[i].iter().map(|r| r.0).collect()),
            median(results[i].iter().map(|r| r.1).collect()),
        );
    }
    let ratio = |f: fn(&(f64, f64)) -> f64| {
        common::stats::ratio_with_interval(
            results[1]
                .iter()
                .zip(&results[0])
                .map(|(zdd, tonic)| f(zdd) / f(tonic))
                .collect(),
        )
    };
    println!(
        "zdd / tonic, median of the per-round ratios [at least {:.0} % sure it lies within]: calls/s {}  p99 {}",
        common::stats::CONFIDENCE * 100.0,
        ratio(|r| r.0),
        ratio(|r| r.1)
    );
}

struct Hello;

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let message = format!("hello {}", request.into_inner().name);
        Ok(Response::new(HelloReply { message }))
    }

    type CountStream = futures_util::stream::Empty<Result<CountReply, Status>>;

    async fn count(
        &self,
        _request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        Ok(Response::new(futures_util::stream::empty()))
    }
}

fn server(kind: &str) {
    common::server_main(|listener| async move {
        let routes = Routes::new(GreeterServer::new(Hello));
        match kind {
            "tonic" => {
                // TCP_NODELAY, as zdd's listener sets it.
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                tonic::transport::Server::builder()
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, common::sigterm())
                    .await
                    .unwrap();
            }
            _ => {
                let mut lifecycle = zdd::Lifecycle::new(zdd::Config::default());
                lifecycle.listen_for_signals().unwrap();
                let _ = zdd::tonic::serve(listener, routes, lifecycle).await;
            }
        }
    });
}
