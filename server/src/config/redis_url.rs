//! What `REDIS_URL` points at: one Redis, a master found through Sentinel, or a Cluster.
//!
//! The Sentinel and Cluster forms list several hosts in one URL, which the `redis` crate's
//! URL parser does not accept, so they are parsed here; credentials and the database still
//! go through that parser (it percent-decodes them).

use redis::{IntoConnectionInfo, RedisConnectionInfo};

/// Port assumed for a Sentinel host written without one.
const SENTINEL_PORT: u16 = 26379;
/// Port assumed for a Redis (or Cluster node) host written without one.
const REDIS_PORT: u16 = 6379;

/// A parsed `REDIS_URL`.
#[derive(Debug, Clone)]
pub enum Target {
    /// `redis://` or `rediss://`: one Redis, the URL as given.
    Standalone(String),
    /// `redis+sentinel://[user:password@]host:26379,host:26379/<master>[/<db>]`.
    Sentinel {
        /// The sentinels, as `redis://host:port` URLs.
        sentinels: Vec<String>,
        /// The master's name in the sentinels' configuration.
        master: String,
        /// Credentials and database for the master (the sentinels are asked without them).
        node: RedisConnectionInfo,
    },
    /// `redis+cluster://[user:password@]host:6379,host:6379`: seed nodes of a Redis Cluster.
    Cluster {
        /// The seed nodes, as `redis://[user:password@]host:port` URLs.
        nodes: Vec<String>,
    },
}

impl Target {
    /// Parses `REDIS_URL`; the error says what is wrong and shows the expected form.
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            return parse_sentinel(rest);
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            return parse_cluster(rest);
        }
        if (url.starts_with("redis://") || url.starts_with("rediss://")) && redis::Client::open(url).is_ok() {
            return Ok(Self::Standalone(url.to_owned()));
        }
        Err("not a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL".into())
    }
}

/// `REDIS_URL` as it may appear in logs and errors: scheme, hosts and path (the database, or
/// the Sentinel master's name), without user, password or options. Everything before the last
/// `@` goes, so a password holding an `@` cannot leak either.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{rest}")
}

const SENTINEL_FORM: &str = "expected redis+sentinel://[user:password@]host:26379[,host:26379...]/<master>[/<db>]";
const CLUSTER_FORM: &str = "expected redis+cluster://[user:password@]host:6379[,host:6379...]";

fn parse_sentinel(rest: &str) -> Result<Target, String> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = split_userinfo(authority);
    let sentinels = hosts_of(hosts, SENTINEL_PORT, SENTINEL_FORM)?;
    let (master, db) = path.split_once('/').unwrap_or((path, ""));
    if master.is_empty() || master.contains(['?', '#']) {
        return Err(format!("the master name is missing; {SENTINEL_FORM}"));
    }
    let db = if db.is_empty() {
        0
    } else {
        db.parse::<i64>().map_err(|_| format!("database {db:?} is not a number; {SENTINEL_FORM}"))?
    };
    let node = credentials(userinfo, db, SENTINEL_FORM)?;
    Ok(Target::Sentinel {
        sentinels: sentinels.iter().map(|(host, port)| format!("redis://{host}:{port}")).collect(),
        master: master.to_owned(),
        node,
    })
}

fn parse_cluster(rest: &str) -> Result<Target, String> {
    if rest.contains(['/', '?']) {
        return Err(format!("a Redis Cluster has only database 0 and takes no path or options; {CLUSTER_FORM}"));
    }
    let (userinfo, hosts) = split_userinfo(rest);
    let nodes = hosts_of(hosts, REDIS_PORT, CLUSTER_FORM)?;
    // Checked once here so a bad password fails start-up rather than the first connection.
    credentials(userinfo, 0, CLUSTER_FORM)?;
    let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    Ok(Target::Cluster { nodes: nodes.iter().map(|(host, port)| format!("redis://{auth}{host}:{port}")).collect() })
}

fn split_userinfo(authority: &str) -> (Option<&str>, &str) {
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    }
}

/// `host[:port]` items separated by commas.
fn hosts_of<'a>(hosts: &'a str, default_port: u16, form: &str) -> Result<Vec<(&'a str, u16)>, String> {
    if hosts.is_empty() {
        return Err(format!("no hosts given; {form}"));
    }
    hosts
        .split(',')
        .map(|item| {
            let (host, port) = match item.rsplit_once(':') {
                Some((host, port)) => {
                    let port = port.parse::<u16>().ok().filter(|p| *p > 0);
                    (host, port.ok_or_else(|| format!("{item:?} has no valid port; {form}"))?)
                }
                None => (item, default_port),
            };
            if host.is_empty() || host.contains(['[', ']', '@', '?', '#', ' ']) {
                return Err(format!("{item:?} is not a host[:port]; {form}"));
            }
            Ok((host, port))
        })
        .collect()
}

/// Username, password and database through the `redis` crate's own URL rules, in RESP3
/// (the cross-node bus's pub/sub needs push messages).
fn credentials(userinfo: Option<&str>, db: i64, form: &str) -> Result<RedisConnectionInfo, String> {
    let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let info = format!("redis://{auth}localhost/{db}")
        .into_connection_info()
        .map_err(|_| format!("the user or password is not valid in a URL; {form}"))?;
    Ok(info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let Target::Sentinel { sentinels, master, node } =
            Target::parse("redis+sentinel://:s3cret@10.0.0.1,10.0.0.2:26380/mymaster/2").unwrap()
        else {
            panic!("not sentinel")
        };
        assert_eq!(sentinels, ["redis://10.0.0.1:26379", "redis://10.0.0.2:26380"]);
        assert_eq!(master, "mymaster");
        assert_eq!((node.password(), node.db()), (Some("s3cret"), 2));
    }

    #[test]
    fn redacted_urls_keep_hosts_and_drop_credentials() {
        for (url, shown) in [
            ("redis://:s3cret@10.0.0.1:6379/2", "redis://10.0.0.1:6379/2"),
            ("rediss://user:p%40ss@redis.example.com?protocol=resp3", "rediss://redis.example.com"),
            ("redis://redis", "redis://redis"),
            (
                "redis+sentinel://:s3cret@10.0.0.1,10.0.0.2:26380/mymaster/2",
                "redis+sentinel://10.0.0.1,10.0.0.2:26380/mymaster/2",
            ),
            ("redis+cluster://u:p@ss@a:7000,b", "redis+cluster://a:7000,b"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn cluster_urls() {
        let Target::Cluster { nodes } = Target::parse("redis+cluster://u:p@a:7000,b").unwrap() else {
            panic!("not cluster")
        };
        assert_eq!(nodes, ["redis://u:p@a:7000", "redis://u:p@b:6379"]);
    }
}
