//! [`BlockingOtlpClient`]: how the OTLP exporter sends its batches — reqwest's
//! blocking client (the one reqwest keygate already builds with), on the batch
//! processor's own thread, never a request's.

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use std::sync::OnceLock;
use std::time::Duration;

/// The largest collector answer read (a collector answers a few bytes).
const MOST_ANSWER_BYTES: usize = 64 * 1024;

/// An HTTP client for the exporter. The blocking client is built on first use, on
/// the exporter's thread: it runs a runtime of its own, which must be neither
/// built nor dropped on one of the server's.
#[derive(Debug)]
pub struct BlockingOtlpClient {
    timeout: Duration,
    client: OnceLock<Result<reqwest::blocking::Client, String>>,
}

impl BlockingOtlpClient {
    /// A client whose every export gives up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        BlockingOtlpClient {
            timeout,
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> Result<&reqwest::blocking::Client, HttpError> {
        self.client
            .get_or_init(|| {
                reqwest::blocking::Client::builder()
                    .timeout(self.timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| e.clone().into())
    }
}

#[async_trait::async_trait]
impl HttpClient for BlockingOtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut answer = self
            .client()?
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let mut out = Response::builder().status(answer.status());
        if let Some(headers) = out.headers_mut() {
            *headers = std::mem::take(answer.headers_mut());
        }
        let mut bytes = Vec::new();
        use std::io::Read;
        answer
            .take(MOST_ANSWER_BYTES as u64)
            .read_to_end(&mut bytes)?;
        Ok(out.body(Bytes::from(bytes))?)
    }
}
