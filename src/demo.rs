//! `crossgate demo`: a throwaway PKI, a backend, the gateway and a client, all on loopback.
//! Placeholder filled in below.
pub async fn demo() -> anyhow::Result<()> {
    Ok(())
}
