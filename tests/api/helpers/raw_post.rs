//! A POST over a raw socket whose body is written in the background: a server
//! that answers 413 and closes without reading it all is seen answering,
//! where an ordinary client would only see the broken pipe.

use serde_json::Value;

use super::TestApp;

/// Posts `body_len` spaces to `path` with `headers` (each `name: value`),
/// as `Content-Length` or chunked; returns the status and the JSON body.
pub async fn post_raw(app: &TestApp, path: &str, headers: &[String], body_len: usize, chunked: bool) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let framing =
        if chunked { "transfer-encoding: chunked\r\n".to_owned() } else { format!("content-length: {body_len}\r\n") };
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!("POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n{extra}{framing}\r\n");
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 1024 * 1024];
        let mut sent = 0;
        while sent < body_len {
            let n = chunk.len().min(body_len - sent);
            if chunked {
                writer.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                writer.write_all(&chunk[..n]).await?;
                writer.write_all(b"\r\n").await?;
            } else {
                writer.write_all(&chunk[..n]).await?;
            }
            sent += n;
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        std::io::Result::Ok(())
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = reader.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if response.len() >= end + 4 + length {
                break;
            }
        }
    }
    sender.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Sends a POST's head declaring `declared_len` bytes and only the first KiB
/// of them, then waits (at most 20 s) for the status line: `Some(status)` when
/// the server answers without the rest of the body, `None` when it waits for it.
pub async fn answer_before_the_body(app: &TestApp, path: &str, headers: &[String], declared_len: usize) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n{extra}content-length: {declared_len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head sent");
    stream.write_all(&[b' '; 1024]).await.expect("a first KiB sent");
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    let read_status = async {
        while !response.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read_status).await.ok()?;
    String::from_utf8_lossy(&response).split_whitespace().nth(1).and_then(|s| s.parse().ok())
}
