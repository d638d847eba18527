//! One connection to a target for opaque TCP, `CONNECT` and the passthrough port: the endpoint
//! the balancer draws, the caller held to its pod's policy (when one is known), the connect
//! with failover to the others, and the connection's share of the endpoint's load.

use super::{Caller, Connected};
use super::{InFlight, Revocation, Upstream, draw};
use crate::metrics::Scope;
use crate::refusal::Refusal;
use crate::route::Target;
use crate::rules::Rules;
use std::net::SocketAddr;
use tokio::time::Instant;

/// One connection opened for opaque TCP or `CONNECT`.
pub struct Opened {
    pub connected: Connected,
    /// The endpoint reached.
    pub addr: SocketAddr,
    /// The connection's share of the endpoint's load, while it is open.
    pub in_flight: InFlight,
    /// `[policy]`: completes once the pod's policy no longer admits the connection.
    pub revoked: Option<Revocation>,
}

impl Upstream {
    /// One connection to `target`, for opaque TCP and `CONNECT`: no session protocol follows
    /// a transport header. The endpoint is the lighter of two (P2C) among those worth a
    /// connect (not failing, or past their back-off); a refused connect fails over to the
    /// others, the failing ones last. Connect and handshake time is the endpoint's round trip.
    /// Before each connect, `caller` is held to the endpoint's pod policy.
    pub async fn open(
        &self,
        target: &Target,
        rules: &Rules,
        caller: &Caller,
    ) -> Result<Opened, Refusal> {
        self.open_as(target, rules, Some(caller)).await
    }

    /// [`Upstream::open`] for the passthrough port: plain TCP to the endpoint's own address,
    /// whatever discovery says of it, as the client's TLS goes through untouched. No caller
    /// is known, so no pod policy is held here: the pod's own proxy, which terminates the
    /// client's mTLS, enforces it.
    pub async fn open_raw(&self, target: &Target, rules: &Rules) -> Result<Opened, Refusal> {
        self.open_as(target, rules, None).await
    }

    /// `caller`: the terminated client, held to the pod's policy; `None`: a raw splice.
    async fn open_as(
        &self,
        target: &Target,
        rules: &Rules,
        caller: Option<&Caller>,
    ) -> Result<Opened, Refusal> {
        let set = self.endpoints_of(target, rules).await?;
        let list = self.conns_of(&self.state(target), target, &set);
        let now = Instant::now();
        let usable = |i: usize| list[i].health.usable(now);
        let first = draw(list.len(), usable, |i| list[i].health.load_at(now)).unwrap_or(0);
        // The choice, then the others worth a connect, then those backing off.
        let mut order: Vec<usize> = (0..list.len()).map(|k| (first + k) % list.len()).collect();
        order.sort_by_key(|&i| (i != first, !usable(i)));
        let mut last = None;
        for i in order {
            let conns = &list[i];
            conns.touch();
            let (allowed, revoked) = match caller {
                Some(caller) => {
                    let allowed = self.enforce_connection(conns, caller).await?;
                    // Watched from the decision on, so that no change is missed while connecting.
                    let revoked = allowed.as_ref().and(self.revocation(conns, caller));
                    (allowed, revoked)
                }
                None => (None, None),
            };
            let mut in_flight = conns.health.start(Instant::now());
            let connected = match caller {
                Some(caller) => {
                    let connected = self.connector.connect(target, &conns.endpoint, None).await;
                    self.count_allowed(conns, caller, Scope::Connection, allowed.as_ref());
                    connected
                }
                None => self.connector.connect_raw(target, &conns.endpoint).await,
            };
            match connected {
                Ok(connected) => {
                    in_flight.first_byte();
                    conns.health.connected();
                    return Ok(Opened {
                        connected,
                        addr: conns.endpoint.addr,
                        in_flight,
                        revoked,
                    });
                }
                Err(r) => {
                    conns.health.failed();
                    last = Some(r);
                }
            }
        }
        Err(last.unwrap_or(Refusal::Upstream("no endpoints".into())))
    }
}
