//! The benchmark's own minimal SOCKS5 client (RFC 1928, no authentication, CONNECT to an IPv4
//! address) and the notion of a path to a destination: straight there, or through a proxy.
//! The greeting and the request are sent one after the other, each after the previous reply,
//! as every server accepts. Not a general client: no IPv6, names, BIND or UDP.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How the benchmark reaches a destination.
#[derive(Debug, Clone, Copy)]
pub enum Path {
    /// A plain connect to the destination.
    Direct,
    /// SOCKS5 CONNECT through the server at this address.
    Socks5(SocketAddr),
}

impl Path {
    /// Opens a TCP connection to `dst` along this path; with `timeout`, reads and writes of the
    /// handshake (and of the connection afterwards) give up after it.
    pub fn open(self, dst: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        match self {
            Path::Direct => {
                let s = TcpStream::connect(dst)?;
                if timeout.is_some() {
                    s.set_read_timeout(timeout)?;
                    s.set_write_timeout(timeout)?;
                }
                Ok(s)
            }
            Path::Socks5(proxy) => {
                let mut s = TcpStream::connect(proxy)?;
                if timeout.is_some() {
                    s.set_read_timeout(timeout)?;
                    s.set_write_timeout(timeout)?;
                }
                handshake(&mut s, dst)?;
                Ok(s)
            }
        }
    }
}

fn proto_err(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// RFC 1928 greeting offering "no authentication" (X'00'), then CONNECT to `dst` (IPv4).
pub fn handshake(s: &mut TcpStream, dst: SocketAddr) -> io::Result<()> {
    let SocketAddr::V4(dst) = dst else {
        return Err(proto_err("only IPv4 destinations".into()));
    };
    // VER=5, NMETHODS=1, METHODS={00}
    s.write_all(&[5, 1, 0])?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice)?;
    if choice != [5, 0] {
        return Err(proto_err(format!("server chose method {choice:02x?}")));
    }
    // VER=5 CMD=1 (CONNECT) RSV=0 ATYP=1 (IPv4) DST.ADDR DST.PORT
    let mut req = [5u8, 1, 0, 1, 0, 0, 0, 0, 0, 0];
    req[4..8].copy_from_slice(&dst.ip().octets());
    req[8..10].copy_from_slice(&dst.port().to_be_bytes());
    s.write_all(&req)?;
    // VER REP RSV ATYP, then BND.ADDR (by ATYP) and BND.PORT.
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    if head[0] != 5 || head[1] != 0 {
        return Err(proto_err(format!("CONNECT failed: reply {:02x?}", &head[..2])));
    }
    let rest = match head[3] {
        1 => 4 - 1 + 2,
        4 => 16 - 1 + 2,
        3 => usize::from(head[4]) + 2,
        t => return Err(proto_err(format!("reply with address type {t}"))),
    };
    let mut tail = [0u8; 258];
    s.read_exact(&mut tail[..rest])?;
    Ok(())
}
