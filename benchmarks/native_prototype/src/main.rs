//! The native prototype of tokenwatch's hottest per-event work (issue 17): the same kernel as
//! `kernel.py` (dedup of request ids within a window, each token's last use, concurrent use
//! from another network, travel faster than the limit), over the same exported events.
//! It answers one question: what would a native engine cost per event once the event is parsed?
//!
//! cargo run --release -- /tmp/events.tsv

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

const WINDOW_S: f64 = 300.0;
const CONCURRENT_S: f64 = 60.0;
const MAX_KMH: f64 = 1000.0;

struct Event {
    request_id: String,
    token: String,
    at: f64,
    ip: String,
    lat: f64,
    lon: f64,
}

struct LastUse<'a> {
    at: f64,
    ip: &'a str,
    lat: f64,
    lon: f64,
}

fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let a = ((phi2 - phi1) / 2.0).sin().powi(2)
        + phi1.cos() * phi2.cos() * ((lon2 - lon1).to_radians() / 2.0).sin().powi(2);
    2.0 * 6371.0088 * a.clamp(0.0, 1.0).sqrt().asin()
}

fn parse(text: &str) -> Vec<Event> {
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Event {
                request_id: f[0].to_string(),
                token: f[1].to_string(),
                at: f[2].parse().unwrap(),
                ip: f[3].to_string(),
                lat: f[4].parse().unwrap(),
                lon: f[5].parse().unwrap(),
            }
        })
        .collect()
}

/// Duplicates, concurrent uses and impossible moves in `events` (the kernel of `kernel.py`).
fn run(events: &[Event]) -> (u64, u64, u64) {
    let mut seen: HashMap<&str, f64> = HashMap::new();
    let mut order: VecDeque<(f64, &str)> = VecDeque::new();
    let mut tokens: HashMap<&str, LastUse> = HashMap::new();
    let (mut duplicates, mut concurrent, mut travel) = (0, 0, 0);
    for ev in events {
        while let Some(&(at, id)) = order.front() {
            if at >= ev.at - WINDOW_S {
                break;
            }
            seen.remove(id);
            order.pop_front();
        }
        if seen.contains_key(ev.request_id.as_str()) {
            duplicates += 1;
            continue;
        }
        seen.insert(&ev.request_id, ev.at);
        order.push_back((ev.at, &ev.request_id));
        if let Some(last) = tokens.get(ev.token.as_str()) {
            if last.ip != ev.ip {
                let hours = (ev.at - last.at).max(1.0) / 3600.0;
                if ev.at - last.at < CONCURRENT_S {
                    concurrent += 1;
                }
                if haversine_km(last.lat, last.lon, ev.lat, ev.lon) / hours > MAX_KMH {
                    travel += 1;
                }
            }
        }
        tokens.insert(&ev.token, LastUse { at: ev.at, ip: &ev.ip, lat: ev.lat, lon: ev.lon });
    }
    (duplicates, concurrent, travel)
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: tokenwatch-native-prototype EVENTS.tsv");
    let text = std::fs::read_to_string(&path).expect("readable events file");
    let mut parse_best = f64::INFINITY;
    let mut run_best = f64::INFINITY;
    let mut found = (0, 0, 0);
    let mut n = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let events = parse(&text);
        parse_best = parse_best.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        found = run(&events);
        run_best = run_best.min(started.elapsed().as_secs_f64());
        n = events.len();
    }
    println!(
        "rust kernel: {} events, {:.0} ns/event (TSV parse {:.0} ns/event); duplicates, concurrent, travel = {:?}",
        n,
        run_best / n as f64 * 1e9,
        parse_best / n as f64 * 1e9,
        found
    );
}
