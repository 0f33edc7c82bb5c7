//! A minimal HTTP/1.1 keep-alive client: one request at a time on one connection, responses
//! framed by `Content-Length` (both servers under test send it). Kept small so that the load
//! generator, which shares the CPUs with the server, spends as little as possible per request.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// One keep-alive connection.
#[derive(Debug)]
pub(crate) struct Http1Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// A response: status and body.
#[derive(Debug)]
pub(crate) struct Response<'a> {
    pub(crate) status: u16,
    pub(crate) body: &'a [u8],
}

impl Http1Conn {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Builds a GET request with an `Authorization: Bearer` header.
    pub(crate) fn get_request(addr: SocketAddr, path: &str, bearer: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\n\
             User-Agent: loadgen\r\nAccept: application/json\r\n\r\n"
        )
        .into_bytes()
    }

    /// Builds a form POST (`application/x-www-form-urlencoded`) with an `Authorization:
    /// Bearer` header.
    pub(crate) fn post_form_request(
        addr: SocketAddr,
        path: &str,
        bearer: &str,
        body: &str,
    ) -> Vec<u8> {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\n\
             User-Agent: loadgen\r\nAccept: application/json\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Sends `request` (complete bytes) and reads the response. A failed exchange drops the
    /// connection; the next call reconnects.
    pub(crate) async fn send(&mut self, request: &[u8]) -> Result<Response<'_>, String> {
        match self.exchange(request).await {
            Ok((status, start, end)) => Ok(Response {
                status,
                body: &self.buf[start..end],
            }),
            Err(e) => {
                self.stream = None;
                self.buf.clear();
                Err(e)
            }
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, usize, usize), String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected");
        // The previous response's bytes are consumed only now, so its body could be lent out.
        self.buf.clear();
        stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let header_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let (status, length) = parse_head(&self.buf[..header_end])?;
        while self.buf.len() < header_end + length {
            read_more(stream, &mut self.buf).await?;
        }
        if self.buf.len() > header_end + length {
            return Err("unexpected bytes after the response body".into());
        }
        Ok((status, header_end, header_end + length))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.reserve(4096);
    match stream.read_buf(buf).await {
        Ok(0) => Err("the server closed the connection".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("read: {e}")),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Status code and Content-Length of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, usize), String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or("response without Content-Length")?;
    Ok((status, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_head_gives_status_and_length() {
        let head = b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nContent-Length: 17\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (401, 17));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked).unwrap_err().contains("Content-Length"));
    }
}
