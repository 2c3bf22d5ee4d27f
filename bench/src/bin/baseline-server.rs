//! The baseline: what a user would write for the original assignment. One process, the whole file in a
//! HashMap, axum on 2 tokio worker threads with TCP_NODELAY, the same route shape as cairn.
//! usage: baseline-server DATA_FILE PORT

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use bytes::Bytes;

type Map = Arc<HashMap<String, Bytes>>;

async fn get(State(map): State<Map>, Path((_ks, key)): Path<(String, String)>) -> Response {
    match map.get(&key) {
        Some(v) => v.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
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
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let app = axum::Router::new()
            .route("/v1/keyspaces/{ks}/keys/{key}", axum::routing::get(get))
            .with_state(Arc::new(map));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap().tap_io(|t| {
            let _ = t.set_nodelay(true);
        });
        eprintln!("baseline serving on 127.0.0.1:{port}");
        axum::serve(listener, app).await.unwrap();
    });
}
