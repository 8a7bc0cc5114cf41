use std::{borrow::Cow, sync::Arc, time::Duration};

use http::HeaderMap;
use tower_layer::Layer;

use super::Zdd;
use crate::{LifecycleHandle, Probe, ProbePaths};

/// What happens to a request that arrives on a live connection during the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LateRequests {
    /// Serve it, with `Connection: close` on HTTP/1. Nothing fails.
    #[default]
    Serve,
    /// Answer `503 Service Unavailable` with `Retry-After` (whole seconds, rounded up) and,
    /// on HTTP/1, `Connection: close`. Fits services behind proxies that retry 503s.
    Reject {
        /// The `Retry-After` value.
        retry_after: Duration,
    },
}

/// Settings shared by every clone of the service.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) handle: LifecycleHandle,
    pub(crate) exempt: Vec<Cow<'static, str>>,
    pub(crate) probes: Option<ProbePaths>,
    pub(crate) verbose: bool,
    pub(crate) late: LateRequests,
    /// What requests still open at forcing end with ([`ZddLayer::end_forced_with`]).
    pub(crate) forced: Option<Arc<HeaderMap>>,
    /// The lengths of the exempt and probe paths, so that most requests are told apart
    /// from them with one test ([`Settings::may_be_special`]).
    special: SpecialLengths,
}

/// A set of path lengths: bit `n` for a length `n` under 64, one flag for all longer ones.
#[derive(Debug, Clone, Copy, Default)]
struct SpecialLengths {
    short: u64,
    long: bool,
}

impl SpecialLengths {
    fn insert(&mut self, path: &str) {
        match path.len() {
            len @ 0..64 => self.short |= 1 << len,
            _ => self.long = true,
        }
    }

    #[inline]
    fn contains(self, path: &str) -> bool {
        match path.len() {
            len @ 0..64 => self.short & (1 << len) != 0,
            _ => self.long,
        }
    }
}

/// What a request whose path has the length of a probe's or an exempt path is.
pub(crate) enum SpecialPath {
    /// A probe, answered by the layer.
    Probe(Probe),
    /// Exempt: served uncounted.
    Exempt,
    /// Neither, after all.
    Counted,
}

impl Settings {
    pub(crate) fn is_exempt(&self, path: &str) -> bool {
        self.exempt.iter().any(|exempt| exempt == path)
    }

    /// What a request to `path`, which [may be special](Settings::may_be_special), is. Kept
    /// out of line, so the common call stays small.
    #[inline(never)]
    pub(crate) fn special(&self, path: &str) -> SpecialPath {
        if let Some(probe) = self.probes.as_ref().and_then(|paths| paths.probe_for(path)) {
            return SpecialPath::Probe(probe);
        }
        match self.is_exempt(path) {
            true => SpecialPath::Exempt,
            false => SpecialPath::Counted,
        }
    }

    /// Whether `path` may be exempt or a probe: `false` is certain, `true` must be checked
    /// against the paths themselves.
    #[inline]
    pub(crate) fn may_be_special(&self, path: &str) -> bool {
        self.special.contains(path)
    }

    fn index_special_paths(&mut self) {
        let mut special = SpecialLengths::default();
        for path in &self.exempt {
            special.insert(path);
        }
        if let Some(probes) = &self.probes {
            for probe in [Probe::Liveness, Probe::Readiness, Probe::Startup] {
                special.insert(probes.path(probe));
            }
        }
        self.special = special;
    }
}

/// Applies [`Zdd`] to a service. See the [module docs](crate::layer).
#[derive(Debug, Clone)]
pub struct ZddLayer {
    settings: Arc<Settings>,
}

impl ZddLayer {
    /// Tracks every request, answers no probes, serves late requests.
    #[must_use]
    pub fn new(handle: LifecycleHandle) -> Self {
        Self {
            settings: Arc::new(Settings {
                handle,
                exempt: Vec::new(),
                probes: None,
                verbose: false,
                late: LateRequests::default(),
                forced: None,
                special: SpecialLengths::default(),
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        f(settings);
        settings.index_special_paths();
        self
    }

    /// Exempts a path (exact match) from counting and rejection, such as `/metrics`. Can be
    /// called several times. Default is none (probe paths answered by the layer are always
    /// exempt).
    #[must_use]
    pub fn exempt(self, path: impl Into<Cow<'static, str>>) -> Self {
        let path = path.into();
        self.update(|s| s.exempt.push(path))
    }

    /// Answers the probes at `paths` in front of the inner service. Default is off.
    #[must_use]
    pub fn probes(self, paths: ProbePaths) -> Self {
        self.update(|s| s.probes = Some(paths))
    }

    /// Whether probe answers show failing checks' full messages. Default is `false`.
    #[must_use]
    pub fn verbose_probes(self, verbose: bool) -> Self {
        self.update(|s| s.verbose = verbose)
    }

    /// Ends the requests still open at [`Phase::Forcing`](crate::Phase::Forcing) with
    /// `headers` instead of cutting them: a request whose answer has begun gets them as its
    /// body's trailers (without `Content-Type`), and the stream ends cleanly; a request not
    /// answered yet is answered `200 OK` with them as its headers (gRPC's trailers-only
    /// form). Either way the request counts as aborted, and is logged so, as when its
    /// connection is forced closed. The connection is closed once the answer is out.
    ///
    /// For protocols that report errors in trailers: `zdd-tonic` ends open RPCs with
    /// `grpc-status: 14` (`UNAVAILABLE`), which clients retry elsewhere. Each counted
    /// request then holds a wait for forcing (two small allocations). Default is off: open
    /// requests are cut when their connection is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue};
    /// use zdd_core::{Config, Lifecycle, layer::ZddLayer};
    ///
    /// let lifecycle = Lifecycle::new(Config::default());
    /// let mut unavailable = HeaderMap::new();
    /// unavailable.insert("content-type", HeaderValue::from_static("application/grpc"));
    /// unavailable.insert("grpc-status", HeaderValue::from_static("14"));
    /// let layer = ZddLayer::new(lifecycle.handle()).end_forced_with(unavailable);
    /// # drop(layer);
    /// ```
    #[must_use]
    pub fn end_forced_with(self, headers: HeaderMap) -> Self {
        self.update(|s| s.forced = Some(Arc::new(headers)))
    }

    /// What to do with requests arriving during the drain. Default is
    /// [`LateRequests::Serve`].
    #[must_use]
    pub fn late_requests(self, late: LateRequests) -> Self {
        self.update(|s| s.late = late)
    }

    /// The paths the layer answers the probes at, if it does.
    #[must_use]
    pub fn probe_paths(&self) -> Option<&ProbePaths> {
        self.settings.probes.as_ref()
    }

    /// The lifecycle this layer reports to.
    #[must_use]
    pub fn handle(&self) -> &LifecycleHandle {
        &self.settings.handle
    }
}

impl<S> Layer<S> for ZddLayer {
    type Service = Zdd<S>;

    fn layer(&self, inner: S) -> Zdd<S> {
        Zdd::new(inner, Arc::clone(&self.settings))
    }
}
