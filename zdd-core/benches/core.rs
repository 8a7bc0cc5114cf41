#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Micro benchmarks: request guard acquire + release (alone and with the other core
//! contending), one request through `ZddLayer` against the same service without it, and
//! the floors under both: what one pair of atomic read-modify-writes costs on this machine,
//! and `one_request/counting_floor`, the least a layer that counts each request until its
//! response body ends can do (a reference to a shared count, an increment, a decrement,
//! and a guard carried by the response future and body), with none of zdd's naming, phase
//! or path checks; `one_request/named_floor` adds what the forced-close log needs (the
//! guard carries the method, the start of the path and the start time). Both are the
//! throughput driver's floors (`benches/common/counting.rs` at the workspace's root).
//! `one_request/duties_floor` adds, at their least, the duties `ZddLayer` has on every
//! request with the settings benchmarked here: the exempt path is not counted, and an
//! answer given once shutdown has begun carries `Connection: close`.
//!
//! Run with `cargo bench -p zdd-core --features tower --bench core`; with `metrics` too, it
//! also measures `RequestMetricsLayer` (`one_request/request_metrics`).

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use http::{Request, Response, Uri};
use http_body_util::Empty;
use tower::{Layer, Service, service_fn};
use zdd_core::{Config, Lifecycle, layer::ZddLayer};

#[path = "../../benches/common/counting.rs"]
mod counting;

use counting::{Counting, Layered, Name, Unnamed};

fn guards(c: &mut Criterion) {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let mut group = c.benchmark_group("request_guard");
    group.bench_function("acquire_release", |b| {
        b.iter(|| handle.track_request().finish())
    });

    group.bench_function("acquire_release_contended", |b| {
        b.iter_custom(|iters| {
            let stop = Arc::new(AtomicBool::new(false));
            let other = {
                let handle = handle.clone();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        handle.track_request().finish();
                    }
                })
            };
            let started = Instant::now();
            for _ in 0..iters {
                handle.track_request().finish();
            }
            let elapsed = started.elapsed();
            stop.store(true, Ordering::Relaxed);
            other.join().unwrap();
            elapsed
        })
    });
    group.finish();
}

/// Calls the service once and polls the (immediately ready) future to completion.
fn one_request<S>(service: &mut S, uri: &Uri) -> S::Response
where
    S: Service<Request<()>, Error = Infallible>,
{
    let mut request = Request::new(());
    *request.uri_mut() = uri.clone();
    let mut future = pin!(service.call(request));
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => unreachable!("the benchmark service is always ready"),
    }
}

/// Sends one request to a service and drops its response.
type SendOne<'a> = dyn FnMut(&Uri) + 'a;

/// Builds each service compared (the bare handler, `ZddLayer` alone and counted on a
/// connection, the counting, named and duties floors, and with `metrics` the request
/// metrics) and hands `each` its name and a function that sends it one request: the same
/// services for criterion and for `--count`.
fn with_services(each: &mut dyn FnMut(&str, &mut SendOne<'_>)) {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let handler = || {
        service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        })
    };
    let mut bare = handler();
    each("bare", &mut |uri| {
        drop(black_box(one_request(&mut bare, uri)))
    });
    let mut layered = ZddLayer::new(handle.clone())
        .exempt("/metrics")
        .layer(handler());
    each("zdd_layer", &mut |uri| {
        drop(black_box(one_request(&mut layered, uri)));
    });
    // As zdd's own loop serves it: counted on its connection.
    let connection = handle.track_connection();
    let mut on_connection = layered.for_connection(&connection);
    each("zdd_layer_on_connection", &mut |uri| {
        drop(black_box(one_request(&mut on_connection, uri)));
    });
    let mut floor = Counting::<_, Unnamed>::new(handler());
    each("counting_floor", &mut |uri| {
        drop(black_box(one_request(&mut floor, uri)));
    });
    let mut named = Counting::<_, Name>::new(handler());
    each("named_floor", &mut |uri| {
        drop(black_box(one_request(&mut named, uri)));
    });
    let mut duties = Counting::<_, Name, Layered>::new(handler());
    each("duties_floor", &mut |uri| {
        drop(black_box(one_request(&mut duties, uri)));
    });
    // The opt-in per-version metrics, recording into Prometheus' exporter.
    #[cfg(feature = "metrics")]
    {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = metrics::with_local_recorder(&recorder, || {
            zdd_core::layer::RequestMetricsLayer::new("v2")
        });
        let mut recorded = metrics.layer(handler());
        each("request_metrics", &mut |uri| {
            drop(black_box(one_request(&mut recorded, uri)));
        });
    }
}

/// The path every benchmarked request asks for.
const PATH: &str = "/api/orders/42";

fn layer(c: &mut Criterion) {
    let uri: Uri = PATH.parse().unwrap();
    let mut group = c.benchmark_group("one_request");
    group.measurement_time(Duration::from_secs(5));
    with_services(&mut |name, send| {
        group.bench_function(name, |b| b.iter(|| send(&uri)));
    });
    group.finish();
}

/// `--count SERVICE N`: sends N requests through one of the services and exits, for
/// `benches/instructions --layer`, which counts the instructions of N and 2N under
/// callgrind.
fn count(service: &str, requests: u64) {
    let uri: Uri = PATH.parse().unwrap();
    let mut found = false;
    with_services(&mut |name, send| {
        if name == service {
            found = true;
            for _ in 0..requests {
                send(&uri);
            }
        }
    });
    if !found {
        eprintln!("--count: no service named {service:?}");
        std::process::exit(2);
    }
}

/// A guard is two pairs of atomic read-modify-writes (the lifecycle's reference count and
/// the request count): their cost on the machine at hand is the floor of the layer's.
fn floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("floor");
    let shared = Arc::new(AtomicUsize::new(0));
    group.bench_function("arc_clone_drop", |b| {
        b.iter(|| drop(black_box(Arc::clone(&shared))))
    });
    group.bench_function("fetch_add_sub", |b| {
        b.iter(|| {
            black_box(&shared).fetch_add(1, Ordering::Relaxed);
            black_box(&shared).fetch_sub(1, Ordering::SeqCst);
        })
    });
    group.finish();
}

criterion_group!(benches, guards, layer, floor);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--count") {
        let (Some(service), Some(requests)) = (args.get(at + 1), args.get(at + 2)) else {
            eprintln!("--count SERVICE N");
            std::process::exit(2);
        };
        let Ok(requests) = requests.parse() else {
            eprintln!("--count: {requests:?} is not a number of requests");
            std::process::exit(2);
        };
        count(service, requests);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
