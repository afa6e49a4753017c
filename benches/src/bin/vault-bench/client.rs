//! A minimal HTTP/1.1 client: one keep-alive connection per worker, plain HTTP to the server.
//!
//! hyper's connection API is used directly rather than a pooled client, so that a request
//! waits for nothing but its own connection: any queueing the run sees is the server's.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The client share header of client-custody modes.
const CLIENT_SHARE: &str = "x-client-share";

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// The `--url` is not a plain `http://host:port` URL.
    #[error("bad --url: {0}")]
    Url(String),
    /// Connecting or talking to the server failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP exchange failed (connection closed, malformed answer).
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a header value the server would refuse).
    #[error("request: {0}")]
    Request(String),
}

/// The server under load and the credential to call it with.
pub(crate) struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    /// `Bearer <api key>`, marked sensitive so that hyper never logs it.
    authorization: HeaderValue,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The API key is a credential: never formatted.
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("authorization", &"<redacted>")
            .finish()
    }
}

impl Target {
    /// A target at `url` (`http://host:port`, host resolved now) with `api_key`.
    pub(crate) async fn from_url(url: &str, api_key: &str) -> Result<Target, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ClientError::Url(format!("`{url}`: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(ClientError::Url(
                "only plain `http://` is supported: run the load against a local listener".into(),
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Url(format!("`{url}` has no host")))?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| ClientError::Url(format!("`{host}` does not resolve")))?;
        Target::new(addr, api_key)
    }

    /// A target at a socket address (the in-process server).
    pub(crate) fn new(addr: SocketAddr, api_key: &str) -> Result<Target, ClientError> {
        let host = HeaderValue::from_str(&addr.to_string())
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {api_key}"))
            .map_err(|_| ClientError::Request("the API key is not a valid header value".into()))?;
        authorization.set_sensitive(true);
        Ok(Target {
            addr,
            host,
            authorization,
        })
    }
}

/// A client share to send with a read, as a sensitive header value.
pub(crate) struct ClientShare(HeaderValue);

impl fmt::Debug for ClientShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Half of a data key in 2-of-2 mode: never formatted.
        f.write_str("ClientShare(<redacted>)")
    }
}

impl ClientShare {
    /// From the base64url text the server returned.
    pub(crate) fn new(text: &str) -> Result<ClientShare, ClientError> {
        let mut value = HeaderValue::from_str(text)
            .map_err(|_| ClientError::Request("the client share is not a header value".into()))?;
        value.set_sensitive(true);
        Ok(ClientShare(value))
    }
}

/// An HTTP answer: status and body.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status.
    pub(crate) status: StatusCode,
    /// The whole body.
    pub(crate) body: Bytes,
}

/// One keep-alive HTTP/1.1 connection.
pub(crate) struct Connection {
    target: Arc<Target>,
    sender: SendRequest<Full<Bytes>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Opens a connection (Nagle off: requests are small and latency-bound).
    pub(crate) async fn open(target: Arc<Target>) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Http)?;
        // The connection task ends when the sender is dropped or the server closes; its error,
        // if any, shows up on the next `send`.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { target, sender })
    }

    /// Whether the connection can still carry requests.
    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends one request and reads the whole answer.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        share: Option<&ClientShare>,
    ) -> Result<Answer, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.target.host.clone())
            .header(AUTHORIZATION, self.target.authorization.clone());
        if let Some(share) = share {
            request = request.header(CLIENT_SHARE, share.0.clone());
        }
        let request = match body {
            Some(body) => request
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(body)),
            None => request.body(Full::new(Bytes::new())),
        }
        .map_err(|e| ClientError::Request(e.to_string()))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_credentials_or_shares() {
        let target = Target::new("127.0.0.1:1".parse().unwrap(), "1ck_supersecretkey").unwrap();
        let share = ClientShare::new("AQPJwiEhEkyMFOjqOyp").unwrap();
        let text = format!("{target:?} {share:?}");
        assert!(!text.contains("supersecret"), "{text}");
        assert!(!text.contains("AQPJ"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn refuses_urls_it_cannot_load() {
        for url in ["https://127.0.0.1:8443", "127.0.0.1:8443", "http://"] {
            assert!(
                matches!(Target::from_url(url, "k").await, Err(ClientError::Url(_))),
                "{url}"
            );
        }
        let ok = Target::from_url("http://127.0.0.1:8443", "k")
            .await
            .unwrap();
        assert_eq!(ok.addr.port(), 8443);
    }
}
