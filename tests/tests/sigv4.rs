//! `cairn --url … get` signs with SigV4 (service `lambda`) for IAM function URLs: a local server checks the
//! signature by re-signing what it received with the same secret; plus the errors users see for 403,
//! timeouts and unreachable URLs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use cairn_tests::process::{cairn, text};

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "session-token-example";

type Seen = Arc<Mutex<Vec<(Method, Uri, HeaderMap, Bytes)>>>;

/// A server answering every request with `status` and `body` after `delay`, recording what it got.
async fn server(status: StatusCode, body: &'static str, delay: Duration) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, bytes: Bytes| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push((method, uri, headers, bytes));
            tokio::time::sleep(delay).await;
            let mut r = axum::response::IntoResponse::into_response((status, body));
            if status == StatusCode::NOT_FOUND {
                r.headers_mut().insert("x-cairn-error", "key_not_found".parse().unwrap());
            }
            r
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn aws_env(region: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
        ("AWS_SESSION_TOKEN", TOKEN.into()),
        ("AWS_REGION", region.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/nonexistent".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
    ]
}

/// Recomputes the Authorization header for a received request from its own X-Amz-Date.
fn expected_authorization(method: &Method, url: &str, headers: &HeaderMap, body: &[u8], region: &str) -> String {
    let date = headers["x-amz-date"].to_str().unwrap();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(parse_amz_date(date));
    let identity = Credentials::new(KEY_ID, SECRET, Some(TOKEN.into()), None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("lambda")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signed: Vec<&str> = headers["authorization"]
        .to_str()
        .unwrap()
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .split(';')
        .collect();
    let hs: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| signed.contains(&k.as_str()) && !k.as_str().starts_with("x-amz-"))
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    let req = SignableRequest::new(method.as_str(), url, hs.into_iter(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(req, &params).unwrap().into_parts();
    instructions.headers().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).unwrap().1.to_string()
}

fn parse_amz_date(d: &str) -> u64 {
    // 20261124T063000Z
    let n = |a: usize, b: usize| d[a..b].parse::<i64>().unwrap();
    let (y, m, day, hh, mm, ss) = (n(0, 4), n(4, 6), n(6, 8), n(9, 11), n(11, 13), n(13, 15));
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + day - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    (days * 86400 + hh * 3600 + mm * 60 + ss) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_iam_function_urls_carry_a_valid_sigv4_signature() {
    let (url, seen) = server(StatusCode::OK, "the value", Duration::ZERO).await;
    let mut env = aws_env("eu-west-1");
    env.push(("CAIRN_SIGV4", "always".into()));
    let out = tokio::task::spawn_blocking({
        let (url, env) = (url.clone(), env.clone());
        move || cairn(&["--url", &url, "-k", "users", "get", "k/1 é"], None, &env)
    })
    .await
    .unwrap();
    assert_eq!(text(&out.stdout), "the value\n", "{}", text(&out.stderr));
    let mget = tokio::task::spawn_blocking({
        let (url, env) = (url.clone(), env.clone());
        move || cairn(&["--url", &url, "mget", "a", "b"], None, &env)
    })
    .await
    .unwrap();
    assert!(!mget.status.success()); // the fake server's body is not a JSON list: only the signature matters here

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (method, uri, headers, body) in &seen {
        let auth = headers["authorization"].to_str().unwrap();
        let date = &headers["x-amz-date"].to_str().unwrap()[..8];
        assert!(
            auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/{date}/eu-west-1/lambda/aws4_request")),
            "{auth}"
        );
        assert_eq!(headers["x-amz-security-token"], TOKEN);
        let full = format!("{url}{uri}");
        assert_eq!(auth, expected_authorization(method, &full, headers, body, "eu-west-1"), "{method} {uri}");
    }
    assert_eq!(seen[0].1.path(), "/v1/keyspaces/users/keys/k%2F1%20%C3%A9");
    assert_eq!(seen[1].0, Method::POST);
    assert!(!seen[1].3.is_empty(), "the MGET body is signed too");

    // A plain local URL is not signed.
    let (plain, plain_seen) = server(StatusCode::OK, "v", Duration::ZERO).await;
    let env = aws_env("eu-west-1");
    tokio::task::spawn_blocking(move || cairn(&["--url", &plain, "get", "k"], None, &env)).await.unwrap();
    assert!(plain_seen.lock().unwrap()[0].2.get("authorization").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_timeouts_and_unreachable_urls_give_clear_errors() {
    let (forbidden, _) = server(StatusCode::FORBIDDEN, r#"{"Message":"Forbidden"}"#, Duration::ZERO).await;
    let (slow, _) = server(StatusCode::OK, "late", Duration::from_secs(5)).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }; // closed again: nothing listens there
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cairn(&args, None, &aws_env("us-east-1"))
        })
    };
    let out = run(vec!["--url".into(), forbidden, "get".into(), "k".into()]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("403 forbidden") && text(&out.stderr).contains("lambda:InvokeFunctionUrl"),
        "{}",
        text(&out.stderr)
    );
    let out =
        run(vec!["--url".into(), slow, "--timeout".into(), "300ms".into(), "get".into(), "k".into()]).await.unwrap();
    assert!(text(&out.stderr).contains("timed out"), "{}", text(&out.stderr));
    let out = run(vec!["--url".into(), dead.clone(), "get".into(), "k".into()]).await.unwrap();
    assert!(text(&out.stderr).contains(&format!("cannot connect to {dead}")), "{}", text(&out.stderr));
}
