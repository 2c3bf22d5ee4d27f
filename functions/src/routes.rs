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
    let rest = path.strip_prefix("/v1/keyspaces/")?;
    // The first "/keys/", as `split_once` finds it, without the substring searcher it builds per call.
    let at = memchr::memchr_iter(b'/', rest.as_bytes()).find(|&i| rest.as_bytes()[i..].starts_with(b"/keys/"))?;
    Some((&rest[..at], &rest[at + "/keys/".len()..]))
}

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Keys per MGET.
pub const MAX_MGET_KEYS: usize = 1000;
pub const VERSION_HEADER: &str = "x-cairn-version";
/// Set on every error response to its machine-readable code (also in the JSON body), so clients can tell a
/// missing key from a missing keyspace without parsing the body.
pub const ERROR_HEADER: &str = "x-cairn-error";

#[cfg(test)]
mod tests {
    #[test]
    fn single_key_segments_split_as_split_once_does() {
        let rests = [
            "ks/keys/k",
            "ks/keys/",
            "/keys/k",
            "ks/keys",
            "ks/key/k",
            "a/b/keys/k",
            "a/keys/b/keys/c",
            "a//keys/k",
            "a/keys//keys/",
            "ks/keys/k/keys/",
            "ks%2Fkeys/k",
            "k\u{e9}/keys/\u{e9}",
            "",
            "/",
            "//keys/",
            "ks/keyskeys/k",
            "ks/kkeys/k",
            "ks/keys/keys/",
        ];
        for rest in rests {
            let path = format!("/v1/keyspaces/{rest}");
            assert_eq!(super::single_key_segments(&path), rest.split_once("/keys/"), "{path:?}");
        }
        assert_eq!(super::single_key_segments("/v1/keyspace/ks/keys/k"), None);
    }
}
