//! `idle`: hold N authenticated connections; report the connect rate and the server's RSS per
//! connection. A process here may hold at most 20,000 open files, so the scenario can split
//! itself over child processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::{Args, client, source, token, total_cpu_ms, total_rss};

/// Splits `idle` over child processes (each under the per-process open-file limit).
pub async fn idle_parent(args: &Args, connections: usize, procs: usize, hold: u64) -> anyhow::Result<Value> {
    let (before, cpu_before) = (total_rss(args), total_cpu_ms(args));
    let per = connections.div_ceil(procs);
    let exe = std::env::current_exe()?;
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut children = vec![];
    for p in 0..procs {
        // Same arguments, a share of the connections, and no further splitting.
        let mut argv: Vec<String> =
            raw.iter().filter(|a| !a.starts_with("--procs") && !a.starts_with("--connections")).cloned().collect();
        strip_value(&mut argv, &raw, "--procs");
        strip_value(&mut argv, &raw, "--connections");
        argv.extend([
            "--connections".into(),
            per.to_string(),
            "--offset".into(),
            (p * per).to_string(),
            "--child".into(),
        ]);
        children.push(
            tokio::process::Command::new(&exe)
                .args(&argv)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()?,
        );
    }
    // Each child reports once its connections are up and holds them until its stdin closes,
    // so the peak is taken with every connection of every child open at once.
    let (mut connected, mut failed, mut rate, mut lost) = (0, 0, 0.0, 0);
    let mut reports = vec![];
    for child in &mut children {
        let mut lines = tokio::io::BufReader::new(child.stdout.take().context("child stdout")?).lines();
        let v: Value = serde_json::from_str(&lines.next_line().await?.unwrap_or_default()).context("child result")?;
        connected += v["connected"].as_u64().unwrap_or(0);
        failed += v["failed"].as_u64().unwrap_or(0);
        rate += v["connect_rate"].as_f64().unwrap_or(0.0);
        reports.push(lines);
    }
    let cpu = total_cpu_ms(args).saturating_sub(cpu_before);
    let mut peak = before;
    for _ in 0..hold.max(1) * 5 {
        peak = peak.max(total_rss(args));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (mut child, mut lines) in children.into_iter().zip(reports) {
        drop(child.stdin.take());
        let last: Value = serde_json::from_str(&lines.next_line().await?.unwrap_or_default()).context("child end")?;
        lost += last["lost"].as_u64().unwrap_or(0);
        child.wait().await?;
    }
    let per_conn = if connected > 0 { peak.saturating_sub(before) as f64 / connected as f64 } else { 0.0 };
    Ok(json!({ "scenario": "idle", "connected": connected, "failed": failed, "lost": lost, "connect_rate": rate,
               "server_cpu_ms": cpu, "server_cpu_us_per_connect": per_connect(cpu, connected),
               "rss_before_kib": before, "rss_peak_kib": peak, "kib_per_connection": per_conn }))
}

/// Server CPU per successful connect, µs.
fn per_connect(cpu_ms: u64, connected: u64) -> f64 {
    if connected > 0 { cpu_ms as f64 * 1000.0 / connected as f64 } else { 0.0 }
}

fn strip_value(argv: &mut Vec<String>, raw: &[String], flag: &str) {
    if let Some(pos) = raw.iter().position(|a| a == flag)
        && let Some(value) = raw.get(pos + 1)
        && let Some(i) = argv.iter().position(|a| a == value)
    {
        argv.remove(i);
    }
}

/// Opens `n` connections, holds them for `hold` seconds, reports connect rate and RSS.
pub async fn idle(
    args: &Args,
    n: usize,
    concurrency: usize,
    hold: u64,
    offset: usize,
    child: bool,
) -> anyhow::Result<Value> {
    let (before, cpu_before) = (total_rss(args), total_cpu_ms(args));
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let failed = Arc::new(AtomicU64::new(0));
    // Connections the server closed while they were held: each should have stayed open.
    let lost = Arc::new(AtomicU64::new(0));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut holders = Vec::with_capacity(n);
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        let (server, src) = (args.server[i % args.server.len()], source(args, offset + i));
        let tok = token(&args.secret, &format!("idle-{}", offset + i));
        let (proto, failed, lost, ready, mut stop) =
            (args.proto, failed.clone(), lost.clone(), ready_tx.clone(), stop_rx.clone());
        // Each connection answers pings from the moment it is up: a run that takes longer to
        // connect than the server's ping interval + timeout must not lose its first sockets.
        holders.push(tokio::spawn(async move {
            let conn = client::connect(proto, server, src, &tok, "idle").await;
            drop(permit);
            let (mut tx, mut rx) = match conn {
                Ok(c) => c,
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("connect failed: {e:#}");
                    }
                    let _ = ready.send(false);
                    return;
                }
            };
            let _ = ready.send(true);
            loop {
                tokio::select! {
                    frame = rx.next() => match frame {
                        Some(Ok(Frame::Text(t))) if client::is_ping(proto, t.as_str()) => {
                            let _ = tx.send(Frame::text(client::pong(proto))).await;
                        }
                        Some(Ok(Frame::Close(why))) => {
                            if lost.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("server closed a held connection: {why:?}");
                            }
                            return;
                        }
                        Some(Ok(_)) => {}
                        end => {
                            if lost.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("held connection ended: {end:?}");
                            }
                            return;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        }));
    }
    let mut connected = 0;
    for _ in 0..n {
        if ready_rx.recv().await == Some(true) {
            connected += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = total_cpu_ms(args).saturating_sub(cpu_before);
    let report = |peak: u64| {
        let per_conn = if connected > 0 { peak.saturating_sub(before) as f64 / connected as f64 } else { 0.0 };
        json!({ "scenario": "idle", "connected": connected, "failed": failed.load(Ordering::Relaxed),
                "lost": lost.load(Ordering::Relaxed),
                "connect_rate": connected as f64 / elapsed, "server_cpu_ms": cpu,
                "server_cpu_us_per_connect": per_connect(cpu, connected), "rss_before_kib": before, "rss_peak_kib": peak,
                "kib_per_connection": per_conn })
    };
    if child {
        // Report now; hold until the parent closes our stdin.
        println!("{}", report(total_rss(args)));
        let mut rest = Vec::new();
        tokio::io::stdin().read_to_end(&mut rest).await?;
    } else {
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    let peak = total_rss(args);
    let _ = stop_tx.send(true);
    for h in holders {
        h.await?;
    }
    // A child's second line tells its parent what was lost while held.
    Ok(report(peak))
}
