//! `--mqtt` and its companions, checked.

use anyhow::{Context, bail};

use crate::config::check_source_name;

/// Default MQTT port.
pub const DEFAULT_PORT: u16 = 1883;
/// Name of the file in the data directory holding the generated client id.
pub const CLIENT_ID_FILE: &str = "mqtt-client-id";

/// The MQTT source's settings.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topic filter → source name, in the order given.
    pub topics: Vec<(String, String)>,
    /// User name and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// Fixed client id (`None`: generated once and kept in the data directory).
    pub client_id: Option<String>,
    /// Shared-subscription group (`$share/<group>/<filter>`), for several servers.
    pub share_group: Option<String>,
}

impl MqttConfig {
    /// Checks the options. `url` is `mqtt://host[:port]`, user name and password
    /// may be given in it (`mqtt://user:pass@host`) or separately.
    pub fn parse(
        url: &str,
        topics: &[String],
        username: Option<String>,
        password: Option<String>,
        client_id: Option<String>,
        share_group: Option<String>,
    ) -> anyhow::Result<Self> {
        let Some(rest) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
        else {
            bail!(
                "--mqtt `{url}` is not supported; use mqtt://host[:port] (plain TCP; \
                 TLS brokers need a TLS-terminating proxy for now)"
            );
        };
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("--mqtt `{url}`: port `{p}` is not a number"))?,
            ),
            _ => (hostport, DEFAULT_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            bail!("--mqtt `{url}` has no host; use mqtt://host[:port]");
        }
        let (url_user, url_pass) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (None, None),
        };
        let user = username.or(url_user);
        let credentials = match (user, password.or(url_pass)) {
            (Some(u), p) => Some((u, p.unwrap_or_default())),
            (None, Some(_)) => {
                bail!("--mqtt-password is set without a user name; add --mqtt-username")
            }
            (None, None) => None,
        };
        if topics.is_empty() {
            bail!(
                "--mqtt needs at least one --mqtt-topic FILTER=SOURCE, e.g. devices/+/events=devices"
            );
        }
        let mut parsed = Vec::new();
        for entry in topics {
            let Some((filter, source)) = entry.rsplit_once('=') else {
                bail!(
                    "--mqtt-topic `{entry}` has no `=`; use FILTER=SOURCE, e.g. devices/+/events=devices"
                );
            };
            let (filter, source) = (filter.trim(), source.trim());
            check_filter(filter).with_context(|| format!("--mqtt-topic `{entry}`"))?;
            check_source_name(source).with_context(|| format!("--mqtt-topic `{entry}`"))?;
            parsed.push((filter.to_string(), source.to_string()));
        }
        if let Some(id) = &client_id
            && (id.is_empty() || id.len() > 128)
        {
            bail!("--mqtt-client-id must be 1 to 128 characters");
        }
        if let Some(g) = &share_group
            && (g.is_empty() || g.contains(['/', '+', '#']))
        {
            bail!("--mqtt-share-group `{g}` must be a non-empty name without `/`, `+` or `#`");
        }
        Ok(Self {
            host: host.to_string(),
            port,
            topics: parsed,
            credentials,
            client_id,
            share_group,
        })
    }

    /// The source of a topic: the first filter that matches it.
    pub fn source_of(&self, topic: &str) -> Option<&str> {
        self.topics
            .iter()
            .find(|(f, _)| matches(f, topic))
            .map(|(_, s)| s.as_str())
    }

    /// The filters as subscribed (with `$share/<group>/` when sharing).
    pub fn subscriptions(&self) -> Vec<String> {
        self.topics
            .iter()
            .map(|(f, _)| match &self.share_group {
                Some(g) => format!("$share/{g}/{f}"),
                None => f.clone(),
            })
            .collect()
    }
}

/// A topic filter's wildcards are whole levels: `+` one, `#` the rest (last).
fn check_filter(filter: &str) -> anyhow::Result<()> {
    if filter.is_empty() || filter.starts_with("$share/") {
        bail!(
            "the filter must be a topic filter such as devices/+/events (sharing is --mqtt-share-group)"
        );
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains(['+', '#']);
        if wild && *level != "+" && *level != "#" {
            bail!("`{level}`: a wildcard must be a whole level (`+` or `#`)");
        }
        if *level == "#" && i != levels.len() - 1 {
            bail!("`#` must be the last level");
        }
    }
    Ok(())
}

/// MQTT topic matching (`+` one level, `#` any rest; `$`-topics only by name).
fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let c = MqttConfig::parse(
            "mqtt://dev:secret@127.0.0.1:1884",
            &["devices/+/events=devices".into(), "fleet/#=fleet".into()],
            None,
            None,
            None,
            Some("ingest".into()),
        )
        .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 1884));
        assert_eq!(c.credentials, Some(("dev".into(), "secret".into())));
        assert_eq!(c.source_of("devices/d1/events"), Some("devices"));
        assert_eq!(c.source_of("devices/d1/other"), None);
        assert_eq!(c.source_of("fleet/a/b/c"), Some("fleet"));
        assert_eq!(c.subscriptions()[0], "$share/ingest/devices/+/events");
        let c =
            MqttConfig::parse("mqtt://broker", &["a=b".into()], None, None, None, None).unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        for (url, topics) in [
            ("http://x", vec!["a=b".to_string()]),
            ("mqtt://x", vec![]),
            ("mqtt://x", vec!["a".to_string()]),
            ("mqtt://x", vec!["a/b+=s".to_string()]),
            ("mqtt://x", vec!["#/a=s".to_string()]),
            ("mqtt://x", vec!["a=../x".to_string()]),
            ("mqtt://x:port", vec!["a=b".to_string()]),
        ] {
            let e = MqttConfig::parse(url, &topics, None, None, None, None).unwrap_err();
            assert!(format!("{e:#}").contains("--mqtt"), "{e:#}");
        }
    }
}
