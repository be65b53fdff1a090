//! A channel's base URL, parsed once when the channel is loaded: where to
//! connect, the `Host` to send and the path upstream paths are appended to.

use hyper::Uri;
use hyper::header::HeaderValue;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `scheme://authority/`: what the connector dials.
    origin: Uri,
    /// The origin's text; connections are kept for reuse under it.
    key: Arc<str>,
    host: HeaderValue,
    /// Without a trailing slash.
    base_path: String,
}

impl Endpoint {
    /// Errors say what is wrong without repeating the URL, which may hold
    /// a secret (in its user part or query string).
    pub fn parse(base_url: &str) -> Result<Self, String> {
        let default_port = if base_url.starts_with("http://") {
            80
        } else if base_url.starts_with("https://") {
            443
        } else {
            return Err("must start with http:// or https://".into());
        };
        let uri: Uri = base_url.parse().map_err(|e| format!("is not a URL: {e}"))?;
        let Some(authority) = uri.authority().cloned() else {
            return Err("names no host".into());
        };
        if authority.as_str().contains('@') {
            return Err("holds credentials; give them as the channel's api_key".into());
        }
        if uri.query().is_some() {
            return Err("has a query string".into());
        }
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_string(),
        };
        let scheme = uri.scheme().expect("http or https").clone();
        let key = format!("{scheme}://{authority}");
        let origin = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|e| format!("is not a URL: {e}"))?;
        Ok(Endpoint {
            origin,
            key: key.into(),
            host: HeaderValue::try_from(host).map_err(|e| format!("names an invalid host: {e}"))?,
            base_path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    pub fn origin(&self) -> &Uri {
        &self.origin
    }

    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    pub fn base_path(&self) -> &str {
        &self.base_path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_base_url_into_origin_host_and_path() {
        let endpoint = Endpoint::parse("https://api.example.com:443/v1/").unwrap();
        assert_eq!(
            endpoint.origin().to_string(),
            "https://api.example.com:443/"
        );
        assert_eq!(endpoint.host(), "api.example.com");
        assert_eq!(endpoint.base_path(), "/v1");
        assert_eq!(&**endpoint.key(), "https://api.example.com:443");

        let endpoint = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(endpoint.host(), "127.0.0.1:8080");
        assert_eq!(endpoint.base_path(), "");
        assert_eq!(
            Endpoint::parse("http://[::1]:9/x").unwrap().host(),
            "[::1]:9"
        );
    }

    #[test]
    fn refuses_what_is_not_an_http_base_url() {
        for (url, says) in [
            ("ftp://x", "http://"),
            ("api.example.com/v1", "http://"),
            ("http://user:pw@x/v1", "api_key"),
            ("http://x/v1?key=1", "query"),
            ("http://x y", "not a URL"),
        ] {
            let error = Endpoint::parse(url).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
            assert!(!error.contains("pw") && !error.contains("key=1"), "{error}");
        }
    }
}
