//! SigV4 for Lambda function URLs with `AuthType: AWS_IAM` (service `lambda`). Used when the URL's host is
//! `<id>.lambda-url.<region>.on.aws` (`CAIRN_SIGV4=auto`, the default), always (`always`, region from
//! `AWS_REGION`; for proxies and emulators) or never (`never`). Credentials come from the standard AWS chain
//! (environment, profiles, SSO cache, web identity, container and instance roles).

use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

/// Signs requests for one region with one set of credentials.
pub struct Signer {
    region: String,
    credentials: Credentials,
}

/// The region of a function URL host, e.g. `abc.lambda-url.eu-west-1.on.aws` → `eu-west-1`.
pub fn function_url_region(host: &str) -> Option<&str> {
    let rest = host.strip_suffix(".on.aws")?;
    let (_, region) = rest.rsplit_once(".lambda-url.")?;
    (!region.is_empty()).then_some(region)
}

impl Signer {
    /// The signer `url` needs under `mode`, or None for plain HTTP.
    pub async fn for_url(url: &reqwest::Url, mode: &str) -> Result<Option<Signer>, String> {
        let host = url.host_str().unwrap_or_default();
        let region = match (mode, function_url_region(host)) {
            ("never", _) | ("auto", None) => return Ok(None),
            ("auto" | "always", Some(r)) => r.to_string(),
            ("always", None) => std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .map_err(|_| format!("CAIRN_SIGV4=always needs AWS_REGION to sign requests to {host}"))?,
            (other, _) => return Err(format!("CAIRN_SIGV4={other:?}: use auto, always or never")),
        };
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let provider = config.credentials_provider().ok_or("no AWS credentials provider configured")?;
        let credentials = provider.provide_credentials().await.map_err(|e| {
            format!("{host} is an AWS_IAM function URL but no AWS credentials were found ({e}); configure them as for the AWS CLI")
        })?;
        Ok(Some(Signer { region, credentials }))
    }

    /// Adds the SigV4 headers (Authorization, X-Amz-Date, X-Amz-Security-Token) to `req`.
    pub fn sign(&self, req: &mut reqwest::Request) -> Result<(), String> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let body = req.body().and_then(|b| b.as_bytes()).unwrap_or_default();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
            .collect();
        let signable = SignableRequest::new(
            req.method().as_str(),
            req.url().as_str(),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
        for (name, value) in instructions.headers() {
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            req.headers_mut()
                .insert(reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn function_url_hosts() {
        assert_eq!(super::function_url_region("abc123.lambda-url.eu-west-1.on.aws"), Some("eu-west-1"));
        assert_eq!(super::function_url_region("127.0.0.1"), None);
        assert_eq!(super::function_url_region("example.on.aws"), None);
    }
}
