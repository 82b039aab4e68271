//! Outbound webhooks, the delivery worker: one thread that sends due deliveries from the store's
//! outbox (`store::webhooks` queues them inside the writes they describe), signs each request,
//! and retries failures with exponential backoff until an attempt succeeds or the attempts run
//! out. Delivery is at least once: a request whose answer is lost is sent again, so receivers
//! deduplicate on the body's `id`.
//!
//! Every request carries:
//! - `Rapport-Event`: the event kind (`customer.updated`, ...);
//! - `Rapport-Delivery`: the delivery's id (one per event and endpoint, the same on every retry);
//! - `Rapport-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with the
//!   endpoint's secret as shown at registration. The receiver recomputes it and compares, and
//!   rejects an old `t` to stop replays.

use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::{Attempt, DueDelivery, Store, StoreError, WEBHOOK_RETENTION_MS, now_ms};

/// How deliveries are attempted. `Default` is production's; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The wait after the first failed attempt; it doubles after each further failure.
    pub retry_base: Duration,
    /// The longest wait between two attempts.
    pub retry_cap: Duration,
    /// Attempts before a delivery is given up (`failed`).
    pub max_attempts: u32,
    /// How often the worker looks for due deliveries.
    pub poll: Duration,
    pub connect_timeout: Duration,
    /// For the whole request, answer included: a slow endpoint must not hold the queue.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        // 30 s doubling to a 1 h cap over 10 attempts: an endpoint may be down ~5 hours.
        WebhookConfig {
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(3600),
            max_attempts: 10,
            poll: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

impl WebhookConfig {
    /// The defaults with another first retry's wait (`rapport serve --webhook-retry-ms`).
    pub fn with_retry_base(base: Duration) -> WebhookConfig {
        let d = WebhookConfig::default();
        WebhookConfig { retry_base: base, retry_cap: d.retry_cap.max(base), ..d }
    }

    /// The wait after a delivery's `failures`-th failed attempt.
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.retry_base.saturating_mul(factor).min(self.retry_cap)
    }
}

/// The running worker; [`Worker::stop`] (or dropping it) stops and joins the thread.
pub struct Worker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn start(store: Store, config: WebhookConfig) -> std::io::Result<Worker> {
        let (stop, stopped) = mpsc::channel();
        let thread =
            std::thread::Builder::new().name("webhooks".into()).spawn(move || run(&store, &config, &stopped))?;
        Ok(Worker { stop: Some(stop), thread: Some(thread) })
    }

    /// Stop after the request in flight, if any (its timeouts bound the wait); what is still
    /// queued is sent after the next start.
    pub fn stop(self) {}
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the webhook worker panicked");
        }
    }
}

fn run(store: &Store, config: &WebhookConfig, stopped: &mpsc::Receiver<()>) {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(config.connect_timeout)
        .timeout(config.timeout)
        // A redirect is an answer to fix at the endpoint, not to follow with a signed body.
        .redirects(0)
        .user_agent(concat!("Rapport-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut pruned: Option<Instant> = None;
    loop {
        match stopped.recv_timeout(config.poll) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Err(e) = deliver_due(store, config, &agent, stopped) {
            tracing::warn!("webhook deliveries: {e}");
        }
        if pruned.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
            pruned = Some(Instant::now());
            match store.prune_webhook_events(now_ms() - WEBHOOK_RETENTION_MS) {
                Ok(0) => {}
                Ok(n) => tracing::info!("pruned {n} webhook events older than the retention"),
                Err(e) => tracing::warn!("pruning webhook events: {e}"),
            }
        }
    }
}

/// Send everything due, batch after batch (a delivery sent may unblock the same customer's next
/// event), until nothing is due or the worker is told to stop.
fn deliver_due(
    store: &Store,
    config: &WebhookConfig,
    agent: &ureq::Agent,
    stopped: &mpsc::Receiver<()>,
) -> Result<(), StoreError> {
    loop {
        let due = store.due_webhook_deliveries(now_ms(), 32)?;
        if due.is_empty() {
            return Ok(());
        }
        for delivery in due {
            if !matches!(stopped.try_recv(), Err(TryRecvError::Empty)) {
                return Ok(());
            }
            let result = send(agent, &delivery);
            let at = now_ms();
            let attempt = match &result {
                Ok(status) => Attempt::Delivered { status: *status },
                Err((status, error)) => {
                    let failures = delivery.attempts + 1;
                    let retry_at = (failures < config.max_attempts)
                        .then(|| at + config.backoff(failures).as_millis().min(i64::MAX as u128) as i64);
                    tracing::warn!(org = %delivery.org, delivery = delivery.id, attempt = failures, "webhook: {error}");
                    Attempt::Failed { status: *status, error, retry_at }
                }
            };
            store.record_webhook_attempt(delivery.id, at, attempt)?;
        }
    }
}

/// One attempt: the status of a 2xx answer, or the status (when there was an answer) and why
/// the attempt failed.
fn send(agent: &ureq::Agent, d: &DueDelivery) -> Result<u16, (Option<u16>, String)> {
    let body = d.body();
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let answer = agent
        .post(&d.url)
        .set("Content-Type", "application/json")
        .set("Rapport-Event", &d.kind)
        .set("Rapport-Delivery", &d.id.to_string())
        .set("Rapport-Signature", &format!("t={t},v1={}", sign(&d.secret, t, &body)))
        .send_string(&body);
    let failed = |status: u16| {
        Err((Some(status), format!("the endpoint answered HTTP {status}; it must answer 2xx to acknowledge")))
    };
    match answer {
        Ok(r) if (200..300).contains(&r.status()) => Ok(r.status()),
        Ok(r) => failed(r.status()),
        Err(ureq::Error::Status(status, _)) => failed(status),
        Err(ureq::Error::Transport(e)) => Err((None, format!("cannot reach the endpoint: {e}"))),
    }
}

/// `hex(HMAC-SHA256(secret, "<t>.<body>"))`: what `Rapport-Signature`'s `v1` carries.
pub fn sign(secret: &str, t: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = WebhookConfig {
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(100),
            ..WebhookConfig::default()
        };
        let waits: Vec<u64> = (1..=5).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 100, 100, 100]);
        assert_eq!(c.backoff(200).as_secs(), 100);
    }
}
