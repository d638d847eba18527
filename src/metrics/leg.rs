//! One TCP leg's live counters ([`Leg`]): taken once when the leg opens, counted as bytes
//! pass, closed (success or failure) when dropped.

use super::{Classification, Metrics, TcpLabels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// The live counters of one TCP leg, taken once when the leg opens. Dropping it counts the
/// close (as a failure unless [`Leg::succeeded`] was called) and lowers the open gauge.
pub struct Leg {
    pub read: Counter,
    pub write: Counter,
    open: Gauge,
    close: (Counter, Counter),
    success: bool,
}

impl Leg {
    pub fn open(m: &Metrics, labels: TcpLabels) -> Leg {
        m.tcp.open.get_or_create(&labels).inc();
        let open = m.tcp.open_connections.get_or_create_owned(&labels);
        open.inc();
        Leg {
            read: m.tcp.read_bytes.get_or_create_owned(&labels),
            write: m.tcp.write_bytes.get_or_create_owned(&labels),
            open,
            close: (
                m.tcp
                    .close
                    .get_or_create_owned(&(labels.clone(), Classification(true))),
                m.tcp
                    .close
                    .get_or_create_owned(&(labels, Classification(false))),
            ),
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
        self.open.dec();
        if self.success {
            self.close.0.inc();
        } else {
            self.close.1.inc();
        }
    }
}
