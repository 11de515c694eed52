//! The proxy's cold path on real machines: a request to an app whose only
//! machine is stopped, timed until the response's first byte (the status
//! line and headers) reaches the client. That covers the proxy's
//! autostart (roost's start of a stopped machine: overlay mount, crun
//! create + start in the machine's network namespace), waiting for busybox
//! httpd to accept on the machine's private address, and forwarding.
//!
//! `cargo bench -p roost --bench proxy_cold [-- --cycles N]` (default 30).
//! The warm figure (same request, machine started) is printed for context.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

fn cycles() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|pair| pair[0] == "--cycles")
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or(30usize)
        .clamp(1, 1000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, samples: &mut [Duration]) {
    samples.sort();
    println!(
        "{name:<28} n={:<4} median {:>8.1} ms   p99 {:>8.1} ms   min {:>8.1} ms",
        samples.len(),
        percentile(samples, 0.5).as_secs_f64() * 1e3,
        percentile(samples, 0.99).as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let cycles = cycles();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let daemon = common::Daemon::start_with_args(&["--proxy-listen", &addr]).await;
    let mut config = common::sh_config(
        "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    config.services = serde_json::from_value(serde_json::json!([{
        "protocol": "tcp",
        "internal_port": 8080,
        "ports": [{"port": 80, "handlers": ["http"]}],
        "autostart": true,
    }]))
    .unwrap();
    let machine = daemon
        .client()
        .create_machine(
            common::APP,
            &roost_types::CreateMachineRequest {
                config,
                ..Default::default()
            },
        )
        .await
        .expect("create machine");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let get = || {
        http.get(format!("http://{addr}/"))
            .header("host", format!("{}.localhost", common::APP))
            .send()
    };
    // Warm: the machine is started (retry while httpd comes up).
    let mut warm = Vec::new();
    for _ in 0..200 {
        if get()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..cycles {
        let began = Instant::now();
        let response = get().await.expect("warm request");
        warm.push(began.elapsed());
        assert!(response.status().is_success());
    }
    let mut cold = Vec::new();
    for cycle in 0..cycles {
        daemon
            .client()
            .stop_machine(common::APP, &machine.id, &Default::default())
            .await
            .expect("stop");
        daemon.wait_state(&machine.id, "stopped", 30).await;
        let began = Instant::now();
        let response = get().await.expect("cold request");
        cold.push(began.elapsed());
        assert!(
            response.status().is_success(),
            "cycle {cycle}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    println!("proxy cold path: request to a stopped machine until the first response byte, {cycles} cycles");
    report("cold (autostart)", &mut cold);
    report("warm (machine started)", &mut warm);
}
