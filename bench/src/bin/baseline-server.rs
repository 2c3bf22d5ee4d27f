//! The baseline: the strongest honest server of what a user would write for the original assignment. The
//! whole file in a std HashMap, answered by hyper directly (no router, no middleware): HTTP/1.1 keep-alive,
//! TCP_NODELAY, each response one buffer — the same hyper connection settings as `cairn serve`, on the same
//! number of tokio workers (`CAIRN_WORKERS`, read the same way; default one per core), unpinned like it.
//! usage: baseline-server DATA_FILE PORT

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

type Map = Arc<HashMap<String, Bytes>>;

fn answer(map: &Map, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let key = req.uri().path().strip_prefix("/v1/keyspaces/").and_then(|rest| rest.split_once("/keys/"));
    let (status, body) = match key.map(|(_, key)| map.get(key)) {
        Some(Some(v)) => (StatusCode::OK, v.clone()),
        Some(None) => (StatusCode::NOT_FOUND, Bytes::new()),
        None => (StatusCode::BAD_REQUEST, Bytes::new()),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (file, port) = (&args[1], args[2].parse::<u16>().expect("port"));
    let data = std::fs::read(file).expect("data file");
    let mut map = HashMap::new();
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let sp = line.iter().position(|&b| b == b' ').expect("space");
        map.insert(String::from_utf8_lossy(&line[..sp]).into_owned(), Bytes::copy_from_slice(&line[sp + 1..]));
    }
    let map: Map = Arc::new(map);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("CAIRN_WORKERS").ok().and_then(|v| v.parse::<usize>().ok()) {
        rt.worker_threads(n);
    }
    rt.enable_all().build().unwrap().block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.writev(false).max_buf_size(cairn_functions::server::MAX_BUFFER);
        eprintln!("baseline serving on 127.0.0.1:{port}");
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            let map = map.clone();
            let service =
                hyper::service::service_fn(move |req| std::future::ready(Ok::<_, Infallible>(answer(&map, &req))));
            let conn = http.serve_connection(TokioIo::new(tcp), service);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
}
