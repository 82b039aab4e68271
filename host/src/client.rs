//! A small blocking client for the admin HTTP API, used by the `rapport` CLI's remote commands.
//!
//! Blocking because a CLI does one request at a time and `ureq` keeps it free of an async
//! runtime. Every failure is one [`ClientError`], whose message is what the user reads: the
//! server's `application/problem+json` answer becomes "HTTP 422 Denied by a policy: … (field:
//! email)", and a server that cannot be reached names the address and the option to change it.

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// A connection to one server with one token (the admin token or an organization's API key).
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

/// The server's `application/problem+json` answer (RFC 9457), or what stands in for it when a
/// proxy in between answered with something else.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: String,
    /// The offending field, for validation errors and policy denials.
    #[serde(default)]
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{}", problem_message(.0))]
    Problem(Problem),
    /// No answer: the server is not there, the address is wrong, or the connection broke (or the
    /// file being sent could not be read).
    #[error("{message}{hint}")]
    Transport { message: String, hint: &'static str },
    /// A success status, but not the body this client expects (another server on that port?).
    #[error("the server's answer is not what Rapport sends: {0} (is --url a Rapport server?)")]
    Answer(String),
}

fn problem_message(p: &Problem) -> String {
    let mut out = format!("HTTP {} {}: {}", p.status, p.title, p.detail);
    if let Some(field) = &p.field {
        out.push_str(&format!(" (field: {field})"));
    }
    // The server cannot know which option carried the token; the client can.
    if p.status == 401 {
        out.push_str(" — pass a valid token with --token or RAPPORT_TOKEN");
    }
    out
}

impl Client {
    /// `base_url` is the server's address (`http://127.0.0.1:8080`); a trailing `/` is ignored.
    pub fn new(base_url: &str, token: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .user_agent(concat!("rapport-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        Client { agent, base: base_url.trim_end_matches('/').to_owned(), token: token.to_owned() }
    }

    fn request(&self, method: &str, path: &str, query: &[(&str, &str)]) -> ureq::Request {
        let mut req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        for (name, value) in query {
            req = req.query(name, value);
        }
        req
    }

    /// A JSON request (no body when `body` is `None`) and its JSON answer; `Null` for `204`.
    pub fn json(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let req = self.request(method, path, query);
        let resp = match body {
            Some(body) => req.send_json(body),
            None => req.call(),
        };
        read_json(self.check(resp)?)
    }

    /// Send `body` as it is read (a file is never loaded whole) and hand back the answer, whatever
    /// its type. `len`, when known, is sent as `Content-Length`; otherwise the body is chunked.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        content_type: &str,
        len: Option<u64>,
        body: impl Read,
    ) -> Result<ureq::Response, ClientError> {
        let mut req = self.request(method, path, query).set("Content-Type", content_type);
        if let Some(len) = len {
            req = req.set("Content-Length", &len.to_string());
        }
        self.check(req.send(body))
    }

    /// An error status becomes its [`Problem`]; a failed connection says where it tried.
    fn check(&self, result: Result<ureq::Response, ureq::Error>) -> Result<ureq::Response, ClientError> {
        match result {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => Err(ClientError::Problem(problem(status, resp))),
            Err(ureq::Error::Transport(t)) => {
                let hint = match t.kind() {
                    ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                        " (is `rapport serve` running at that address? choose the server with --url or RAPPORT_URL)"
                    }
                    ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                        " (--url must look like http://127.0.0.1:8080)"
                    }
                    _ => "",
                };
                // ureq's message starts with the full URL, which says where it tried.
                Err(ClientError::Transport { message: format!("request failed: {t}"), hint })
            }
        }
    }
}

/// The answer's body as JSON; `Null` when there is none (`204 No Content`).
pub fn read_json(resp: ureq::Response) -> Result<Value, ClientError> {
    if resp.status() == 204 {
        return Ok(Value::Null);
    }
    let mut text = String::new();
    resp.into_reader().read_to_string(&mut text).map_err(|e| ClientError::Answer(format!("reading it: {e}")))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| ClientError::Answer(format!("not JSON ({e})")))
}

/// Read an error answer: a problem document when it is one, else the start of whatever came
/// (a proxy's HTML page, say) so that the user still sees something to act on.
fn problem(status: u16, resp: ureq::Response) -> Problem {
    let status_text = resp.status_text().to_owned();
    let mut text = String::new();
    let _ = resp.into_reader().take(64 << 10).read_to_string(&mut text);
    match serde_json::from_str::<Problem>(&text) {
        Ok(p) if !p.detail.is_empty() => {
            Problem { status, title: if p.title.is_empty() { status_text } else { p.title }, ..p }
        }
        _ => {
            let detail = text.trim().chars().take(300).collect::<String>();
            let detail = if detail.is_empty() { "(no details in the answer)".into() } else { detail };
            Problem { status, title: status_text, detail, field: None }
        }
    }
}

/// A value made safe to put in a URL path: anything but unreserved characters is
/// percent-encoded, so that a plugin name or slug can never change which route is called.
pub fn segment(s: &str) -> String {
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
