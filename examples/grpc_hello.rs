//! A gRPC service (tonic) with zdd: the shutdown sequence, `grpc.health.v1` for
//! Kubernetes' `grpc:` probes, and calls in flight that finish or end `UNAVAILABLE`.
//!
//! ```sh
//! cargo run --example grpc_hello
//! # with grpcurl (the server has no reflection: name the .proto):
//! grpcurl -plaintext -import-path examples/grpc -proto hello.proto -d '{"name":"you"}' \
//!     localhost:50051 hello.v1.Greeter/SayHello
//! grpcurl -plaintext -import-path examples/grpc -proto hello.proto \
//!     localhost:50051 hello.v1.Greeter/Count          # then Ctrl-C: the stream ends OK
//! # or with the included client:
//! cargo run -p zdd-check -- --grpc --duration 5s http://localhost:50051/hello.v1.Greeter/SayHello
//! cargo run -p zdd-check -- --grpc --duration 5s http://localhost:50051     # health Check
//! ```
//!
//! Services: `hello.v1.Greeter` (`SayHello`, unary; `Count`, server-streaming; see
//! `examples/grpc/hello.proto`) and `grpc.health.v1.Health`: `""` follows readiness,
//! `liveness` liveness and `startup` the startup gate (as `deploy/kubernetes/grpc/` probes
//! them). `PORT` (default 50051), `APP_VERSION` (sent as the
//! `x-version` response metadata, default `dev`) and the `ZDD_*` settings come from the
//! environment. With `ZDD_ADMIN_ADDR` set, the health service and the HTTP probes
//! (`/health/ready`, …) also answer on the admin listener, through the whole drain;
//! otherwise the HTTP probes answer on the gRPC port.

#[path = "common/mod.rs"]
mod common;

#[allow(
    clippy::all,
    missing_docs,
    unreachable_pub,
    missing_debug_implementations
)]
#[path = "grpc/hello.v1.rs"]
mod hello;

use std::{pin::Pin, process::ExitCode, time::Duration};

use futures_core::Stream;
use hello::{
    CountReply, CountRequest, HelloReply, HelloRequest,
    greeter_server::{Greeter, GreeterServer},
};
use tonic::{Request, Response, Status, metadata::MetadataValue, service::Routes};
use zdd::{Config, Lifecycle, LifecycleHandle, Probe, tonic::GrpcHealth};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let version = common::app_version()?;
    let version = MetadataValue::try_from(version.as_bytes())?;
    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;

    let port = common::port_or(50051)?;
    let listener = zdd::listen(([0, 0, 0, 0], port).into(), lifecycle.config())?;
    let addr = listener.local_addr()?;
    common::print_banner(
        &format!("grpc_hello {}", version.to_str().unwrap_or("?")),
        addr,
        lifecycle.config(),
    );
    println!(
        "  try:   grpcurl -plaintext -import-path examples/grpc -proto hello.proto -d '{{\"name\":\"you\"}}' localhost:{} hello.v1.Greeter/SayHello",
        addr.port()
    );
    println!(
        "         cargo run -p zdd-check -- --grpc --duration 5s http://localhost:{}/hello.v1.Greeter/SayHello",
        addr.port()
    );

    let handle = lifecycle.handle();
    // "" follows readiness; the names the Kubernetes recipe's gRPC probes ask for.
    let health = GrpcHealth::new(handle.clone())
        .service("liveness", Probe::Liveness)
        .service("startup", Probe::Startup);
    let greeter = Hello { handle, version };
    let routes = Routes::new(GreeterServer::new(greeter));
    // The health service on the gRPC port, and on the admin listener when there is one.
    let report = zdd::tonic::serve_with_health(listener, routes, health, lifecycle).await;
    Ok(common::finish(&report))
}

struct Hello {
    handle: LifecycleHandle,
    version: MetadataValue<tonic::metadata::Ascii>,
}

type CountStream = Pin<Box<dyn Stream<Item = Result<CountReply, Status>> + Send>>;

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let HelloRequest { name, delay_ms } = request.into_inner();
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(delay_ms.min(60_000)))).await;
        }
        let name = if name.is_empty() {
            "world".into()
        } else {
            name
        };
        let mut response = Response::new(HelloReply {
            message: format!("hello {name}"),
        });
        response
            .metadata_mut()
            .insert("x-version", self.version.clone());
        Ok(response)
    }

    type CountStream = CountStream;

    async fn count(&self, request: Request<CountRequest>) -> Result<Response<CountStream>, Status> {
        let CountRequest {
            interval_ms,
            through_drain,
        } = request.into_inner();
        let interval = Duration::from_millis(match interval_ms {
            0 => 100,
            ms => u64::from(ms.min(60_000)),
        });
        let ticks = futures_util::stream::unfold(0_u64, move |n| async move {
            tokio::time::sleep(interval).await;
            Some((Ok(CountReply { n }), n + 1))
        });
        let stream: CountStream = match through_drain {
            // Ends cleanly, status OK, when draining starts.
            false => Box::pin(self.handle.until_draining(ticks)),
            // Runs on: ends UNAVAILABLE at the drain deadline.
            true => Box::pin(ticks),
        };
        let mut response = Response::new(stream);
        response
            .metadata_mut()
            .insert("x-version", self.version.clone());
        Ok(response)
    }
}
