//! `switchyard-loadgen`: drives a realtime server (Switchyard, Node socket.io, Centrifugo, or
//! the raw WebSocket floor) with bounded scenarios and prints one JSON result line.
//!
//! Scenarios, one module each: [`idle`] (connections held, RSS per connection, connect rate,
//! the server's CPU per connect), [`fanout`] (rooms of receivers, delivered messages/s,
//! latency, drops; over several `--server` addresses it is the cross-node scenario) and
//! [`chat`] (a realistic mix of direct and group rooms, acks, read receipts and typing).

mod chat;
mod client;
mod fanout;
mod idle;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use client::Proto;
use serde_json::json;

#[derive(Parser)]
#[command(about = "Load generator for Switchyard and its peers")]
pub(crate) struct Args {
    /// Wire protocol of the target.
    #[arg(long, value_enum, default_value_t = Proto::Socketio)]
    pub(crate) proto: Proto,
    /// Server address; repeat to spread connections over several nodes.
    #[arg(long, required = true)]
    pub(crate) server: Vec<SocketAddr>,
    /// HS256 secret to mint tokens with.
    #[arg(long, default_value = "bench-secret-that-is-long-enough-for-hs256")]
    pub(crate) secret: String,
    /// Loopback source addresses to use (127.0.0.2 onwards), to avoid port exhaustion.
    #[arg(long, default_value_t = 8)]
    pub(crate) sources: u8,
    /// Server process ids whose RSS to report.
    #[arg(long)]
    pub(crate) server_pid: Vec<u32>,
    #[command(subcommand)]
    pub(crate) scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Hold idle authenticated connections.
    Idle {
        /// Connections in total.
        #[arg(long)]
        connections: usize,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds to hold them once all are up.
        #[arg(long, default_value_t = 3)]
        hold: u64,
        /// Child processes to split the connections over.
        #[arg(long, default_value_t = 1)]
        procs: usize,
        /// Offset of user ids (set for child processes).
        #[arg(long, default_value_t = 0, hide = true)]
        offset: usize,
        /// Run as a child of `--procs`: report once connected, hold until stdin closes.
        #[arg(long, hide = true)]
        child: bool,
    },
    /// Rooms of members with one sender each.
    Fanout {
        /// Rooms.
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Members per room, sender included.
        #[arg(long, default_value_t = 100)]
        members: usize,
        /// Messages per second per sender.
        #[arg(long, default_value_t = 50)]
        rate: u64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 5)]
        duration: u64,
        /// Size of each message's content in bytes; for the raw floor, of the whole frame.
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// Users in direct and group rooms sending, reading and typing.
    Chat {
        /// Users (one connection each); paired into direct rooms and grouped into group rooms.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Members per group room.
        #[arg(long, default_value_t = 8)]
        group: usize,
        /// Actions per second per user.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Seconds of activity.
        #[arg(long, default_value_t = 5)]
        duration: u64,
    },
}

pub(crate) fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

pub(crate) fn token(secret: &str, user: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({ "sub": user, "iat": now, "exp": now + 3600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing")
}

pub(crate) fn source(args: &Args, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % args.sources.max(1) as usize) as u8))
}

/// Resident set size of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn total_rss(args: &Args) -> u64 {
    args.server_pid.iter().map(|p| rss_kib(*p)).sum()
}

/// CPU time (user + system) a process has used, ms. On this shared machine the generator
/// competes with the server for the same cores; the server's CPU per connect is its own cost.
fn cpu_ms(pid: u32) -> u64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| {
        // Fields after the command name, which is in parentheses and may hold spaces:
        // state is the first, utime the 12th and stime the 13th.
        let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    });
    // Linux reports in USER_HZ, 100 per second on every architecture it runs here.
    ticks.unwrap_or(0) * 10
}

pub(crate) fn total_cpu_ms(args: &Args) -> u64 {
    args.server_pid.iter().map(|p| cpu_ms(*p)).sum()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let result = match &args.scenario {
        Scenario::Idle { connections, concurrency, hold, procs, offset, child } => {
            if *procs > 1 {
                idle::idle_parent(&args, *connections, *procs, *hold).await?
            } else {
                idle::idle(&args, *connections, *concurrency, *hold, *offset, *child).await?
            }
        }
        Scenario::Fanout { rooms, members, rate, duration, size } => {
            fanout::fanout(&args, *rooms, *members, *rate, *duration, *size).await?
        }
        Scenario::Chat { users, group, rate, duration } => chat::chat(&args, *users, *group, *rate, *duration).await?,
    };
    println!("{result}");
    Ok(())
}
