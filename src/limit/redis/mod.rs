//! Fixed and sliding windows in Redis, shared by every replica.
//!
//! One Lua script reads and updates all of a key's windows and its `block` lockout in
//! one round trip, atomically, so a limit of N admits exactly N across replicas. Each
//! fixed window instance is its own counter (`kg:{KEY}:minute:<window start>`) that
//! expires with its window (plus a second of slack for clock skew between replicas);
//! a sliding window is one hash of 23 small fields (`kg:{KEY}:s:minute`, the ring of
//! [`super::sliding`]) that expires a window and a bucket after its last count;
//! nothing grows without bound. The `{KEY}` hash tag puts all of one key's counters in one Redis
//! Cluster slot, so the multi-key script stays atomic on a cluster.
//!
//! Connections are multiplexed (one connection pipelines every request of a thread),
//! and every call is bounded by `rate_limit.redis_timeout`. A failed call marks the
//! backend down and starts a reconnect probe with backoff; while it is down, calls
//! fail at once (no request waits on a dead Redis) and [`super::FallbackLimiter`]
//! decides.

use super::sliding;
use super::window::{decision_from_counts, LimitDecision, Window, WindowLimit};
use super::{LimitError, Limiter};
use crate::clock::Clock;
use crate::domain::Algorithm;
use crate::obs::metrics;
use async_trait::async_trait;
use dashmap::DashMap;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Script};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Where the counters live, parsed from `rate_limit.redis_url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: `redis://[user:pass@]host:port[/db]`.
    Single(String),
    /// A cluster: `redis+cluster://[user:pass@]host:port,host:port,...`.
    Cluster(Vec<String>),
    /// Sentinels watching a master:
    /// `redis+sentinel://[user:pass@]host:port,host:port/MASTER_NAME[/db]`.
    Sentinel {
        /// `redis://` URLs of the sentinels.
        sentinels: Vec<String>,
        /// The monitored master's name.
        master: String,
        /// Credentials for the master, from the URL's user info.
        userinfo: Option<String>,
        /// Database number on the master.
        db: i64,
    },
}

const SCHEMES: &str = "must start with redis://, rediss://, redis+cluster://, rediss+cluster://, redis+sentinel:// or rediss+sentinel://";

impl RedisTarget {
    /// True when the URL asks for TLS.
    pub fn tls(&self) -> bool {
        match self {
            RedisTarget::Single(url) => url.starts_with("rediss://"),
            // `rediss+sentinel://` makes `rediss://` sentinels; the master follows them.
            RedisTarget::Cluster(nodes)
            | RedisTarget::Sentinel {
                sentinels: nodes, ..
            } => nodes.iter().any(|n| n.starts_with("rediss://")),
        }
    }
}

/// Certificates for TLS to Redis (`rate_limit.redis_tls`), read at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisCerts {
    /// PEM roots the server's certificate must chain to; the system's when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key, for servers that require one.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisCerts {
    /// Reads the files of `rate_limit.redis_tls`; an error names the file.
    /// Each file is read once and checked before the Redis client sees it.
    pub fn load(config: &crate::config::RedisTlsConfig) -> Result<Self, String> {
        use crate::net::backend_tls::{certificates_in, private_key_in, read_file};
        let ca_pem = match &config.ca_file {
            Some(path) => {
                let pem = read_file(path)?;
                certificates_in(&pem, path)?;
                Some(pem)
            }
            None => None,
        };
        let client = match (&config.cert_file, &config.key_file) {
            (Some(cert), Some(key)) => {
                let (cert_pem, key_pem) = (read_file(cert)?, read_file(key)?);
                certificates_in(&cert_pem, cert)?;
                private_key_in(&key_pem, key)?;
                Some((cert_pem, key_pem))
            }
            (None, None) => None,
            _ => return Err("cert_file and key_file go together".into()),
        };
        Ok(RedisCerts { ca_pem, client })
    }

    /// The Redis client's form; `None` when the defaults (system roots, no client
    /// certificate) apply.
    fn to_redis(&self) -> Option<redis::TlsCertificates> {
        if self.ca_pem.is_none() && self.client.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self.client.clone().map(|(client_cert, client_key)| {
                redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }
            }),
            root_cert: self.ca_pem.clone(),
        })
    }
}

impl RedisTarget {
    /// Parses and checks a URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
            return Ok(RedisTarget::Single(url.to_string()));
        }
        let (scheme, rest) = url.split_once("://").ok_or(SCHEMES)?;
        let node_scheme = if scheme.starts_with("rediss+") {
            "rediss"
        } else {
            "redis"
        };
        let scheme = scheme.replacen("rediss+", "redis+", 1);
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, rest),
        };
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.trim().is_empty())
            .map(|h| match &userinfo {
                Some(u) if scheme == "redis+cluster" => format!("{node_scheme}://{u}@{}", h.trim()),
                _ => format!("{node_scheme}://{}", h.trim()),
            })
            .collect();
        if nodes.is_empty() {
            return Err("names no host".into());
        }
        for n in &nodes {
            redis::Client::open(n.as_str()).map_err(|e| format!("invalid node `{n}`: {e}"))?;
        }
        match scheme.as_str() {
            "redis+cluster" => {
                if !path.is_empty() {
                    return Err("a cluster URL takes no database (clusters have only db 0)".into());
                }
                Ok(RedisTarget::Cluster(nodes))
            }
            "redis+sentinel" => {
                let (master, db) = path.split_once('/').unwrap_or((path, "0"));
                if master.is_empty() {
                    return Err("a sentinel URL needs the master name: redis+sentinel://host:26379/mymaster".into());
                }
                let db = db
                    .parse()
                    .map_err(|_| format!("invalid database number `{db}`"))?;
                Ok(RedisTarget::Sentinel {
                    sentinels: nodes,
                    master: master.to_string(),
                    userinfo,
                    db,
                })
            }
            _ => Err(SCHEMES.into()),
        }
    }
}

/// An open connection of either kind.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Opens a connection to `target` (on the current runtime).
async fn open(
    target: &RedisTarget,
    certs: &RedisCerts,
    timeout: Duration,
) -> redis::RedisResult<Conn> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
        .set_response_timeout(Some(timeout));
    match target {
        RedisTarget::Single(url) => {
            let client = match certs.to_redis() {
                Some(c) => redis::Client::build_with_tls(url.as_str(), c)?,
                None => redis::Client::open(url.as_str())?,
            };
            Ok(Conn::Single(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            ))
        }
        RedisTarget::Cluster(nodes) => {
            let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(timeout.max(Duration::from_millis(500)))
                .response_timeout(timeout)
                .retries(1);
            if let Some(c) = certs.to_redis() {
                builder = builder.certs(c);
            }
            let client = builder.build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
        RedisTarget::Sentinel {
            sentinels,
            master,
            userinfo,
            db,
        } => {
            use redis::IntoConnectionInfo;
            let addrs = sentinels
                .iter()
                .map(|s| s.as_str().into_connection_info().map(|i| i.addr().clone()))
                .collect::<redis::RedisResult<Vec<_>>>()?;
            let mut builder = redis::sentinel::SentinelClientBuilder::new(
                addrs,
                master,
                redis::sentinel::SentinelServerType::Master,
            )?
            .set_client_to_redis_db(*db);
            if let Some(u) = userinfo {
                let (user, pass) = u.split_once(':').unwrap_or(("", u.as_str()));
                if !user.is_empty() {
                    builder = builder.set_client_to_redis_username(user);
                }
                builder = builder.set_client_to_redis_password(pass);
            }
            if target.tls() {
                builder = builder
                    .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                    .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
                if let Some(c) = certs.to_redis() {
                    builder = builder
                        .set_client_to_redis_certificates(c.clone())
                        .set_client_to_sentinel_certificates(c);
                }
            }
            let mut client = builder.build()?;
            Ok(Conn::Single(
                client.get_async_connection_with_config(&config).await?,
            ))
        }
    }
}

/// Opens a connection, checks it answers and loads the script (so the first request
/// after a recovery does not pay for it).
async fn probe(
    target: &RedisTarget,
    certs: &RedisCerts,
    script: &Script,
    timeout: Duration,
) -> redis::RedisResult<()> {
    let run = async {
        match open(target, certs, timeout).await? {
            Conn::Single(mut c) => script.prepare_invoke().load_async(&mut c).await.map(drop),
            Conn::Cluster(mut c) => {
                // Scripts load per node; EVALSHA falls back to EVAL where missing.
                redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .map(drop)
            }
        }
    };
    match tokio::time::timeout(timeout.max(Duration::from_millis(500)) * 2, run).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Redis did not answer in time",
        ))),
    }
}

/// The script behind every call. KEYS[1] is the block hash, KEYS[2..] the windows
/// (a fixed window's counter for its current instance, a sliding window's ring
/// hash); ARGV is mode (`check`, `peek`, `record`, `release`), now (ms), block (ms),
/// buckets per sliding window, then per window: limit, ttl ms, kind (0 fixed, 1
/// sliding), and the caller's current bucket (sliding). Returns {admitted 0/1,
/// blocked-until ms, then per window: count, free bucket (sliding; 0 when fixed)}.
///
/// A ring hash holds field `n` (its newest bucket), `t` (the sum of its counts) and
/// one count per slot (`bucket % (buckets + 1)`), as [`super::sliding::Ring`] does
/// in memory, so a decision in the current bucket reads the total without summing
/// the buckets, and writes two fields; a ring
/// whose newest bucket is ahead of the caller's is read at that bucket (a replica
/// whose clock is ahead is never out-counted). `record` and `release` take fixed
/// windows only.
const SCRIPT: &str = r#"
local mode = ARGV[1]
local now = tonumber(ARGV[2])
local block = tonumber(ARGV[3])
local B = tonumber(ARGV[4])
local S = B + 1
local n = #KEYS - 1
local function arg(i, j) return tonumber(ARGV[4 + 4 * (i - 1) + j]) end
local counts, rings = {}, {}
-- A slot's stored count (all slots fetched on the first one not yet read).
local function slot(r, s)
  local got = r.slots[s]
  if got == nil then
    local fields = {}
    for x = 0, B do fields[x + 1] = tostring(x) end
    local all = redis.call('HMGET', r.key, unpack(fields))
    for x = 0, B do r.slots[x] = all[x + 1] or false end
    got = r.slots[s]
  end
  return tonumber(got or '0')
end
-- A ring as stored, read at bucket k (the later of the caller's and its newest);
-- sum: the window's count over k-B..k. Only n, t and the slots a decision touches
-- are read (in the current bucket: its own slot and the oldest); the rest on first
-- need, in one more HMGET. Buckets after the stored newest start over at zero:
-- their slots' old counts leave the running total t.
local function read_ring(i)
  local key = KEYS[i + 1]
  local caller = arg(i, 4)
  local v = redis.call('HMGET', key, 'n', 't', tostring(caller % S), tostring((caller - B) % S))
  local newest = tonumber(v[1] or '-1')
  local k = math.max(caller, newest)
  local r = {key = key, k = k, newest = newest, added = 0, sum = 0, slots = {}}
  r.slots[caller % S] = v[3]
  r.slots[(caller - B) % S] = v[4]
  if newest < 0 or k - newest > B then
    r.newest = -1
    return r
  end
  local sum = tonumber(v[2] or '0')
  for b = newest + 1, k do sum = sum - slot(r, b % S) end
  r.sum = sum
  return r
end
-- The count of bucket b (k-B <= b <= k) as the ring stands now.
local function bucket_count(r, b)
  local c = 0
  if b == r.k then c = r.added end
  if r.newest >= 0 and b <= r.newest then c = c + slot(r, b % S) end
  return c
end
-- Full: the bucket whose leaving makes room under limit; with room: the newest
-- bucket holding a request (sliding.rs, Ring::free_bucket).
local function free_bucket(r, limit)
  if r.sum < limit then
    for b = r.k, r.k - B, -1 do
      if bucket_count(r, b) > 0 then return b end
    end
    return r.k
  end
  local need = r.sum + 1 - limit
  local running = 0
  for b = r.k - B, r.k do
    running = running + bucket_count(r, b)
    if running >= need then return b end
  end
  return r.k
end
local function count_ring(i, r)
  local args = {'n', r.k, 't', r.sum + 1, tostring(r.k % S), bucket_count(r, r.k) + 1}
  if r.newest < r.k then
    for b = math.max(r.newest + 1, r.k - B), r.k - 1 do
      args[#args + 1] = tostring(b % S)
      args[#args + 1] = 0
    end
  end
  redis.call('HSET', KEYS[i + 1], unpack(args))
  -- The first count in a bucket sets the expiry: the ring's newest request leaves
  -- within a window and a bucket of its bucket's start, so later counts in the same
  -- bucket need not push it out.
  if r.newest < r.k then redis.call('PEXPIRE', KEYS[i + 1], arg(i, 2)) end
  r.added = 1
  r.sum = r.sum + 1
  counts[i] = r.sum
end
local function reply(admitted, blocked_until)
  local out = {admitted, blocked_until}
  for i = 1, n do
    out[#out + 1] = counts[i]
    if rings[i] then out[#out + 1] = free_bucket(rings[i], arg(i, 1)) else out[#out + 1] = 0 end
  end
  return out
end
local function count_all()
  for i = 1, n do
    if rings[i] then count_ring(i, rings[i]) else
      counts[i] = redis.call('INCR', KEYS[i + 1])
      if counts[i] == 1 then redis.call('PEXPIRE', KEYS[i + 1], arg(i, 2)) end
    end
  end
end
if mode == 'record' then
  count_all()
  return reply(1, 0)
end
if mode == 'release' then
  for i = 1, n do
    local c = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
    if c > 0 then c = redis.call('DECR', KEYS[i + 1]) end
    counts[i] = c
  end
  return reply(1, 0)
end
for i = 1, n do
  if arg(i, 3) == 1 then
    rings[i] = read_ring(i)
    counts[i] = rings[i].sum
  else
    counts[i] = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  end
end
local b = redis.call('HMGET', KEYS[1], 'until', 'origin')
local blocked_until = tonumber(b[1] or '0')
if blocked_until > now then return reply(0, blocked_until) end
local exhausted = 0
for i = 1, n do
  if counts[i] >= arg(i, 1) then exhausted = i end
end
if mode == 'peek' then
  if exhausted > 0 then return reply(0, blocked_until) end
  return reply(1, blocked_until)
end
if exhausted > 0 then
  local origin = KEYS[exhausted + 1]
  if rings[exhausted] then origin = origin .. ':' .. free_bucket(rings[exhausted], arg(exhausted, 1)) end
  if block > 0 and b[2] ~= origin then
    blocked_until = now + block
    redis.call('HSET', KEYS[1], 'until', blocked_until, 'origin', origin)
    redis.call('PEXPIRE', KEYS[1], math.max(block, arg(exhausted, 2)))
  end
  return reply(0, blocked_until)
end
count_all()
return reply(1, 0)
"#;

/// Connections by the thread that opened them (see [`RedisLimiter`]).
type PerThread = DashMap<ThreadId, Arc<OnceCell<Conn>>>;

/// Counters in Redis.
///
/// Each thread that calls gets its own multiplexed connection, opened on that thread's
/// runtime: the proxy's workers then talk to Redis without handing every request to
/// another thread and back (two thread wake-ups per request, measured at ~6 µs of
/// CPU per request on this machine's 2 cores). A failed call drops every connection,
/// marks the backend down, and a probe on the backend runtime reconnects with backoff;
/// until it succeeds calls fail at once.
pub struct RedisLimiter {
    target: RedisTarget,
    certs: RedisCerts,
    conns: Arc<PerThread>,
    up: Arc<AtomicBool>,
    probing: Arc<AtomicBool>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    script: Script,
}

impl RedisLimiter {
    /// A limiter on `target`. Probes it once (waiting at most a couple of timeouts)
    /// to report its state; starts even when Redis is down: the probe keeps trying
    /// and calls fail fast meanwhile.
    pub fn connect(
        target: RedisTarget,
        certs: RedisCerts,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        // The Redis client builds its rustls config on the process-wide provider.
        pingora::tls::install_default_crypto_provider();
        let limiter = RedisLimiter {
            target,
            certs,
            conns: Arc::new(DashMap::new()),
            up: Arc::new(AtomicBool::new(false)),
            probing: Arc::new(AtomicBool::new(false)),
            timeout,
            clock,
            script: Script::new(SCRIPT),
        };
        let (target, certs, script) = (
            limiter.target.clone(),
            limiter.certs.clone(),
            limiter.script.clone(),
        );
        match crate::net::io_runtime::block_on(async move {
            probe(&target, &certs, &script, timeout).await
        }) {
            Ok(Ok(())) => {
                limiter.up.store(true, Ordering::Release);
                metrics::RATELIMIT_DEGRADED.set(0);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "rate-limit backend (Redis) unreachable at start; limits are degraded until it answers");
                limiter.mark_down();
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot probe Redis");
                limiter.mark_down();
            }
        }
        limiter
    }

    /// True while Redis is answering.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// This thread's connection, opened on first use.
    async fn conn(&self) -> Result<Conn, LimitError> {
        if !self.is_up() {
            return Err(LimitError::Backend(
                "Redis unreachable (reconnecting)".into(),
            ));
        }
        let cell = self
            .conns
            .entry(std::thread::current().id())
            .or_default()
            .clone();
        let open = cell.get_or_try_init(|| open(&self.target, &self.certs, self.timeout));
        match tokio::time::timeout(self.timeout.max(Duration::from_millis(500)), open).await {
            Ok(Ok(c)) => Ok(c.clone()),
            Ok(Err(e)) => {
                self.mark_down();
                Err(LimitError::Backend(e.to_string()))
            }
            Err(_) => {
                self.mark_down();
                Err(LimitError::Backend("no connection to Redis in time".into()))
            }
        }
    }

    /// Drops every connection and starts the reconnect probe (once).
    fn mark_down(&self) {
        self.up.store(false, Ordering::Release);
        self.conns.clear();
        metrics::RATELIMIT_DEGRADED.set(1);
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!("rate-limit backend (Redis) failing; reconnecting with backoff");
        let (target, certs, script, timeout) = (
            self.target.clone(),
            self.certs.clone(),
            self.script.clone(),
            self.timeout,
        );
        let (up, probing, conns) = (self.up.clone(), self.probing.clone(), self.conns.clone());
        crate::net::io_runtime::handle().spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                tokio::time::sleep(backoff).await;
                match probe(&target, &certs, &script, timeout).await {
                    Ok(()) => {
                        // Connections opened while down may be broken: start afresh.
                        conns.clear();
                        up.store(true, Ordering::Release);
                        probing.store(false, Ordering::Release);
                        metrics::RATELIMIT_DEGRADED.set(0);
                        tracing::info!(
                            "rate-limit backend (Redis) reachable again; shared limits restored"
                        );
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "Redis still unreachable"),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }

    fn keys(key: &str, limits: &[WindowLimit], now_ms: u64) -> Vec<String> {
        let mut keys = Vec::with_capacity(limits.len() + 1);
        keys.push(format!("kg:{{{key}}}:b"));
        for l in limits {
            keys.push(match l.algorithm {
                Algorithm::Fixed => format!(
                    "kg:{{{key}}}:{}:{}",
                    l.window.name(),
                    l.window.start(now_ms) / 1000
                ),
                Algorithm::Sliding => format!("kg:{{{key}}}:s:{}", l.window.name()),
            });
        }
        keys
    }

    async fn call(
        &self,
        mode: &str,
        key: &str,
        limits: &[WindowLimit],
        block: Duration,
    ) -> Result<LimitDecision, LimitError> {
        let mut conn = self.conn().await?;
        let now = self.clock.now_ms();
        let mut inv = self.script.prepare_invoke();
        for k in Self::keys(key, limits, now) {
            inv.key(k);
        }
        inv.arg(mode)
            .arg(now)
            .arg(block.as_millis() as u64)
            .arg(sliding::BUCKETS);
        for l in limits {
            // Counters outlive their window by a second: replicas' clocks differ a little.
            match l.algorithm {
                Algorithm::Fixed => {
                    let ttl = l.window.reset_at(now) - now + 1000;
                    inv.arg(l.limit).arg(ttl).arg(0).arg(0);
                }
                Algorithm::Sliding => {
                    let ttl = l.window.len_ms() + sliding::bucket_ms(l.window) + 1000;
                    inv.arg(l.limit)
                        .arg(ttl)
                        .arg(1)
                        .arg(sliding::bucket(l.window, now));
                }
            }
        }
        let run = async {
            match &mut conn {
                Conn::Single(c) => inv.invoke_async::<Vec<i64>>(c).await,
                Conn::Cluster(c) => inv.invoke_async::<Vec<i64>>(c).await,
            }
        };
        let reply = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
                {
                    self.mark_down();
                }
                return Err(LimitError::Backend(e.to_string()));
            }
            Err(_) => {
                self.mark_down();
                return Err(LimitError::Backend(format!(
                    "Redis did not answer within {:?}",
                    self.timeout
                )));
            }
        };
        if reply.len() != 2 * limits.len() + 2 {
            return Err(LimitError::Backend(format!(
                "unexpected reply from the rate-limit script: {reply:?}"
            )));
        }
        let standing: Vec<(u64, u64)> = limits
            .iter()
            .zip(reply[2..].chunks_exact(2))
            .map(|(l, pair)| {
                let count = pair[0].max(0) as u64;
                match l.algorithm {
                    Algorithm::Fixed => (count, 0),
                    Algorithm::Sliding => (
                        count,
                        sliding::leaves_at_ms(l.window, pair[1].max(0) as u64),
                    ),
                }
            })
            .collect();
        Ok(decision_from_counts(
            limits,
            &standing,
            reply[0] == 1,
            reply[1].max(0) as u64,
            now,
        ))
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn check(
        &self,
        key: &str,
        limits: &[WindowLimit],
        block: Duration,
    ) -> Result<LimitDecision, LimitError> {
        self.call("check", key, limits, block).await
    }

    async fn peek(&self, key: &str, limits: &[WindowLimit]) -> Result<LimitDecision, LimitError> {
        self.call("peek", key, limits, Duration::ZERO).await
    }

    async fn record(&self, key: &str, window: Window) -> Result<(), LimitError> {
        let limits = [WindowLimit::fixed(window, 0)];
        self.call("record", key, &limits, Duration::ZERO)
            .await
            .map(drop)
    }

    async fn release(&self, key: &str, window: Window) -> Result<(), LimitError> {
        let limits = [WindowLimit::fixed(window, 0)];
        self.call("release", key, &limits, Duration::ZERO)
            .await
            .map(drop)
    }

    async fn ready(&self) -> Result<(), LimitError> {
        let mut conn = self.conn().await?;
        let ping = async {
            match &mut conn {
                Conn::Single(c) => redis::cmd("PING").query_async::<String>(c).await,
                Conn::Cluster(c) => redis::cmd("PING").query_async::<String>(c).await,
            }
        };
        match tokio::time::timeout(self.timeout.max(Duration::from_millis(500)), ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                self.mark_down();
                Err(LimitError::Backend(e.to_string()))
            }
            Err(_) => {
                self.mark_down();
                Err(LimitError::Backend("Redis did not answer PING".into()))
            }
        }
    }

    fn degraded(&self) -> bool {
        !self.is_up()
    }
}

#[cfg(test)]
mod tests;
