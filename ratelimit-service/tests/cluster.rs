//! The service on a real Redis Cluster: three primaries started by the test
//! (`redis-server --cluster-enabled yes`, joined with `redis-cli --cluster
//! create`), each on a free port it confirms is its own, stopped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use envoy_types::pb::envoy::r#type::v3::RateLimitUnit::Hour;

struct Node {
    port: u16,
    child: Child,
}

/// Three primaries sharing the 16384 slots, in a scratch directory (their
/// nodes.conf) removed when dropped.
struct Cluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free now whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn start_node(dir: &std::path::Path) -> Option<Node> {
    let port = cluster_port();
    let mut child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
        .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
        .arg("--dir")
        .arg(dir)
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if let Ok(Resp::Bulk(info)) = command(port, &["INFO", "server"]) {
            let mine = info
                .lines()
                .any(|line| line.trim() == format!("process_id:{}", child.id()));
            if mine {
                return Some(Node { port, child });
            }
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Cluster {
    fn start() -> Cluster {
        let dir = std::env::temp_dir().join(unique("mcprl-cluster"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            dir,
        };
        let mut tries = 0;
        while cluster.nodes.len() < 3 {
            tries += 1;
            assert!(tries < 30, "could not start three cluster nodes");
            if let Some(node) = start_node(&cluster.dir) {
                cluster.nodes.push(node);
            }
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (Debian's redis-tools, installed with redis-server)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &cluster.nodes {
            loop {
                if let Ok(Resp::Bulk(info)) = command(node.port, &["CLUSTER", "INFO"]) {
                    if info.contains("cluster_state:ok") {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster is not ok within 20 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// The port of the node serving the slot of `key`.
    fn owner(&self, key: &str) -> u16 {
        let port = self.nodes[0].port;
        let slot = command(port, &["CLUSTER", "KEYSLOT", key]).unwrap().int();
        let Resp::Array(ranges) = command(port, &["CLUSTER", "SLOTS"]).unwrap() else {
            panic!("CLUSTER SLOTS")
        };
        for range in ranges {
            let Resp::Array(range) = range else { panic!() };
            if (range[0].int()..=range[1].int()).contains(&slot) {
                let Resp::Array(primary) = &range[2] else {
                    panic!()
                };
                return primary[1].int() as u16;
            }
        }
        panic!("no node serves slot {slot}")
    }

    /// The nodes holding keys of this service.
    fn nodes_with_keys(&self) -> HashSet<u16> {
        self.nodes
            .iter()
            .filter(|node| {
                matches!(command(node.port, &["KEYS", "mcprl:*"]), Ok(Resp::Array(keys)) if !keys.is_empty())
            })
            .map(|node| node.port)
            .collect()
    }
}

/// Domains spread over the cluster's nodes (each domain one slot); bursts of
/// concurrent calls through two service processes, each taking two counters
/// of one domain: exactly `max` allowed per domain, with keys on every node.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_cluster_counts_exactly_with_each_domain_in_one_slot() {
    let cluster = Cluster::start();
    let seed = format!("redis://127.0.0.1:{}", cluster.nodes[0].port);
    let args = ["--redis-cluster".to_string(), "--redis".to_string(), seed];
    let services = [Service::start(&args), Service::start(&args)];
    for service in &services {
        service.wait_for_line("redis connection established");
    }
    let clients = [services[0].client().await, services[1].client().await];

    // Two domains served by each node (a domain's keys are in the slot of
    // its hash tag, README.md's key layout).
    let mut domains: Vec<String> = Vec::new();
    let mut per_node: std::collections::HashMap<u16, usize> = Default::default();
    while domains.len() < 6 {
        let domain = unique("domain");
        let node = cluster.owner(&format!("mcprl:{{{}.{domain}}}:x", domain.len()));
        let taken = per_node.entry(node).or_default();
        if *taken < 2 {
            *taken += 1;
            domains.push(domain);
        }
    }
    let mut calls = Vec::new();
    for (d, domain) in domains.iter().enumerate() {
        for i in 0..60 {
            let mut client = clients[(d + i) % 2].clone();
            let mut req = request(vec![
                descriptor("exec", "global", 10, Hour),
                descriptor("exec_per_grant", &format!("grant:g{}", i % 4), 5, Hour),
            ]);
            req.domain = domain.clone();
            calls.push(tokio::spawn(async move {
                (d, client.should_rate_limit(req).await)
            }));
        }
    }
    let mut allowed = vec![0; domains.len()];
    for call in calls {
        let (d, answer) = call.await.unwrap();
        let answer = answer
            .expect("ShouldRateLimit through the cluster")
            .into_inner();
        if code(&answer) == Code::Ok {
            allowed[d] += 1;
        }
    }
    assert_eq!(allowed, vec![10; domains.len()], "exactly max per domain");
    assert_eq!(cluster.nodes_with_keys().len(), 3, "keys on every node");
    for service in &services {
        assert_eq!(service.get("/readyz").0, 200);
    }
}
