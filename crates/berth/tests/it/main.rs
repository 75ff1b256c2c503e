//! Integration tests: the real server on 127.0.0.1:0, spoken to over HTTP.
//! One test binary (link time on two cores); modules by topic.

#![allow(clippy::unwrap_used, missing_docs)]

mod access;
mod admin_api;
mod api;
mod attacks;
mod authz;
mod chart;
mod cli;
mod clients;
mod conformance;
mod crash;
mod disk;
mod ecr;
mod events;
mod federation;
mod gc;
mod image;
mod immutable;
mod ldap;
mod lifecycle;
mod oidc;
mod operate;
mod outage;
mod portal;
mod proxy;
mod quota;
mod replicas;
mod replication;
mod scale;
mod scan;
mod scrub;
mod signatures;
mod support;
mod upstream;
mod webhooks;
