//! The layer allocates nothing per tracked request: the guard, the method and the path all
//! live inline in the response future and body. Counted with dhat's allocator.
#![cfg(feature = "tower")]

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body_util::Empty;
use tower::{Layer, Service, service_fn};
use zdd_core::{Config, Lifecycle, layer::ZddLayer};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn allocations_for<S>(service: &mut S, requests: &[Request<()>]) -> u64
where
    S: Service<Request<()>, Error = Infallible>,
{
    let before = dhat::HeapStats::get().total_blocks;
    for template in requests {
        let mut request = Request::new(());
        *request.method_mut() = template.method().clone();
        *request.uri_mut() = template.uri().clone();
        let mut future = pin!(service.call(request));
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("the test service is always ready");
        };
        drop(response);
    }
    dhat::HeapStats::get().total_blocks - before
}

#[test]
fn a_tracked_request_allocates_no_more_than_the_bare_service() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    // Like real handlers, the response has headers already, so adding `Connection: close`
    // fits in the map's existing capacity.
    let handler = || {
        service_fn(|_req: Request<()>| async {
            let response = Response::builder()
                .header("content-type", "text/plain")
                .body(Empty::<Bytes>::new());
            Ok::<_, Infallible>(response.unwrap())
        })
    };
    let long_path: Uri = format!("/{}", "segment/".repeat(20)).parse().unwrap();
    let requests: Vec<Request<()>> = [
        (Method::GET, "/api/orders/42".parse::<Uri>().unwrap()),
        (Method::POST, long_path),
        (
            Method::from_bytes(b"PURGE").unwrap(),
            "/cache".parse().unwrap(),
        ),
    ]
    .into_iter()
    .map(|(method, uri)| {
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        request
    })
    .collect();

    let mut bare = handler();
    let mut layered = ZddLayer::new(handle.clone())
        .exempt("/metrics")
        .layer(handler());
    // Warm up both (first clones of a parsed URI promote its buffer).
    allocations_for(&mut bare, &requests);
    allocations_for(&mut layered, &requests);

    let bare_allocations = allocations_for(&mut bare, &requests);
    let layered_allocations = allocations_for(&mut layered, &requests);
    assert_eq!(
        layered_allocations, bare_allocations,
        "the layer added allocations"
    );

    // Counted on a connection, as zdd-hyper's loop serves them: nothing more either.
    let connection = handle.track_connection();
    let mut on_connection = layered.for_connection(&connection);
    allocations_for(&mut on_connection, &requests);
    let connection_allocations = allocations_for(&mut on_connection, &requests);
    assert_eq!(
        connection_allocations, bare_allocations,
        "counting on the connection added allocations"
    );

    handle.shutdown(); // the unready path adds a header, still without allocating per request
    let unready_allocations = allocations_for(&mut layered, &requests);
    assert_eq!(unready_allocations, bare_allocations);
}
