//! HTTP client for a `cairn serve` server or a function URL.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;

use crate::sigv4::Signer;

pub struct Client {
    http: reqwest::Client,
    base: String,
    signer: Option<Signer>,
}

impl Client {
    /// `sigv4`: auto, always or never (see [`crate::sigv4`]).
    pub async fn new(url: &str, timeout: Duration, sigv4: &str) -> Result<Self, String> {
        let base = url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| format!("--url {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("--url {url:?} must start with http:// or https://"));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .build()
            .map_err(|e| e.to_string())?;
        let signer = Signer::for_url(&parsed, sigv4).await?;
        Ok(Client { http, base, signer })
    }

    fn url(&self, parts: &[&str]) -> String {
        let mut u = self.base.clone();
        for p in parts {
            u.push('/');
            u.push_str(&encode_segment(p));
        }
        u
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let mut req = req.build().map_err(|e| e.to_string())?;
        if let Some(signer) = &self.signer {
            signer.sign(&mut req)?;
        }
        self.http.execute(req).await.map_err(|e| {
            if e.is_timeout() {
                format!("{}: timed out (raise --timeout)", self.base)
            } else if e.is_connect() {
                format!("cannot connect to {} (is `cairn serve` running? set --url)", self.base)
            } else {
                format!("{}: {e}", self.base)
            }
        })
    }

    async fn fail(resp: reqwest::Response) -> String {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or(body);
        match status {
            StatusCode::FORBIDDEN => format!(
                "403 forbidden: {msg} (an AWS_IAM function URL needs SigV4-signed requests from credentials allowed \
                 lambda:InvokeFunctionUrl; cairn signs automatically for *.lambda-url.<region>.on.aws URLs)"
            ),
            s => format!("{}: {msg}", s.as_u16()),
        }
    }

    pub async fn get(&self, ks: &str, key: &str) -> Result<Option<Bytes>, String> {
        let resp = self.send(self.http.get(self.url(&["v1", "keyspaces", ks, "keys", key]))).await?;
        match resp.status() {
            StatusCode::OK => resp.bytes().await.map(Some).map_err(|e| e.to_string()),
            StatusCode::NOT_FOUND if is_key_not_found(&resp) => Ok(None),
            _ => Err(Self::fail(resp).await),
        }
    }

    pub async fn mget(&self, ks: &str, keys: &[String]) -> Result<Vec<Option<Bytes>>, String> {
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(cairn_functions::api::MAX_MGET_KEYS) {
            let url = self.url(&["v1", "keyspaces", ks, "mget"]) + "?encoding=base64";
            let resp = self.send(self.http.post(url).json(batch)).await?;
            if !resp.status().is_success() {
                return Err(Self::fail(resp).await);
            }
            let values: Vec<Option<String>> = resp.json().await.map_err(|e| e.to_string())?;
            use base64::Engine as _;
            for v in values {
                out.push(match v {
                    None => None,
                    Some(b) => Some(Bytes::from(
                        base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| e.to_string())?,
                    )),
                });
            }
        }
        Ok(out)
    }

    pub async fn info(&self, ks: &str) -> Result<Value, String> {
        let resp = self.send(self.http.get(self.url(&["v1", "keyspaces", ks]))).await?;
        if !resp.status().is_success() {
            return Err(Self::fail(resp).await);
        }
        resp.json().await.map_err(|e| e.to_string())
    }
}

/// A 404 for a missing key (as opposed to a missing keyspace or route), as the server labels it.
fn is_key_not_found(resp: &reqwest::Response) -> bool {
    resp.headers().get(cairn_functions::api::ERROR_HEADER).is_some_and(|v| v == "key_not_found")
}

/// Percent-encodes a path segment (keys may hold any printable character).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
