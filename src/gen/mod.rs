//! `pullstats gen`: a seeded, deterministic generator of realistic registry
//! request events, the data for demos, tests and benchmarks.
//!
//! Traffic is a sequence of *scenarios* (one pull, version check, rejected
//! request, push, …) by clients picked with Zipf-like popularity on images
//! picked the same way; each scenario is the request sequence the client
//! really sends (see [`clients::Behaviour`]). Requests are emitted in event
//! time order through a small heap of follow-ups, so memory is bounded by the
//! number of scenarios in flight (a few seconds of traffic), not by `--events`.
//!
//! The generator knows what it generated: [`GenStats`] holds the intended
//! action count per kind, which ingest must reproduce exactly. To make that
//! exact, one client (IP + user agent) never touches one repository twice
//! within [`SEPARATION`], so scenarios cannot merge under any session gap
//! below it.

pub mod catalog;
pub mod clients;
pub mod rng;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::net::IpAddr;

use chrono::{DateTime, NaiveDate};
use serde::Serialize;

use crate::event::{ActionKind, Micros};
use catalog::{Catalog, Image};
use clients::{Behaviour, Client, ClientPool};
use rng::{mix_all, Rng, Zipf};

/// No client re-visits a repository within this much event time.
pub const SEPARATION_MICROS: Micros = 60_000_000;
const CLIENT_POOL: usize = 20_000;
const MAX_SCENARIO_EVENTS: u64 = 6;
const MICROS_PER_DAY: i64 = 86_400_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One flat JSON event per line (spec §1).
    Flat,
    /// The distribution registry's notification envelope, one per line.
    Distribution,
}

#[derive(Debug, Clone)]
pub struct GenConfig {
    pub events: u64,
    pub seed: u64,
    pub start: NaiveDate,
    pub days: u32,
    pub format: Format,
    pub bad_ratio: f64,
}

/// What was generated, line by line and by intended outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct GenStats {
    pub lines: u64,
    pub bad_lines: u64,
    /// 2xx manifest requests: the ones that form actions.
    pub manifest_requests: u64,
    pub blob_requests: u64,
    /// Non-2xx manifest requests.
    pub rejected_requests: u64,
    /// Pushes and other non-pull requests.
    pub not_pull_requests: u64,
    pub pull_by_tag: u64,
    pub pull_by_digest: u64,
    pub version_check: u64,
}

impl GenStats {
    pub fn actions(&self) -> u64 {
        self.pull_by_tag + self.pull_by_digest + self.version_check
    }

    fn count_action(&mut self, kind: ActionKind) {
        match kind {
            ActionKind::PullByTag => self.pull_by_tag += 1,
            ActionKind::PullByDigest => self.pull_by_digest += 1,
            ActionKind::VersionCheck => self.version_check += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    IndexOrManifest,
    PlatformManifest,
    Blob,
}

#[derive(Debug, Clone)]
struct Req {
    ts: Micros,
    seq: u64,
    head: bool,
    reference: String,
    digest: Option<String>,
    status: u16,
    image: std::rc::Rc<Image>,
    ip: IpAddr,
    user_agent: &'static str,
    served: Served,
    push: bool,
}

impl PartialEq for Req {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl Eq for Req {}
impl PartialOrd for Req {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Req {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(o.ts, o.seq))
    }
}

/// Streams generated lines; see the module docs.
pub struct Generator {
    cfg: GenConfig,
    rng: Rng,
    catalog: Catalog,
    pool: ClientPool,
    client_zipf: Zipf,
    start_us: Micros,
    span_us: Micros,
    scheduled: u64,
    seq: u64,
    fresh_client: u64,
    heap: BinaryHeap<Reverse<Req>>,
    busy: HashMap<u64, Micros>,
    stats: GenStats,
}

impl Generator {
    pub fn new(cfg: GenConfig) -> Self {
        let start_us = cfg
            .start
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_micros())
            .unwrap_or(0);
        Self {
            rng: Rng::new(cfg.seed),
            catalog: Catalog::new(cfg.seed),
            pool: ClientPool::new(cfg.seed),
            client_zipf: Zipf::new(CLIENT_POOL, 0.9),
            start_us,
            span_us: i64::from(cfg.days.max(1)) * MICROS_PER_DAY,
            scheduled: 0,
            seq: 0,
            fresh_client: CLIENT_POOL as u64,
            heap: BinaryHeap::new(),
            busy: HashMap::new(),
            stats: GenStats::default(),
            cfg,
        }
    }

    pub fn stats(&self) -> &GenStats {
        &self.stats
    }

    /// Writes the next line (with its newline) to `out`; false when done.
    pub fn write_next(&mut self, out: &mut Vec<u8>) -> bool {
        if self.stats.lines == self.cfg.events {
            return false;
        }
        // Each line is bad with probability `bad_ratio`, while budget remains.
        if self.scheduled < self.cfg.events && self.rng.chance(self.cfg.bad_ratio) {
            self.scheduled += 1;
            let clock = self.clock();
            self.render_bad(clock, out);
            self.stats.lines += 1;
            self.stats.bad_lines += 1;
            return true;
        }
        loop {
            let clock = self.clock();
            let due = self.heap.peek().is_some_and(|Reverse(r)| r.ts <= clock);
            if due || self.scheduled == self.cfg.events {
                if let Some(Reverse(req)) = self.heap.pop() {
                    self.render(&req, out);
                    self.stats.lines += 1;
                    return true;
                }
            }
            if self.scheduled == self.cfg.events {
                // Budget spent on bad lines; nothing left to emit.
                return false;
            }
            self.schedule_scenario(clock);
        }
    }

    /// Event time of the next scenario: spread evenly over the span.
    fn clock(&self) -> Micros {
        let frac = self.scheduled as f64 / self.cfg.events.max(1) as f64;
        self.start_us + (self.span_us as f64 * frac) as Micros
    }

    fn schedule_scenario(&mut self, clock: Micros) {
        let remaining = self.cfg.events - self.scheduled;
        let image = std::rc::Rc::new(self.catalog.pick(&mut self.rng));
        let client = self.pick_client(&image, clock);
        let mut plan = Plan::new(clock, client, image);
        let kind = if remaining < MAX_SCENARIO_EVENTS {
            plan.single(&mut self.rng)
        } else {
            plan.scenario(&mut self.rng, self.cfg.format == Format::Flat)
        };
        if let Some(kind) = kind {
            self.stats.count_action(kind);
        }
        for mut req in plan.reqs {
            self.seq += 1;
            req.seq = self.seq;
            self.scheduled += 1;
            self.count_request(&req);
            self.heap.push(Reverse(req));
        }
    }

    fn count_request(&mut self, r: &Req) {
        let s = &mut self.stats;
        match (r.push, r.served, r.status) {
            (true, _, _) => s.not_pull_requests += 1,
            (_, Served::Blob, _) => s.blob_requests += 1,
            (_, _, 200..=299) => s.manifest_requests += 1,
            _ => s.rejected_requests += 1,
        }
    }

    /// A popular-weighted client that has not touched this repository within
    /// [`SEPARATION_MICROS`].
    fn pick_client(&mut self, image: &Image, clock: Micros) -> Client {
        if self.busy.len() > 4096 && self.scheduled.is_multiple_of(1024) {
            self.busy.retain(|_, t| *t + SEPARATION_MICROS > clock);
        }
        let repo_key = mix_all(&[str_hash(&image.namespace), str_hash(&image.repository)]);
        for attempt in 0..32 {
            let id = if attempt < 16 {
                self.client_zipf.sample(&mut self.rng) as u64
            } else {
                self.fresh_client += 1;
                self.fresh_client
            };
            let client = self.pool.client(id);
            let key = mix_all(&[
                ip_bits(client.ip),
                str_hash(client.kind.user_agent),
                repo_key,
            ]);
            let free = self
                .busy
                .get(&key)
                .is_none_or(|t| *t + SEPARATION_MICROS <= clock);
            if free {
                self.busy.insert(key, clock + 3_000_000);
                return client;
            }
        }
        self.fresh_client += 1;
        self.pool.client(self.fresh_client)
    }

    fn render(&mut self, r: &Req, out: &mut Vec<u8>) {
        let line = match self.cfg.format {
            Format::Flat => flat_line(r, &mut self.rng),
            Format::Distribution => envelope_line(r, &mut self.rng),
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }

    fn render_bad(&mut self, clock: Micros, out: &mut Vec<u8>) {
        let image = std::rc::Rc::new(self.catalog.pick(&mut self.rng));
        let client = self.pool.client(self.rng.below(CLIENT_POOL as u64));
        let mut plan = Plan::new(clock, client, image);
        plan.request(0, true, Ref::Tag, Served::IndexOrManifest, 200);
        let req = &plan.reqs[0];
        let good = match self.cfg.format {
            Format::Flat => flat_line(req, &mut self.rng),
            Format::Distribution => envelope_line(req, &mut self.rng),
        };
        out.extend_from_slice(&corrupt(&good, req, self.rng.below(13)));
        out.push(b'\n');
    }
}

fn str_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn ip_bits(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            mix_all(&[(b >> 64) as u64, b as u64])
        }
    }
}

#[derive(Clone, Copy)]
enum Ref {
    Tag,
    Top,
    Platform(usize),
}

/// The requests of one scenario, built before they are scheduled.
struct Plan {
    t: Micros,
    client: Client,
    image: std::rc::Rc<Image>,
    reqs: Vec<Req>,
}

impl Plan {
    fn new(t: Micros, client: Client, image: std::rc::Rc<Image>) -> Self {
        Self {
            t,
            client,
            image,
            reqs: Vec::new(),
        }
    }

    fn request(&mut self, after_us: Micros, head: bool, r: Ref, served: Served, status: u16) {
        self.t += after_us;
        let img = &self.image;
        let (reference, digest) = match r {
            Ref::Tag => (img.tag.clone(), img.top_digest.clone()),
            Ref::Top => (img.top_digest.clone(), img.top_digest.clone()),
            Ref::Platform(p) => {
                let d = img
                    .platform_digests
                    .get(p)
                    .unwrap_or(&img.top_digest)
                    .clone();
                (d.clone(), d)
            }
        };
        let ok = (200..300).contains(&status);
        self.reqs.push(Req {
            ts: self.t,
            seq: 0,
            head,
            reference,
            digest: ok.then_some(digest),
            status,
            image: img.clone(),
            ip: self.client.ip,
            user_agent: self.client.kind.user_agent,
            served,
            push: false,
        });
    }

    /// A follow-up delay: milliseconds, occasionally a second or two.
    fn delay(rng: &mut Rng) -> Micros {
        if rng.chance(0.05) {
            500_000 + rng.below(1_500_000) as Micros
        } else {
            2_000 + rng.below(150_000) as Micros
        }
    }

    /// A follow-up GET of the digest the tag resolved to (index or manifest).
    fn get_top(&mut self, rng: &mut Rng) {
        self.request(
            Self::delay(rng),
            false,
            Ref::Top,
            Served::IndexOrManifest,
            200,
        );
    }

    fn multi(&self) -> bool {
        !self.image.platform_digests.is_empty()
    }

    /// GETs of the platform manifest(s) after the index.
    fn platform_gets(&mut self, rng: &mut Rng) {
        if self.multi() {
            let p = rng.below(self.image.platform_digests.len() as u64) as usize;
            self.request(
                Self::delay(rng),
                false,
                Ref::Platform(p),
                Served::PlatformManifest,
                200,
            );
        }
    }

    /// A one-request scenario, used when few lines are left to fill.
    fn single(&mut self, rng: &mut Rng) -> Option<ActionKind> {
        if rng.chance(0.5) {
            self.request(0, false, Ref::Tag, Served::IndexOrManifest, 200);
            Some(ActionKind::PullByTag)
        } else {
            self.request(0, true, Ref::Tag, Served::IndexOrManifest, 200);
            Some(ActionKind::VersionCheck)
        }
    }

    /// One scenario. `with_rejected`: whether non-2xx requests can appear
    /// (the distribution registry only notifies about served requests).
    fn scenario(&mut self, rng: &mut Rng, with_rejected: bool) -> Option<ActionKind> {
        let roll = rng.unit();
        if roll < 0.05 && with_rejected {
            let (head, status) = *rng.pick(&[
                (false, 404),
                (true, 404),
                (false, 401),
                (false, 429),
                (false, 500),
            ]);
            self.request(0, head, Ref::Tag, Served::IndexOrManifest, status);
            return None;
        }
        if roll < 0.06 {
            self.request(0, false, Ref::Tag, Served::IndexOrManifest, 201);
            self.reqs[0].push = true;
            return None;
        }
        let kind = match self.client.kind.behaviour {
            Behaviour::HeadFirst => self.head_first(rng),
            Behaviour::GetFirst => self.get_first(rng),
            Behaviour::SingleGet => self.single_get(rng),
            Behaviour::VersionBot => {
                self.request(0, true, Ref::Tag, Served::IndexOrManifest, 200);
                ActionKind::VersionCheck
            }
        };
        if kind != ActionKind::VersionCheck && rng.chance(0.3) {
            for _ in 0..1 + rng.below(3) {
                self.request(Self::delay(rng), false, Ref::Top, Served::Blob, 200);
                if let Some(last) = self.reqs.last_mut() {
                    last.reference = self.image.blob_digest.clone();
                    last.digest = Some(self.image.blob_digest.clone());
                }
            }
        }
        Some(kind)
    }

    fn head_first(&mut self, rng: &mut Rng) -> ActionKind {
        let roll = rng.unit();
        if roll < 0.35 {
            self.request(0, true, Ref::Tag, Served::IndexOrManifest, 200);
            return ActionKind::VersionCheck;
        }
        if roll < 0.45 {
            // containerd by digest: HEAD digest, GET the same, then platform.
            self.request(0, true, Ref::Top, Served::IndexOrManifest, 200);
            self.get_top(rng);
            self.platform_gets(rng);
            return ActionKind::PullByDigest;
        }
        self.request(0, true, Ref::Tag, Served::IndexOrManifest, 200);
        if roll < 0.55 && self.multi() {
            // Index already cached: straight to the platform manifest.
            self.platform_gets(rng);
        } else {
            self.get_top(rng);
            self.platform_gets(rng);
        }
        ActionKind::PullByTag
    }

    fn get_first(&mut self, rng: &mut Rng) -> ActionKind {
        if rng.chance(0.15) {
            self.request(0, false, Ref::Top, Served::IndexOrManifest, 200);
            self.platform_gets(rng);
            return ActionKind::PullByDigest;
        }
        self.request(0, false, Ref::Tag, Served::IndexOrManifest, 200);
        self.platform_gets(rng);
        ActionKind::PullByTag
    }

    fn single_get(&mut self, rng: &mut Rng) -> ActionKind {
        if rng.chance(0.2) {
            self.request(0, false, Ref::Top, Served::IndexOrManifest, 200);
            ActionKind::PullByDigest
        } else {
            self.request(0, false, Ref::Tag, Served::IndexOrManifest, 200);
            ActionKind::PullByTag
        }
    }
}

fn timestamp(ts: Micros, nanos: bool, extra_ns: u64) -> String {
    let t = DateTime::from_timestamp_micros(ts).unwrap_or_default();
    if nanos {
        format!(
            "{}{:03}Z",
            t.format("%Y-%m-%dT%H:%M:%S%.6f"),
            extra_ns % 1000
        )
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

fn media_type(r: &Req) -> &'static str {
    match (r.served, r.image.platform_digests.is_empty()) {
        (Served::Blob, _) => "application/vnd.oci.image.layer.v1.tar+gzip",
        (Served::IndexOrManifest, false) => "application/vnd.oci.image.index.v1+json",
        (Served::IndexOrManifest, true) => "application/vnd.docker.distribution.manifest.v2+json",
        (Served::PlatformManifest, _) => "application/vnd.oci.image.manifest.v1+json",
    }
}

fn addr_with_port(ip: IpAddr, port: u64) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

#[derive(Serialize)]
struct FlatOut<'a> {
    timestamp: String,
    method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    repository: String,
    reference: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    status: u16,
    remote_addr: String,
    user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<&'a str>,
}

fn flat_line(r: &Req, rng: &mut Rng) -> String {
    let split = rng.chance(0.8);
    let port = 1024 + rng.below(60_000);
    let with_port = rng.chance(0.5);
    let with_media = r.served == Served::Blob || rng.chance(0.7);
    let out = FlatOut {
        timestamp: timestamp(r.ts, false, 0),
        method: if r.push {
            "PUT"
        } else if r.head {
            "HEAD"
        } else {
            "GET"
        },
        namespace: split.then_some(r.image.namespace.as_str()),
        repository: if split {
            r.image.repository.clone()
        } else {
            r.image.path()
        },
        reference: &r.reference,
        digest: r.digest.as_deref(),
        status: r.status,
        remote_addr: if with_port {
            addr_with_port(r.ip, port)
        } else {
            r.ip.to_string()
        },
        user_agent: r.user_agent,
        owner: r.image.owner.as_deref(),
        media_type: with_media.then(|| media_type(r)),
    };
    serde_json::to_string(&out).unwrap_or_default()
}

fn envelope_line(r: &Req, rng: &mut Rng) -> String {
    let id = rng.next_u64();
    let port = 1024 + rng.below(60_000);
    let media = if r.served == Served::Blob {
        "application/octet-stream"
    } else {
        media_type(r)
    };
    let mut target = serde_json::json!({
        "mediaType": media,
        "size": 1024 + id % 4096,
        "digest": r.digest.as_deref().unwrap_or(&r.reference),
        "length": 1024 + id % 4096,
        "repository": r.image.path(),
        "url": format!("https://registry.example.test/v2/{}/manifests/{}", r.image.path(), r.reference),
    });
    if !crate::event::is_digest(&r.reference) {
        target["tag"] = serde_json::Value::from(r.reference.as_str());
    }
    let event = serde_json::json!({
        "id": format!("{:016x}-{:08x}", id, r.seq),
        "timestamp": timestamp(r.ts, true, id),
        "action": if r.push { "push" } else { "pull" },
        "target": target,
        "request": {
            "id": format!("{:016x}", mix_all(&[id])),
            "addr": addr_with_port(r.ip, port),
            "host": "registry.example.test",
            "method": if r.push { "PUT" } else if r.head { "HEAD" } else { "GET" },
            "useragent": r.user_agent,
        },
        "actor": {},
        "source": {"addr": "registry-0:5000", "instanceID": "6c2a9b1e-0f0d-4e59-9d4f-2b1c1a7e5d3c"},
    });
    serde_json::json!({ "events": [event] }).to_string()
}

/// Turns a good line into one of 13 kinds of bad line, each of which the
/// decoder must reject.
fn corrupt(good: &str, r: &Req, kind: u64) -> Vec<u8> {
    let ip = r.ip.to_string();
    let method = if r.head { "\"HEAD\"" } else { "\"GET\"" };
    let replaced = |from: &str, to: &str| good.replacen(from, to, 1).into_bytes();
    match kind {
        0 => good.as_bytes()[..good.len() / 2].to_vec(),
        1 => format!(
            "{ip} - - \"GET /v2/{}/manifests/{} HTTP/1.1\" 200",
            r.image.path(),
            r.reference
        )
        .into_bytes(),
        2 => replaced("\"timestamp\":\"", "\"timestamp\":12345,\"x\":\""),
        3 => {
            let start = good.find("\"timestamp\":").unwrap_or(0);
            let end = good[start..]
                .find(',')
                .map_or(good.len(), |e| start + e + 1);
            format!("{}{}", &good[..start], &good[end..]).into_bytes()
        }
        4 => {
            let start = good.find("\"timestamp\":\"").map_or(0, |s| s + 13);
            format!("{}2026-13-45 25:61{}", &good[..start], &good[start + 10..]).into_bytes()
        }
        5 => {
            let mut bytes = good.as_bytes().to_vec();
            let at = good.find(r.user_agent).unwrap_or(bytes.len() / 2);
            bytes.splice(at..at, [0xc3, 0x28, 0xff]);
            bytes
        }
        6 => replaced(&ip, "999.12.1.1"),
        7 => replaced(method, "\"FETCH\""),
        8 => replaced(&format!("\"{}\"", r.reference), "\"Not A Tag!\""),
        9 => replaced(&r.image.top_digest, "sha256:nothex"),
        10 => b"[1,2,3]".to_vec(),
        11 => b"   ".to_vec(),
        _ => b"{\"events\":[]}".to_vec(),
    }
}

/// Writes `cfg.events` lines to `out`; returns what was generated.
pub fn generate(cfg: GenConfig, out: &mut impl Write) -> std::io::Result<GenStats> {
    let mut g = Generator::new(cfg);
    let mut buf = Vec::with_capacity(64 * 1024);
    while g.write_next(&mut buf) {
        if buf.len() >= 60 * 1024 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(g.stats.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::decode::{Decoder, DEFAULT_MAX_LINE_BYTES};

    fn config(events: u64, format: Format, bad_ratio: f64) -> GenConfig {
        GenConfig {
            events,
            seed: 7,
            start: NaiveDate::from_ymd_opt(2026, 11, 2).expect("date"),
            days: 2,
            format,
            bad_ratio,
        }
    }

    fn lines(cfg: GenConfig) -> (Vec<u8>, GenStats) {
        let mut out = Vec::new();
        let stats = generate(cfg, &mut out).expect("generate");
        (out, stats)
    }

    #[test]
    fn same_seed_same_bytes_and_exact_line_count() {
        for format in [Format::Flat, Format::Distribution] {
            let (a, sa) = lines(config(3_000, format, 0.05));
            let (b, _) = lines(config(3_000, format, 0.05));
            assert_eq!(a, b);
            assert_eq!(
                a.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count() as u64,
                3_000
            );
            assert_eq!(sa.lines, 3_000);
            let total = sa.bad_lines
                + sa.manifest_requests
                + sa.blob_requests
                + sa.rejected_requests
                + sa.not_pull_requests;
            assert_eq!(total, 3_000);
        }
    }

    #[test]
    fn every_good_line_decodes_and_every_bad_line_fails() {
        for format in [Format::Flat, Format::Distribution] {
            let (out, stats) = lines(config(5_000, format, 0.1));
            let mut decoder = Decoder::new(DEFAULT_MAX_LINE_BYTES);
            let (mut ok, mut bad) = (0, 0);
            let mut evs = Vec::new();
            for line in out.split(|&c| c == b'\n').take(stats.lines as usize) {
                match decoder.decode(line, &mut evs) {
                    Ok(()) => ok += 1,
                    Err(_) => bad += 1,
                }
            }
            assert_eq!(bad, stats.bad_lines, "{format:?}");
            assert_eq!(ok, stats.lines - stats.bad_lines);
            assert!(stats.bad_lines > 300);
        }
    }

    #[test]
    fn events_are_time_ordered_and_within_the_span() {
        let (out, _) = lines(config(4_000, Format::Flat, 0.0));
        let mut decoder = Decoder::new(DEFAULT_MAX_LINE_BYTES);
        let mut evs = Vec::new();
        for line in out.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            decoder.decode(line, &mut evs).expect("good line");
        }
        assert!(evs.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        let start = NaiveDate::from_ymd_opt(2026, 11, 2)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("t")
            .and_utc()
            .timestamp_micros();
        assert!(evs[0].timestamp >= start);
        assert!(evs.last().expect("events").timestamp < start + 2 * MICROS_PER_DAY + 10_000_000);
    }
}
