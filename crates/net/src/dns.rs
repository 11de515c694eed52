//! Internal DNS: a small authoritative server for the `.internal` names of
//! machines, on the service address, port 53, over UDP and TCP.
//!
//! | name | answer (AAAA) |
//! |---|---|
//! | `<machine_id>.vm.<app>.internal` | the machine's private address, whatever its state (it is stable) |
//! | `<app>.internal` | every started machine of the app |
//! | `topN.nearest.of.<app>.internal` | N started machines (one host: the oldest N) |
//! | anything else | NXDOMAIN |
//!
//! Names that exist answer other record types (A, TXT, ...) with an empty
//! NOERROR ("no data"), so resolvers that ask A and AAAA together do not
//! treat the name as missing. There is no recursion: with no egress there
//! is nothing to recurse to (a forwarder is where egress DNS plugs in).
//!
//! Scoping: a query from an app's private subnet only sees that app's
//! names; other apps' names are NXDOMAIN, as if they did not exist. Queries
//! from anywhere else (the host) see every app.
//!
//! The wire format is `hickory-proto`'s; the data comes from a
//! [`Directory`] the caller implements (roost's is the machines store).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::AAAA;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::plan::AddressPlan;
use crate::NetError;

/// The zone every name lives under.
pub const ZONE: &str = "internal";
/// Seconds resolvers may cache an answer: short, because machines start
/// and stop all the time.
pub const TTL: u32 = 5;
/// Largest UDP answer without EDNS (RFC 1035).
const CLASSIC_UDP_LIMIT: usize = 512;
/// Largest UDP answer we send even when a client offers more: stays under
/// common path MTUs (the DNS flag day 2020 value).
const MAX_UDP_PAYLOAD: u16 = 1232;
/// Most machines listed for one name; more would not fit a datagram anyway.
const MAX_ANSWERS: usize = 64;
/// How long a TCP client may stay silent before the server hangs up.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most simultaneous TCP clients; further connections wait in the backlog.
const MAX_TCP_CLIENTS: usize = 64;

/// Where the DNS server looks names up. Implementations must be cheap: one
/// call per query.
pub trait Directory: Send + Sync + 'static {
    /// The app that owns private network `network`, if any.
    fn app_of_network(&self, network: u16) -> Option<String>;
    /// Whether app `app` exists.
    fn app_exists(&self, app: &str) -> bool;
    /// The address of machine `id` of `app`, if it exists and is not destroyed.
    fn machine_address(&self, app: &str, id: &str) -> Option<Ipv6Addr>;
    /// The addresses of `app`'s started machines, oldest first.
    fn started_addresses(&self, app: &str) -> Vec<Ipv6Addr>;
}

/// What a name means, before looking anything up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalName {
    /// `<id>.vm.<app>.internal`
    Machine { app: String, id: String },
    /// `<app>.internal`
    App { app: String },
    /// `top<n>.nearest.of.<app>.internal`
    Nearest { app: String, count: usize },
}

impl InternalName {
    /// Parses a (case-insensitive, optionally dot-terminated) name; `None`
    /// when it is not one of roost's names.
    pub fn parse(name: &str) -> Option<InternalName> {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let labels: Vec<&str> = name.split('.').collect();
        if labels.iter().any(|l| l.is_empty()) {
            return None;
        }
        match labels.as_slice() {
            [app, zone] if *zone == ZONE => Some(InternalName::App {
                app: app.to_string(),
            }),
            [id, "vm", app, zone] if *zone == ZONE => Some(InternalName::Machine {
                app: app.to_string(),
                id: id.to_string(),
            }),
            [top, "nearest", "of", app, zone] if *zone == ZONE => {
                let count: usize = top.strip_prefix("top")?.parse().ok()?;
                (1..=MAX_ANSWERS)
                    .contains(&count)
                    .then(|| InternalName::Nearest {
                        app: app.to_string(),
                        count,
                    })
            }
            _ => None,
        }
    }

    pub fn app(&self) -> &str {
        match self {
            InternalName::Machine { app, .. }
            | InternalName::App { app }
            | InternalName::Nearest { app, .. } => app,
        }
    }
}

/// Answers DNS queries from a [`Directory`]; the transport-free core of the
/// server, so tests can feed it bytes.
#[derive(Clone)]
pub struct Resolver {
    plan: AddressPlan,
    directory: Arc<dyn Directory>,
}

impl Resolver {
    pub fn new(plan: AddressPlan, directory: Arc<dyn Directory>) -> Resolver {
        Resolver { plan, directory }
    }

    /// The addresses `name` stands for, as seen from `source`; `None` when
    /// the name does not exist for that asker.
    pub fn lookup(&self, name: &str, source: IpAddr) -> Option<Vec<Ipv6Addr>> {
        let parsed = InternalName::parse(name)?;
        if let Some(asker) = self.asking_app(source) {
            if asker != parsed.app() {
                return None;
            }
        }
        if !self.directory.app_exists(parsed.app()) {
            return None;
        }
        match parsed {
            InternalName::Machine { app, id } => {
                self.directory.machine_address(&app, &id).map(|a| vec![a])
            }
            InternalName::App { app } => {
                let mut all = self.directory.started_addresses(&app);
                all.truncate(MAX_ANSWERS);
                Some(all)
            }
            InternalName::Nearest { app, count } => {
                let mut all = self.directory.started_addresses(&app);
                all.truncate(count);
                Some(all)
            }
        }
    }

    /// The app whose subnet `source` is in, if any. A source of another
    /// app's network that the directory does not know asks as nobody, and
    /// sees nothing.
    fn asking_app(&self, source: IpAddr) -> Option<String> {
        let IpAddr::V6(v6) = source else {
            return None;
        };
        let network = self.plan.network_of(v6)?;
        Some(
            self.directory
                .app_of_network(network)
                .unwrap_or_else(|| "\0no app".to_string()),
        )
    }

    /// The response to the query in `request`, limited to `max_len` bytes
    /// (truncated with TC set when longer); `None` when `request` is not
    /// even a readable DNS header, which a server drops silently.
    pub fn answer(
        &self,
        request: &[u8],
        source: IpAddr,
        max_len: Option<usize>,
    ) -> Option<Vec<u8>> {
        let query = match Message::from_vec(request) {
            Ok(query) => query,
            Err(_) => return format_error(request),
        };
        if query.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::new(
            query.metadata.id,
            MessageType::Response,
            query.metadata.op_code,
        );
        response.metadata = Metadata::response_from_request(&query.metadata);
        response.metadata.authoritative = true;
        let limit = match (&query.edns, max_len) {
            (_, None) => usize::from(u16::MAX),
            (Some(edns), Some(_)) => usize::from(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
            (None, Some(limit)) => limit.min(CLASSIC_UDP_LIMIT),
        };
        if let Some(edns) = &query.edns {
            let mut ours = Edns::new();
            ours.set_max_payload(MAX_UDP_PAYLOAD);
            ours.set_version(0);
            if edns.version() > 0 {
                response.metadata.response_code = ResponseCode::BADVERS;
            }
            response.set_edns(ours);
            if edns.version() > 0 {
                return encode(&response, limit);
            }
        }
        response.add_queries(query.queries.clone());
        if query.metadata.op_code != OpCode::Query {
            response.metadata.response_code = ResponseCode::NotImp;
            return encode(&response, limit);
        }
        let [question] = query.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return encode(&response, limit);
        };
        let class_ok = matches!(question.query_class(), DNSClass::IN | DNSClass::ANY);
        let name = question.name().to_ascii();
        match self.lookup(&name, source).filter(|_| class_ok) {
            None => response.metadata.response_code = ResponseCode::NXDomain,
            Some(addresses) => {
                if matches!(question.query_type(), RecordType::AAAA | RecordType::ANY) {
                    for addr in addresses {
                        response.add_answer(Record::from_rdata(
                            question.name().clone(),
                            TTL,
                            RData::AAAA(AAAA(addr)),
                        ));
                    }
                }
            }
        }
        encode(&response, limit)
    }
}

/// FORMERR for a message whose header parses but whose body does not.
fn format_error(request: &[u8]) -> Option<Vec<u8>> {
    if request.len() < 12 || request[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([request[0], request[1]]);
    let op_code = OpCode::from_u8((request[2] >> 3) & 0x0f);
    let response = Message::error_msg(id, op_code, ResponseCode::FormErr);
    response.to_vec().ok()
}

/// Serializes `response`; over `limit` bytes, drops the answers and sets TC
/// so the client retries over TCP.
fn encode(response: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut truncated = response.truncate();
    truncated.metadata.truncation = true;
    truncated.answers.clear();
    truncated.to_vec().ok()
}

/// A bound DNS server: a UDP socket and a TCP listener on one address.
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (the service address, port 53, in
    /// roost); with port 0, TCP takes the port UDP got.
    pub async fn bind(addr: SocketAddr) -> Result<DnsServer, NetError> {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| NetError::io(format!("cannot listen on udp {addr} (DNS)"), e))?;
        let addr = udp
            .local_addr()
            .map_err(|e| NetError::io("cannot read the DNS socket's address", e))?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| NetError::io(format!("cannot listen on tcp {addr} (DNS)"), e))?;
        Ok(DnsServer { udp, tcp })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.udp
            .local_addr()
            .map_err(|e| NetError::io("cannot read the DNS socket's address", e))
    }

    /// Serves queries until the returned task is aborted.
    pub fn serve(self, resolver: Resolver) -> tokio::task::JoinHandle<()> {
        let DnsServer { udp, tcp } = self;
        let tcp_resolver = resolver.clone();
        tokio::spawn(async move {
            tokio::join!(serve_udp(udp, resolver), serve_tcp(tcp, tcp_resolver));
        })
    }
}

async fn serve_udp(socket: UdpSocket, resolver: Resolver) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                tracing::warn!(error = %err, "DNS: udp receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Some(reply) =
            resolver.answer(&buf[..len], peer.ip(), Some(usize::from(MAX_UDP_PAYLOAD)))
        {
            if let Err(err) = socket.send_to(&reply, peer).await {
                tracing::debug!(error = %err, %peer, "DNS: udp send failed");
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, resolver: Resolver) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CLIENTS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "DNS: tcp accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let resolver = resolver.clone();
        tokio::spawn(async move {
            if let Err(err) = serve_tcp_client(stream, peer.ip(), &resolver).await {
                tracing::debug!(error = %err, %peer, "DNS: tcp client dropped");
            }
            drop(permit);
        });
    }
}

/// RFC 7766: length-prefixed messages, several per connection.
async fn serve_tcp_client(
    mut stream: TcpStream,
    peer: IpAddr,
    resolver: &Resolver,
) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(result) => result?,
        };
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut request))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow client"))??;
        let Some(reply) = resolver.answer(&request, peer, None) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}

/// Builds a query message (for tests and tools): id 0x1234, recursion desired.
pub fn query_bytes(name: &str, record_type: RecordType) -> Vec<u8> {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).unwrap_or_default();
    message.add_query(hickory_proto::op::Query::query(name, record_type));
    message.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Apps by network number, machines by (app, id) with a started flag.
    struct Fake {
        apps: BTreeMap<u16, String>,
        machines: Vec<(String, String, Ipv6Addr, bool)>,
    }

    impl Directory for Fake {
        fn app_of_network(&self, network: u16) -> Option<String> {
            self.apps.get(&network).cloned()
        }
        fn app_exists(&self, app: &str) -> bool {
            self.apps.values().any(|a| a == app)
        }
        fn machine_address(&self, app: &str, id: &str) -> Option<Ipv6Addr> {
            self.machines
                .iter()
                .find(|m| m.0 == app && m.1 == id)
                .map(|m| m.2)
        }
        fn started_addresses(&self, app: &str) -> Vec<Ipv6Addr> {
            self.machines
                .iter()
                .filter(|m| m.0 == app && m.3)
                .map(|m| m.2)
                .collect()
        }
    }

    fn resolver() -> Resolver {
        let plan = AddressPlan::new(0);
        let addr = |n, s| plan.machine_address(n, s).unwrap();
        let fake = Fake {
            apps: [(1, "web".to_string()), (2, "db".to_string())].into(),
            machines: vec![
                ("web".into(), "aaaaaaaaaaaaaa".into(), addr(1, 2), true),
                ("web".into(), "bbbbbbbbbbbbbb".into(), addr(1, 3), false),
                ("web".into(), "cccccccccccccc".into(), addr(1, 4), true),
                ("db".into(), "dddddddddddddd".into(), addr(2, 2), true),
            ],
        };
        Resolver::new(plan, Arc::new(fake))
    }

    const HOST: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    fn ask(resolver: &Resolver, name: &str, rtype: RecordType, source: IpAddr) -> Message {
        let reply = resolver
            .answer(&query_bytes(name, rtype), source, Some(512))
            .expect("a reply");
        Message::from_vec(&reply).expect("a parsable reply")
    }

    fn addresses(message: &Message) -> Vec<String> {
        message
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::AAAA(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn names_parse_case_insensitively_and_reject_the_rest() {
        assert_eq!(
            InternalName::parse("ABC.vm.Web.internal."),
            Some(InternalName::Machine {
                app: "web".into(),
                id: "abc".into()
            })
        );
        assert_eq!(
            InternalName::parse("top3.nearest.of.web.internal"),
            Some(InternalName::Nearest {
                app: "web".into(),
                count: 3
            })
        );
        for bad in [
            "internal",
            "web.internal.com",
            "x.web.internal",
            "top0.nearest.of.web.internal",
            "topx.nearest.of.web.internal",
            "top99999.nearest.of.web.internal",
            "a..vm.web.internal",
            "example.com",
        ] {
            assert_eq!(InternalName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn answers_machines_apps_and_nearest() {
        let r = resolver();
        let m = ask(
            &r,
            "aaaaaaaaaaaaaa.vm.web.internal.",
            RecordType::AAAA,
            HOST,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.recursion_desired);
        assert_eq!(addresses(&m), ["fdaa:0:1::2"]);
        assert_eq!(m.answers[0].ttl, TTL);
        // A stopped machine keeps its name; the app name lists started ones.
        let m = ask(
            &r,
            "bbbbbbbbbbbbbb.vm.web.internal.",
            RecordType::AAAA,
            HOST,
        );
        assert_eq!(addresses(&m), ["fdaa:0:1::3"]);
        let m = ask(&r, "web.internal.", RecordType::AAAA, HOST);
        assert_eq!(addresses(&m), ["fdaa:0:1::2", "fdaa:0:1::4"]);
        let m = ask(&r, "top1.nearest.of.web.internal.", RecordType::AAAA, HOST);
        assert_eq!(addresses(&m), ["fdaa:0:1::2"]);
        // An existing name has no A record: NOERROR, no answers.
        let m = ask(&r, "web.internal.", RecordType::A, HOST);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        for missing in [
            "nope.internal.",
            "eeeeeeeeeeeeee.vm.web.internal.",
            "aaaaaaaaaaaaaa.vm.db.internal.",
            "example.com.",
        ] {
            let m = ask(&r, missing, RecordType::AAAA, HOST);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NXDomain,
                "{missing}"
            );
            assert_eq!(m.queries.len(), 1);
        }
    }

    #[test]
    fn machines_only_see_their_own_app() {
        let r = resolver();
        let web_machine = IpAddr::V6("fdaa:0:1::2".parse().unwrap());
        let db_machine = IpAddr::V6("fdaa:0:2::2".parse().unwrap());
        let unknown_app = IpAddr::V6("fdaa:0:9::2".parse().unwrap());
        let m = ask(&r, "web.internal.", RecordType::AAAA, web_machine);
        assert_eq!(addresses(&m).len(), 2);
        let m = ask(&r, "web.internal.", RecordType::AAAA, db_machine);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = ask(&r, "db.internal.", RecordType::AAAA, unknown_app);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = ask(&r, "db.internal.", RecordType::AAAA, db_machine);
        assert_eq!(addresses(&m), ["fdaa:0:2::2"]);
    }

    #[test]
    fn malformed_and_odd_queries_get_errors_not_panics() {
        let r = resolver();
        assert!(r.answer(&[], HOST, Some(512)).is_none());
        assert!(r.answer(&[1, 2, 3], HOST, Some(512)).is_none());
        // A valid header with a body cut short: FORMERR with the same id.
        let mut cut = query_bytes("web.internal.", RecordType::AAAA);
        cut.truncate(20);
        let m = Message::from_vec(&r.answer(&cut, HOST, Some(512)).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(m.metadata.id, 0x1234);
        // Responses are never answered (no reflection loops).
        let mut response = Message::new(7, MessageType::Response, OpCode::Query);
        response.metadata.response_code = ResponseCode::NoError;
        assert!(r
            .answer(&response.to_vec().unwrap(), HOST, Some(512))
            .is_none());
        // Other opcodes: NOTIMP.
        let mut update = Message::new(8, MessageType::Query, OpCode::Update);
        update.add_query(hickory_proto::op::Query::query(
            Name::from_ascii("web.internal.").unwrap(),
            RecordType::SOA,
        ));
        let m = Message::from_vec(
            &r.answer(&update.to_vec().unwrap(), HOST, Some(512))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        // Two questions: FORMERR.
        let mut two = Message::new(9, MessageType::Query, OpCode::Query);
        for name in ["web.internal.", "db.internal."] {
            two.add_query(hickory_proto::op::Query::query(
                Name::from_ascii(name).unwrap(),
                RecordType::AAAA,
            ));
        }
        let m =
            Message::from_vec(&r.answer(&two.to_vec().unwrap(), HOST, Some(512)).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // Random garbage never panics.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let mut bytes = query_bytes("aaaaaaaaaaaaaa.vm.web.internal.", RecordType::AAAA);
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % bytes.len();
                bytes[at] = (seed >> 32) as u8;
            }
            let _ = r.answer(&bytes, HOST, Some(512));
        }
    }

    #[test]
    fn big_udp_answers_are_truncated_with_tc() {
        let plan = AddressPlan::new(0);
        let fake = Fake {
            apps: [(1, "big".to_string())].into(),
            machines: (0..60)
                .map(|i| {
                    (
                        "big".to_string(),
                        format!("{i:014x}"),
                        plan.machine_address(1, 2 + i).unwrap(),
                        true,
                    )
                })
                .collect(),
        };
        let r = Resolver::new(plan, Arc::new(fake));
        let m = ask(&r, "big.internal.", RecordType::AAAA, HOST);
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        let tcp = r
            .answer(&query_bytes("big.internal.", RecordType::AAAA), HOST, None)
            .unwrap();
        let m = Message::from_vec(&tcp).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 60);
    }

    #[tokio::test]
    async fn serves_udp_and_tcp_on_loopback() {
        let server = DnsServer::bind("[::1]:0".parse().unwrap()).await.unwrap();
        let addr = server.local_addr().unwrap();
        let task = server.serve(resolver());
        let udp = UdpSocket::bind("[::1]:0").await.unwrap();
        udp.send_to(&query_bytes("web.internal.", RecordType::AAAA), addr)
            .await
            .unwrap();
        let mut buf = [0u8; 1500];
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), udp.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(addresses(&Message::from_vec(&buf[..len]).unwrap()).len(), 2);

        let mut tcp = TcpStream::connect(addr).await.unwrap();
        for _ in 0..2 {
            let query = query_bytes("db.internal.", RecordType::AAAA);
            tcp.write_all(&(query.len() as u16).to_be_bytes())
                .await
                .unwrap();
            tcp.write_all(&query).await.unwrap();
            let mut len = [0u8; 2];
            tcp.read_exact(&mut len).await.unwrap();
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            tcp.read_exact(&mut reply).await.unwrap();
            assert_eq!(
                addresses(&Message::from_vec(&reply).unwrap()),
                ["fdaa:0:2::2"]
            );
        }
        task.abort();
    }
}
