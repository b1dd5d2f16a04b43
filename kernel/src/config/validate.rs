//! Loading a configuration file: parsing (unknown keys refused) and validation, which
//! reports every semantic problem at once, each with its key path.

use std::net::SocketAddr;
use std::path::Path;

use super::*;

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// Parses TOML text without semantic validation; the error names the key path.
    pub fn parse(text: &str) -> Result<Config, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path.is_empty() || path == "." {
                inner
            } else {
                format!("key `{path}`: {inner}")
            }
        })
    }

    /// Returns every semantic problem, each prefixed by its key path; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.listen_address.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "listen_address: `{}` is not a host:port socket address",
                self.listen_address
            ));
        }
        if self.admin_address.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "admin_address: `{}` is not a host:port socket address",
                self.admin_address
            ));
        }
        problems.extend(self.admin.problems());
        problems.extend(self.analytics.problems());
        if let Some(c) = &self.cache {
            problems.extend(c.problems());
        }
        if let Some(u) = &self.upgrade {
            let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
            problems.extend(u.problems(&names));
            // The upgrade target is a writable server listed as a replica: the failover
            // tracker would take it for a standby that lost its way and fence it.
            if self.ha.is_some() && u.enabled {
                problems.push(
                    "upgrade: cannot run with [ha]: the upgrade target is a writable server \
                     configured as a replica, which failover would fence; remove [ha] (or set \
                     upgrade.enabled = false) for the upgrade"
                        .into(),
                );
            }
        }
        if self.pool.max_connections == 0 {
            problems.push("pool.max_connections: must be at least 1".into());
        }
        if self.pool.server_connections == 0 {
            problems.push("pool.server_connections: must be at least 1".into());
        }
        if self.pool.checkout_timeout_ms == 0 {
            problems.push("pool.checkout_timeout_ms: must be at least 1".into());
        }
        if self.limits.max_client_memory_bytes < 2 * self.limits.max_client_message_bytes {
            problems.push(
                "limits.max_client_memory_bytes: must be at least twice max_client_message_bytes \
                 (a message is held while it is forwarded)"
                    .into(),
            );
        }
        if self.limits.max_memory_bytes < self.limits.max_client_memory_bytes {
            problems
                .push("limits.max_memory_bytes: must be at least max_client_memory_bytes".into());
        }
        if self.limits.max_client_message_bytes < 1024 {
            problems.push("limits.max_client_message_bytes: must be at least 1024".into());
        }
        if self.nodes.is_empty() {
            problems.push("nodes: at least one [[nodes]] entry is required".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.name.is_empty() {
                problems.push(format!("nodes[{i}].name: must not be empty"));
            } else if !names.insert(node.name.as_str()) {
                problems.push(format!("nodes[{i}].name: `{}` is used twice", node.name));
            }
            if node.host.is_empty() {
                problems.push(format!("nodes[{i}].host: must not be empty"));
            }
            if node.port == 0 {
                problems.push(format!("nodes[{i}].port: must not be 0"));
            }
        }
        let mut plugin_names = std::collections::HashSet::new();
        for (i, p) in self.plugins.iter().enumerate() {
            if p.name.is_empty() {
                problems.push(format!("plugins[{i}].name: must not be empty"));
            } else if !plugin_names.insert(p.name.as_str()) {
                problems.push(format!("plugins[{i}].name: `{}` is used twice", p.name));
            }
            if p.source.is_empty() {
                problems.push(format!("plugins[{i}].source: must not be empty"));
            }
            if p.timeout_ms == 0 || p.timeout_ms > 10_000 {
                problems.push(format!(
                    "plugins[{i}].timeout_ms: must be between 1 and 10000"
                ));
            }
            if p.memory_mb == 0 || p.memory_mb > 1024 {
                problems.push(format!(
                    "plugins[{i}].memory_mb: must be between 1 and 1024"
                ));
            }
            if p.instances == 0 || p.instances > 64 {
                problems.push(format!("plugins[{i}].instances: must be between 1 and 64"));
            }
        }
        let auto = self.nodes.iter().any(|n| n.role == NodeRole::Auto);
        if auto && self.ha.is_none() {
            problems.push("nodes: role = \"auto\" needs an [ha] section (roles are discovered by its health checks)".into());
        }
        if !self.nodes.is_empty()
            && !auto
            && !self.nodes.iter().any(|n| n.role == NodeRole::Primary)
        {
            problems.push("nodes: no node has role = \"primary\"".into());
        }
        if let Some(ha) = &self.ha {
            ha.validate(&mut problems);
        }
        if let Some(journal) = &self.journal {
            journal.validate(&mut problems);
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => problems.push("tls.key: required when tls.cert is set".into()),
            (None, Some(_)) => problems.push("tls.cert: required when tls.key is set".into()),
            (None, None) if self.tls.mode == ClientTlsMode::Require => {
                problems.push("tls.mode: \"require\" needs tls.cert and tls.key".into())
            }
            _ => {}
        }
        if self.backend_tls.sslmode == BackendSslMode::VerifyFull && self.backend_tls.ca.is_none() {
            problems.push("backend_tls.ca: required when sslmode = \"verify-full\"".into());
        }
        if self.auth.passthrough && self.auth.method != AuthMethod::Password {
            problems.push(
                "auth.passthrough: needs auth.method = \"password\" (the proxy must see the password to pass it on)"
                    .into(),
            );
        }
        if matches!(self.auth.method, AuthMethod::Md5 | AuthMethod::ScramSha256)
            && self.auth.users_file.is_none()
        {
            problems.push(format!(
                "auth.users_file: required with auth.method = \"{}\"",
                self.auth.method.as_str()
            ));
        }
        if self.auth.method == AuthMethod::Password
            && !self.auth.passthrough
            && self.auth.users_file.is_none()
        {
            problems.push(
                "auth.users_file: required with auth.method = \"password\" unless auth.passthrough = true"
                    .into(),
            );
        }
        problems
    }

    /// The first node whose configured role is primary.
    pub fn primary(&self) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.role == NodeRole::Primary)
    }
}
