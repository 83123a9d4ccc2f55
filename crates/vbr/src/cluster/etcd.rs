//! A small, blocking etcd v3 client over etcd's own JSON gateway (`/v3/kv/range`, `put`,
//! `deleterange`, `txn`, `/v3/lease/*`, `/v3/watch`), which every etcd ≥ 3.4 serves on its
//! client port: keys and values base64, 64-bit numbers as strings. It tries the
//! endpoints in turn and sticks to the first that answers. Cluster mode is the only
//! user; nothing here runs on the forwarding thread.

use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// What went wrong talking to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EtcdError {
    /// No endpoint answered (each one's error, last first).
    Unreachable(String),
    /// etcd answered with an error (gRPC code and message).
    Server { code: i64, message: String },
    /// An answer this client does not understand.
    Bad(String),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::Unreachable(e) => write!(f, "etcd unreachable: {e}"),
            EtcdError::Server { code, message } => write!(f, "etcd: {message} (code {code})"),
            EtcdError::Bad(e) => write!(f, "etcd answered something unexpected: {e}"),
        }
    }
}

impl std::error::Error for EtcdError {}

pub(crate) type Result<T> = std::result::Result<T, EtcdError>;

/// Keys read per request by [`Etcd::range_prefix`].
const PAGE: usize = 5000;

/// The largest answer read (a page of keys is far less).
const MAX_ANSWER: u64 = 64 << 20;

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kv {
    /// The key as text (a key that is not UTF-8 gets replacement characters: see `raw`).
    pub(crate) key: String,
    /// The key's bytes as etcd holds them.
    pub(crate) raw: Vec<u8>,
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: i64,
    pub(crate) mod_revision: i64,
    pub(crate) lease: i64,
}

/// A change a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Put(Kv),
    /// The key (its value is gone).
    Delete(String),
}

/// Why a watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchEnd {
    /// The revision asked for is compacted away: read everything again.
    Compacted(i64),
    /// The connection broke or etcd cancelled the watch.
    Broken(String),
}

/// A client for the etcd cluster at `endpoints` (`http://HOST:PORT`).
#[derive(Debug)]
pub(crate) struct Etcd {
    endpoints: Vec<String>,
    /// The endpoint that answered last.
    current: AtomicUsize,
    agent: ureq::Agent,
    /// For watches: no limit on reading the (endless) body.
    watch_agent: ureq::Agent,
}

impl Etcd {
    /// A client; `endpoints` are `http://HOST:PORT` (https is not supported).
    pub(crate) fn new(endpoints: &[String]) -> std::result::Result<Etcd, String> {
        if endpoints.is_empty() {
            return Err("--cluster: give at least one etcd endpoint".into());
        }
        let mut eps = Vec::new();
        for e in endpoints {
            let e = e.trim().trim_end_matches('/');
            let rest = e.strip_prefix("http://").ok_or_else(|| {
                format!("--cluster {e}: an http://HOST:PORT URL (https is not supported)")
            })?;
            if rest.is_empty() || rest.contains('/') {
                return Err(format!("--cluster {e}: an http://HOST:PORT URL"));
            }
            eps.push(e.to_owned());
        }
        let agent = |body: Option<Duration>| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(2)))
                .timeout_recv_response(Some(Duration::from_secs(5)))
                .timeout_send_body(Some(Duration::from_secs(5)))
                .timeout_recv_body(body)
                .max_idle_connections_per_host(4)
                .build()
                .into()
        };
        Ok(Etcd {
            endpoints: eps,
            current: AtomicUsize::new(0),
            agent: agent(Some(Duration::from_secs(5))),
            watch_agent: agent(None),
        })
    }

    pub(crate) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// POSTs `body` to `path` at the current endpoint, then the others in turn.
    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            let url = format!("{}{path}", self.endpoints[at]);
            match self.agent.post(&url).send_json(body) {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let v: Value = match resp.body_mut().with_config().limit(MAX_ANSWER).read_json()
                    {
                        Ok(v) => v,
                        // A member without a leader, mid-shutdown, or something else on
                        // that port: try the next.
                        Err(e) => {
                            errors.push(format!("{}: HTTP {status}: {e}", self.endpoints[at]));
                            continue;
                        }
                    };
                    self.current.store(at, Ordering::Relaxed);
                    // A unary call's error is `{"code","message"}`; a streaming call's (a
                    // lease renewal) comes as `{"error":{...}}` with HTTP 200.
                    let err = if v.get("code").is_some() {
                        Some(&v)
                    } else {
                        v.get("error").filter(|e| e.is_object())
                    };
                    if let Some(e) = err {
                        let code = e["code"].as_i64().unwrap_or(2);
                        let message = e["message"].as_str().unwrap_or("").to_owned();
                        // 14: unavailable (no leader, stopping): another member may do.
                        if code == 14 {
                            errors.push(format!("{}: {message}", self.endpoints[at]));
                            continue;
                        }
                        return Err(EtcdError::Server { code, message });
                    }
                    return Ok(v);
                }
                Err(e) => errors.push(format!("{}: {e}", self.endpoints[at])),
            }
        }
        errors.reverse();
        Err(EtcdError::Unreachable(errors.join("; ")))
    }

    /// etcd's Prometheus metrics (`/metrics`) of the endpoint in use, as text.
    pub(crate) fn metrics(&self) -> Result<String> {
        let at = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        let url = format!("{}/metrics", self.endpoints[at]);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| EtcdError::Unreachable(format!("{url}: {e}")))?;
        resp.body_mut()
            .read_to_string()
            .map_err(|e| EtcdError::Bad(format!("{url}: {e}")))
    }

    /// Compacts the store's history up to `rev` (tests: a watch from before it ends).
    #[cfg(test)]
    pub(crate) fn compact(&self, rev: i64) -> Result<()> {
        self.post("/v3/kv/compaction", &json!({"revision": rev.to_string()}))
            .map(drop)
    }

    /// Deletes every key under `prefix`.
    pub(crate) fn delete_prefix(&self, prefix: &str) -> Result<()> {
        self.post(
            "/v3/kv/deleterange",
            &json!({"key": b64(prefix), "range_end": b64_bytes(&prefix_end(prefix))}),
        )
        .map(drop)
    }

    /// Every key under `prefix`, and the store's revision they were read at: read in
    /// pages of [`PAGE`] keys, every page at the first one's revision (one snapshot).
    pub(crate) fn range_prefix(&self, prefix: &str) -> Result<(Vec<Kv>, i64)> {
        let end = b64_bytes(&prefix_end(prefix));
        let mut from = prefix.as_bytes().to_vec();
        let mut rev = 0;
        let mut out = Vec::new();
        loop {
            let mut body =
                json!({"key": b64_bytes(&from), "range_end": end, "limit": PAGE.to_string()});
            if rev != 0 {
                body["revision"] = json!(rev.to_string());
            }
            let v = self.post("/v3/kv/range", &body)?;
            if rev == 0 {
                rev = revision(&v);
            }
            if let Some(Value::Array(a)) = v.get("kvs") {
                for k in a {
                    // What cannot be decoded at all is left out (the watch does so too).
                    if let Ok(k) = kv(k) {
                        out.push(k);
                    }
                }
            }
            match (v["more"].as_bool(), out.last()) {
                (Some(true), Some(last)) => {
                    from = last.raw.clone();
                    from.push(0);
                }
                _ => return Ok((out, rev)),
            }
        }
    }

    /// One key, if it exists.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Kv>> {
        let v = self.post("/v3/kv/range", &json!({"key": b64(key)}))?;
        match v.get("kvs") {
            Some(Value::Array(a)) => a.first().map(kv).transpose(),
            _ => Ok(None),
        }
    }

    /// Sets `key` (bound to `lease` if not 0).
    pub(crate) fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<()> {
        self.post("/v3/kv/put", &op_put_body(key, value, lease))
            .map(drop)
    }

    /// Runs `success` if every compare holds; whether it held.
    pub(crate) fn txn(&self, compare: Vec<Value>, success: Vec<Value>) -> Result<bool> {
        self.txn_rev(compare, success).map(|(ok, _)| ok)
    }

    /// [`Etcd::txn`], with the store's revision after it (a key it put has that one).
    pub(crate) fn txn_rev(&self, compare: Vec<Value>, success: Vec<Value>) -> Result<(bool, i64)> {
        let v = self.post(
            "/v3/kv/txn",
            &json!({"compare": compare, "success": success, "failure": []}),
        )?;
        let ok = v.get("succeeded").and_then(Value::as_bool).unwrap_or(false);
        Ok((ok, revision(&v)))
    }

    /// A new lease of `ttl` seconds; its id.
    pub(crate) fn lease_grant(&self, ttl: u64) -> Result<i64> {
        let v = self.post("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?;
        num(&v["ID"]).ok_or_else(|| EtcdError::Bad(format!("lease grant: {v}")))
    }

    /// Renews lease `id`: its remaining TTL, or `None` when etcd says it has expired
    /// (an answer without a result is an error, never "expired").
    pub(crate) fn lease_keepalive(&self, id: i64) -> Result<Option<i64>> {
        let v = self.post("/v3/lease/keepalive", &json!({"ID": id.to_string()}))?;
        let Some(result) = v.get("result").filter(|r| r.is_object()) else {
            return Err(EtcdError::Bad(format!("lease renewal: {v}")));
        };
        let ttl = num(&result["TTL"]).unwrap_or(0);
        Ok((ttl > 0).then_some(ttl))
    }

    /// Ends lease `id` and deletes its keys (gone already: fine).
    pub(crate) fn lease_revoke(&self, id: i64) -> Result<()> {
        match self.post("/v3/lease/revoke", &json!({"ID": id.to_string()})) {
            Ok(_) => Ok(()),
            Err(EtcdError::Server { code: 5, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Watches every key under `prefix` from revision `from`, calling `each` with each
    /// batch of events (and the revision they bring the store to; first an empty batch
    /// once the watch is made) until it returns false; returns why the watch ended.
    pub(crate) fn watch(
        &self,
        prefix: &str,
        from: i64,
        mut each: impl FnMut(Vec<Event>, i64) -> bool,
    ) -> WatchEnd {
        let body = json!({"create_request": {
            "key": b64(prefix),
            "range_end": b64_bytes(&prefix_end(prefix)),
            "start_revision": from.to_string(),
        }});
        let n = self.endpoints.len();
        let at = self.current.load(Ordering::Relaxed) % n;
        let url = format!("{}/v3/watch", self.endpoints[at]);
        // A member that lost its leader cancels the watch instead of going quiet.
        let resp = match self
            .watch_agent
            .post(&url)
            .header("Grpc-Metadata-hasleader", "true")
            .send_json(&body)
        {
            Ok(r) => r,
            Err(e) => {
                // Another endpoint next time.
                self.current.store((at + 1) % n, Ordering::Relaxed);
                return WatchEnd::Broken(format!("{url}: {e}"));
            }
        };
        let reader = std::io::BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            let line = match line {
                Ok(l) if l.trim().is_empty() => continue,
                Ok(l) => l,
                Err(e) => return WatchEnd::Broken(format!("{url}: {e}")),
            };
            let v: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => return WatchEnd::Broken(format!("{url}: bad watch answer: {e}")),
            };
            if v.get("error").is_some() {
                return WatchEnd::Broken(format!("{url}: {}", v["error"]));
            }
            let r = &v["result"];
            if let Some(c) = num(&r["compact_revision"]).filter(|c| *c > 0) {
                return WatchEnd::Compacted(c);
            }
            if r["canceled"].as_bool() == Some(true) {
                return WatchEnd::Broken(format!("{url}: watch cancelled"));
            }
            let mut events = Vec::new();
            if let Some(Value::Array(evs)) = r.get("events") {
                for e in evs {
                    let Ok(k) = kv(&e["kv"]) else { continue };
                    if e["type"].as_str() == Some("DELETE") {
                        events.push(Event::Delete(k.key));
                    } else {
                        events.push(Event::Put(k));
                    }
                }
            }
            // The first answer (the watch made) comes with no events.
            if !each(events, revision(r)) {
                return WatchEnd::Broken("stopped".into());
            }
        }
        WatchEnd::Broken(format!("{url}: the watch stream ended"))
    }
}

/// A compare for a txn: `key` does not exist.
pub(crate) fn cmp_absent(key: &str) -> Value {
    json!({"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
}

/// A compare for a txn: `key` was last changed at revision `rev` (0: does not exist).
pub(crate) fn cmp_unchanged(key: &str, rev: i64) -> Value {
    json!({"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()})
}

/// A compare for a txn: `key` is bound to `lease`.
pub(crate) fn cmp_lease(key: &str, lease: i64) -> Value {
    json!({"key": b64(key), "target": "LEASE", "result": "EQUAL", "lease": lease.to_string()})
}

/// A txn operation: put.
pub(crate) fn op_put(key: &str, value: &[u8], lease: i64) -> Value {
    json!({"request_put": op_put_body(key, value, lease)})
}

/// A txn operation: delete every key under `prefix`.
pub(crate) fn op_delete_prefix(prefix: &str) -> Value {
    json!({"request_delete_range": {"key": b64(prefix), "range_end": b64_bytes(&prefix_end(prefix))}})
}

/// A txn operation: delete one key.
pub(crate) fn op_delete(key: &str) -> Value {
    json!({"request_delete_range": {"key": b64(key)}})
}

fn op_put_body(key: &str, value: &[u8], lease: i64) -> Value {
    let mut v = json!({"key": b64(key), "value": b64_bytes(value)});
    if lease != 0 {
        v["lease"] = json!(lease.to_string());
    }
    v
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

fn b64_bytes(b: &[u8]) -> String {
    B64.encode(b)
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A 64-bit number, as the gateway writes them (a string) or as a JSON number.
fn num(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn revision(v: &Value) -> i64 {
    num(&v["header"]["revision"]).unwrap_or(0)
}

fn kv(v: &Value) -> Result<Kv> {
    let bytes = |field: &str| -> Result<Vec<u8>> {
        match v.get(field).and_then(Value::as_str) {
            Some(s) => B64
                .decode(s)
                .map_err(|e| EtcdError::Bad(format!("{field}: {e}"))),
            None => Ok(Vec::new()),
        }
    };
    let raw = bytes("key")?;
    Ok(Kv {
        key: String::from_utf8_lossy(&raw).into_owned(),
        raw,
        value: bytes("value")?,
        create_revision: num(&v["create_revision"]).unwrap_or(0),
        mod_revision: num(&v["mod_revision"]).unwrap_or(0),
        lease: num(&v["lease"]).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("/vbridge/"), b"/vbridge0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), vec![b'a', 0x80]);
    }

    #[test]
    fn kv_reads_the_gateway_form() {
        let v = json!({"key":"L3ZicmlkZ2UveA==","create_revision":"2","mod_revision":"3",
            "version":"1","value":"aGVsbG8=","lease":"77"});
        let k = kv(&v).unwrap();
        assert_eq!(k.key, "/vbridge/x");
        assert_eq!(k.value, b"hello");
        assert_eq!((k.create_revision, k.mod_revision, k.lease), (2, 3, 77));
        assert!(kv(&json!({"key": "%%%"})).is_err());
        let k = kv(&json!({"key": "/w==", "value": ""})).unwrap();
        assert_eq!(k.raw, [0xff]);
        assert_eq!(k.key, "\u{fffd}");
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(Etcd::new(&[]).is_err());
        assert!(Etcd::new(&["https://x:2379".into()]).is_err());
        assert!(Etcd::new(&["http://x:2379/v3".into()]).is_err());
        let e = Etcd::new(&["http://127.0.0.1:2379/".into()]).unwrap();
        assert_eq!(e.endpoints(), ["http://127.0.0.1:2379"]);
    }
}
