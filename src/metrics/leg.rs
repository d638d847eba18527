//! One TCP leg's live counters ([`Leg`]): taken once when the leg opens, counted as bytes
//! pass, closed (success or failure) when dropped. The handles of a label set are looked up
//! in the families once and then kept ([`LegHandles`]): a leg opens per connection (on the
//! no-hint path, per request), and six family lookups, each hashing the client's identity,
//! were most of what opening one cost.

use super::{Classification, Metrics, TcpLabels};
use crate::kept::Kept;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;

/// The most label sets whose handles are kept; past it the cache starts again (the families
/// keep every series, so nothing is lost but the shortcut).
const MAX_KEPT: usize = 1024;

/// The six series of one leg label set.
struct LegHandles {
    opened: Counter,
    open: Gauge,
    read: Counter,
    write: Counter,
    closed: (Counter, Counter),
}

/// Handles already looked up, by label set.
#[derive(Default)]
pub(super) struct LegCache(Kept<TcpLabels, Arc<LegHandles>, MAX_KEPT>);

impl LegCache {
    fn handles(&self, m: &Metrics, labels: TcpLabels) -> Arc<LegHandles> {
        if let Some(h) = self.0.get(&labels) {
            return h;
        }
        let tcp = &m.tcp;
        let handles = Arc::new(LegHandles {
            opened: tcp.open.get_or_create_owned(&labels),
            open: tcp.open_connections.get_or_create_owned(&labels),
            read: tcp.read_bytes.get_or_create_owned(&labels),
            write: tcp.write_bytes.get_or_create_owned(&labels),
            closed: (
                tcp.close
                    .get_or_create_owned(&(labels.clone(), Classification(true))),
                tcp.close
                    .get_or_create_owned(&(labels.clone(), Classification(false))),
            ),
        });
        self.0.insert(labels, handles.clone());
        handles
    }
}

/// The live counters of one TCP leg, taken once when the leg opens. Dropping it counts the
/// close (as a failure unless [`Leg::succeeded`] was called) and lowers the open gauge.
pub struct Leg {
    pub read: Counter,
    pub write: Counter,
    handles: Arc<LegHandles>,
    success: bool,
}

impl Leg {
    pub fn open(m: &Metrics, labels: TcpLabels) -> Leg {
        let handles = m.legs.handles(m, labels);
        handles.opened.inc();
        handles.open.inc();
        Leg {
            read: handles.read.clone(),
            write: handles.write.clone(),
            handles,
            success: false,
        }
    }

    /// Marks the leg as closed cleanly.
    pub fn succeeded(&mut self) {
        self.success = true;
    }
}

impl Drop for Leg {
    fn drop(&mut self) {
        self.handles.open.dec();
        match self.success {
            true => self.handles.closed.0.inc(),
            false => self.handles.closed.1.inc(),
        };
    }
}
