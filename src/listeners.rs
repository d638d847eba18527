//! The bound sockets the root serves: the data ports as a list of ([`Port`], listener), each
//! run by one accept loop ([`crate::server::accept_loop`]) with its handler, and the admin and
//! metrics ports. Bound from the configuration before anything is served; tests bind
//! `127.0.0.1:0`.

use crate::config::{self, Config};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// A data port: what serves the connections its listener accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// `[server] listen`: the mTLS gateway port.
    Gateway,
    /// `[passthrough] listen`: TLS spliced by its SNI, not terminated.
    Passthrough,
}

/// The bound sockets; tests bind `127.0.0.1:0` (or `[::1]:0`).
pub struct Listeners {
    /// The data ports, each with what serves it; the root runs one accept loop per entry.
    pub ports: Vec<(Port, TcpListener)>,
    pub admin: TcpListener,
    /// The private `/metrics` port, when `[server] metrics` is set.
    pub metrics: Option<TcpListener>,
}

/// A listener that could not be bound, named by its configuration key and address.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {key} {addr}: {source}")]
pub struct BindError {
    /// `server.listen`, `server.admin`, `server.metrics` or `passthrough.listen`.
    pub key: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

impl Listeners {
    /// Binds every port the configuration names: [`Listeners::bind`], and the passthrough
    /// port when `[passthrough]` is set.
    pub async fn bind_all(config: &Config) -> Result<Listeners, BindError> {
        let mut listeners = Listeners::bind(&config.server).await?;
        if let Some(p) = &config.passthrough {
            let listener = bind(p.listen).await.map_err(|source| BindError {
                key: "passthrough.listen",
                addr: p.listen,
                source,
            })?;
            listeners.ports.push((Port::Passthrough, listener));
        }
        Ok(listeners)
    }

    /// Binds the ports `[server]` names: the gateway port, the admin port, the metrics port.
    pub async fn bind(server: &config::Server) -> Result<Listeners, BindError> {
        let named = |key, addr| move |source| BindError { key, addr, source };
        let metrics = match server.metrics {
            Some(addr) => Some(bind(addr).await.map_err(named("server.metrics", addr))?),
            None => None,
        };
        let gateway = bind(server.listen)
            .await
            .map_err(named("server.listen", server.listen))?;
        Ok(Listeners {
            ports: vec![(Port::Gateway, gateway)],
            admin: bind(server.admin)
                .await
                .map_err(named("server.admin", server.admin))?,
            metrics,
        })
    }

    /// The bound addresses of the gateway port and the admin port.
    pub fn addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        let gateway = self.port_addr(Port::Gateway)?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no gateway port bound")
        })?;
        Ok((gateway, self.admin.local_addr()?))
    }

    /// The bound address of `port`, if it is bound.
    pub fn port_addr(&self, port: Port) -> std::io::Result<Option<SocketAddr>> {
        self.ports
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, l)| l.local_addr())
            .transpose()
    }

    /// The bound address of the private metrics port, if any.
    pub fn metrics_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.metrics
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(listening_socket(addr)?)
}

/// A listening socket on `addr` as every port has it (address reuse, no Nagle, a backlog of
/// 4,096, non-blocking).
pub(crate) fn listening_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    /// Accepted connections take `TCP_NODELAY` from the listening socket, which is why the
    /// gateway sets it on none of them (a syscall less per connection).
    #[test]
    fn an_accepted_connection_has_nodelay_from_its_listener() {
        let listener = super::listening_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "an accepted socket would wait for Nagle"
        );
        drop(client);
    }
}
