//! Which namespaces the operator watches and writes in (docs/design.md §8,
//! `--watch-namespaces`).
//!
//! Cluster-wide (the default) every watch is one `Api::all`. With
//! `--watch-namespaces a,b` every watch becomes one `Api::namespaced` per
//! namespace, so the operator works with the Roles the chart renders for
//! `rbac.namespaces` and never sends a cluster-scope list or watch (which
//! those Roles refuse: with them, an `Api::all` watch never syncs and the
//! operator is never Ready). The controllers, the revocation sweep and any
//! cache the webhook keeps build their `Api`s here, so the two modes cannot
//! drift apart.

use std::fmt;

use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// The namespaces watched: every namespace, or exactly these.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WatchScope {
    /// Cluster-wide watches (needs the chart's ClusterRole).
    #[default]
    All,
    /// One watch per namespace (sorted, deduplicated, never empty).
    Namespaces(Vec<String>),
}

/// A bad `--watch-namespaces` value, naming the offending entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("--watch-namespaces: empty list (omit the flag to watch every namespace)")]
    Empty,
    #[error(
        "--watch-namespaces: '{0}' is not a namespace name (lowercase letters, digits and '-', at most 63 characters)"
    )]
    BadName(String),
}

impl WatchScope {
    /// Parse `a,b,c` (spaces around names ignored). Every name must be a
    /// DNS-1123 label, the rule of namespace names.
    pub fn parse(list: &str) -> Result<Self, ScopeError> {
        let mut names: Vec<String> = Vec::new();
        for part in list.split(',') {
            let n = part.trim();
            if n.is_empty() {
                continue;
            }
            if !is_dns_label(n) {
                return Err(ScopeError::BadName(n.to_string()));
            }
            names.push(n.to_string());
        }
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(Self::Namespaces(names))
    }

    /// Whether `ns` is watched. Objects of other namespaces are never
    /// written, even when a request (a forged AdmissionReview) names one.
    pub fn contains(&self, ns: &str) -> bool {
        match self {
            Self::All => true,
            Self::Namespaces(v) => v.binary_search_by(|n| n.as_str().cmp(ns)).is_ok(),
        }
    }

    /// The namespaces, or `None` when cluster-wide.
    pub fn namespaces(&self) -> Option<&[String]> {
        match self {
            Self::All => None,
            Self::Namespaces(v) => Some(v),
        }
    }

    /// One `Api` per watch: `[Api::all]` cluster-wide, else one
    /// `Api::namespaced` per namespace. Each needs its own watcher (and
    /// reflector): one reflector fed by several watch streams would be
    /// emptied by every stream's re-list.
    pub fn apis<K>(&self, client: &kube::Client) -> Vec<Api<K>>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + fmt::Debug,
    {
        match self {
            Self::All => vec![Api::all(client.clone())],
            Self::Namespaces(v) => v
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }
}

impl fmt::Display for WatchScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all namespaces"),
            Self::Namespaces(v) => write!(f, "namespaces {}", v.join(",")),
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sorts_and_refuses_bad_names() {
        let s = WatchScope::parse(" team-b,team-a ,team-b").unwrap();
        assert_eq!(
            s,
            WatchScope::Namespaces(vec!["team-a".into(), "team-b".into()])
        );
        assert!(s.contains("team-a") && s.contains("team-b"));
        assert!(!s.contains("kube-system") && !s.contains("team"));
        assert!(WatchScope::All.contains("kube-system"));
        assert_eq!(WatchScope::parse(" , "), Err(ScopeError::Empty));
        assert_eq!(
            WatchScope::parse("ok,Team_A"),
            Err(ScopeError::BadName("Team_A".into()))
        );
        assert!(WatchScope::parse("-a").is_err());
        assert!(WatchScope::parse(&"a".repeat(64)).is_err());
        assert_eq!(s.to_string(), "namespaces team-a,team-b");
    }
}
