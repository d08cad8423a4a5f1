//! One HTTP attempt of a webhook delivery: the signed POST, through a client that
//! connects only to addresses it has checked.
//!
//! The client resolves a target's name itself ([`PublicOnlyResolver`]), refuses it when
//! any address it resolves to is not public, and connects to the addresses it checked —
//! so a name that answers differently on the next lookup (DNS rebinding) cannot slip a
//! private address in between check and connection. A literal IP address in the URL
//! skips name resolution, so it is checked before the request. Redirects are not
//! followed (a 3xx is a failed attempt: following one would send the event where the
//! operator did not point it), and proxies from the environment are ignored (a proxy
//! would resolve the name out of reach of the check).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use shared::events::address::check_addresses;
use shared::events::{RefusedAddress, WebhookTarget};

/// Resolves names with the system resolver and refuses those with an address that is
/// not public.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            check_addresses(&host, addresses.iter().map(SocketAddr::ip))?;
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of one target's deliveries.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    allow_private: bool,
    timeout: Duration,
}

impl WebhookClient {
    /// A client whose attempts each take at most `timeout`; with `allow_private`, any
    /// address is reached.
    pub fn new(timeout: Duration, allow_private: bool) -> shared::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .no_proxy()
            .user_agent(concat!("docfan-webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        let http = builder.build().map_err(|e| {
            shared::Error::Unknown(anyhow::anyhow!("building the webhook client: {e}"))
        })?;
        Ok(Self {
            http,
            allow_private,
            timeout,
        })
    }

    /// POSTs `body` (the event's JSON) to the target, signed for `event_id` at `now`.
    /// `Ok` for a 2xx answer; otherwise why the attempt failed, in an operator's words.
    pub async fn post(
        &self,
        target: &WebhookTarget,
        event_id: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        if !self.allow_private {
            target.check_literal().map_err(|e| e.to_string())?;
        }
        let headers = target
            .secret
            .sign(event_id, now.timestamp(), body.as_bytes());
        let mut request = self
            .http
            .post(target.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        match request.body(body.to_owned()).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("the receiver answered {}", response.status())),
            Err(e) => Err(self.describe(&e)),
        }
    }

    /// Why a request failed: a refused address as itself, a timeout by its length,
    /// anything else by its chain of causes (without the URL's query, which reqwest
    /// prints in its own message).
    fn describe(&self, err: &reqwest::Error) -> String {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut causes = Vec::new();
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<RefusedAddress>() {
                return refused.to_string();
            }
            if !std::ptr::addr_eq(cause, err as &dyn std::error::Error) {
                causes.push(cause.to_string());
            }
            source = cause.source();
        }
        if err.is_timeout() {
            return format!("no answer within {} s", self.timeout.as_secs_f64().round());
        }
        let kind = if err.is_connect() {
            "could not connect"
        } else {
            "the request failed"
        };
        causes.dedup();
        if causes.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}: {}", causes.join(": "))
        }
    }
}
