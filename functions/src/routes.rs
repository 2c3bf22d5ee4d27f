//! The HTTP API's routes, as the router, the request figures and the OpenAPI document name them (docs/API.md
//! is the reference).

/// Every route, as the OpenAPI document names them (openapi.rs checks the two agree).
pub const ROUTES: [&str; 9] = [
    "/v1/health",
    "/v1/keyspaces",
    "/v1/keyspaces/{ks}",
    "/v1/keyspaces/{ks}/keys/{key}",
    "/v1/keyspaces/{ks}/mget",
    "/v1/openapi.json",
    "/metrics",
    "/v1/ready",
    "/v1/live",
];

/// The single-key GET's index in [`ROUTES`] (`cairn serve`'s fast path counts it there).
pub const GET_ROUTE: usize = 3;
const _: () = assert!(matches!(ROUTES[GET_ROUTE].as_bytes(), b"/v1/keyspaces/{ks}/keys/{key}"));

/// The keyspace and key segments of a single-key GET's path, `/v1/keyspaces/{ks}/keys/{key}`, before the
/// caller's own check of which characters it serves them with (the fast paths of server.rs and
/// plain_get.rs; the router matches the route itself).
pub(crate) fn single_key_segments(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix("/v1/keyspaces/")?.split_once("/keys/")
}

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Keys per MGET.
pub const MAX_MGET_KEYS: usize = 1000;
pub const VERSION_HEADER: &str = "x-cairn-version";
/// Set on every error response to its machine-readable code (also in the JSON body), so clients can tell a
/// missing key from a missing keyspace without parsing the body.
pub const ERROR_HEADER: &str = "x-cairn-error";
