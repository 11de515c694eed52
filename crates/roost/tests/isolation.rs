//! What a machine can see and do: only itself. Checked from inside real
//! machines over the exec API.

mod common;

use common::{Daemon, APP, IMAGE};
use roost_types::{CreateMachineRequest, ExecRequest, MachineConfig, MachineInit};

async fn run_sleeper(daemon: &Daemon, marker: &str) -> String {
    let req = CreateMachineRequest {
        config: MachineConfig {
            image: IMAGE.into(),
            init: Some(MachineInit {
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    format!("echo {marker} > /root/marker; exec sleep 1000"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    daemon
        .client()
        .create_machine(APP, &req)
        .await
        .expect("create")
        .id
}

async fn sh(daemon: &Daemon, id: &str, script: &str) -> roost_types::ExecResponse {
    let req = ExecRequest {
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    };
    daemon.client().exec(APP, id, &req).await.expect("exec")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_sees_only_itself_and_cannot_escalate() {
    let daemon = Daemon::start().await;
    let first = run_sleeper(&daemon, "first-machine").await;
    let second = run_sleeper(&daemon, "second-machine").await;

    // Processes: only the machine's own init, main process and this exec.
    let ps = sh(&daemon, &first, "ps -o pid,args").await.stdout;
    let commands: Vec<&str> = ps.lines().skip(1).collect();
    assert!(commands.iter().any(|l| l.contains("sleep 1000")), "{ps}");
    assert!(
        commands.len() <= 5,
        "host or other machines' processes visible:\n{ps}"
    );
    assert!(!ps.contains("roost up"), "{ps}");

    // Filesystem: nothing of the host outside the rootfs, nothing of the other machine.
    let data_dir = daemon.data_dir();
    let out = sh(
        &daemon,
        &first,
        &format!(
            "ls {} 2>&1; cat /root/marker; ls /work 2>&1; find / -name marker -xdev 2>/dev/null",
            data_dir.display()
        ),
    )
    .await;
    assert!(out.stdout.contains("first-machine"), "{out:?}");
    assert!(!out.stdout.contains("second-machine"), "{out:?}");
    assert!(
        !out.stdout.contains("roost.db"),
        "host data dir visible: {out:?}"
    );
    assert_eq!(out.stdout.matches("No such file").count(), 2, "{out:?}");

    // Privileged operations are denied.
    let mount = sh(
        &daemon,
        &first,
        "mkdir -p /mnt/x && mount -t tmpfs none /mnt/x",
    )
    .await;
    assert_ne!(mount.exit_code, 0, "mount allowed: {mount:?}");
    let module = sh(&daemon, &first, "echo > /tmp/m.ko && insmod /tmp/m.ko").await;
    assert_ne!(module.exit_code, 0, "module load allowed: {module:?}");
    let raw = sh(&daemon, &first, "ping -c 1 -W 1 127.0.0.1").await;
    assert_ne!(raw.exit_code, 0, "raw socket allowed: {raw:?}");
    // Capabilities that would allow any of that are gone (NET_RAW=13, SYS_MODULE=16, SYS_ADMIN=21).
    let caps = sh(&daemon, &first, "grep CapEff /proc/self/status")
        .await
        .stdout;
    let hex = caps.split_whitespace().nth(1).expect("CapEff value");
    let bits = u64::from_str_radix(hex, 16).expect("hex caps");
    for (name, bit) in [("NET_RAW", 13), ("SYS_MODULE", 16), ("SYS_ADMIN", 21)] {
        assert_eq!(bits & (1 << bit), 0, "{name} present in {caps}");
    }
    let nnp = sh(&daemon, &first, "grep NoNewPrivs /proc/self/status")
        .await
        .stdout;
    assert!(nnp.contains('1'), "{nnp}");
    // The hostname is the machine id; the network is loopback plus eth0 on
    // the private network, with the machine's one IPv6 address and no IPv4.
    assert_eq!(sh(&daemon, &first, "hostname").await.stdout.trim(), first);
    let links = sh(&daemon, &first, "cat /proc/net/dev").await.stdout;
    assert!(
        links.contains("lo:") && links.contains("eth0:") && links.lines().count() == 4,
        "{links}"
    );
    let private_ip = daemon
        .client()
        .get_machine(APP, &first)
        .await
        .expect("get")
        .private_ip;
    let addrs = sh(&daemon, &first, "ip addr show").await.stdout;
    let ipv4: Vec<&str> = addrs.lines().filter(|l| l.contains("inet ")).collect();
    assert_eq!(ipv4, ["    inet 127.0.0.1/8 scope host lo"], "{addrs}");
    let globals: Vec<&str> = addrs
        .lines()
        .filter(|l| l.contains("scope global"))
        .collect();
    assert_eq!(globals.len(), 1, "{addrs}");
    assert!(
        globals[0].contains(&format!("inet6 {private_ip}/64")),
        "{addrs}"
    );

    for id in [first, second] {
        daemon
            .client()
            .destroy_machine(APP, &id, true)
            .await
            .expect("destroy");
    }
}
