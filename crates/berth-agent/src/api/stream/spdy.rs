//! kubectl's port-forward: SPDY/3.1 tunneled in a WebSocket
//! (`SPDY/3.1+portforward.k8s.io`, each binary message a piece of the SPDY
//! byte stream), which the API server passes straight to a node that
//! declares `ExtendWebSocketsToKubelet`. Only the server side of what the
//! port-forward protocol (`portforward.k8s.io`) uses is spoken: the client
//! opens, per connection, an `error` and a `data` stream (headers
//! `streamtype`, `port`, `requestid`); each is answered with a SYN_REPLY;
//! once both are there the data stream is carried to `localhost:PORT` in
//! the pod, and a failure is written on the error stream, as the kubelet's
//! `pkg/kubelet/cri/streaming/portforward/httpstream.go` does. Flow control
//! windows are not enforced (the Go client does not wait on them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::port_forward::connect_in;
use super::websocket::Socket;

/// The WebSocket protocol kubectl offers for the tunnel.
pub(crate) const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// The zlib dictionary of SPDY/3 header blocks (the draft's, section 2.6.10.1).
const DICTIONARY: &[u8] = include_bytes!("spdy3_dictionary.bin");

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 1;
/// Frames larger than this are refused (headers of port-forward are tiny,
/// data frames from Go's client at most 32 KiB).
const MAX_FRAME: usize = 1 << 20;
const MAX_HEADER_BLOCK: usize = 64 << 10;

/// A frame to send: raw bytes, in order.
type Out = mpsc::Sender<Vec<u8>>;

pub(crate) async fn serve(socket: Socket, netns: PathBuf, pod: String) {
    let (mut sink, mut incoming) = socket.split();
    let (out, mut queue) = mpsc::channel::<Vec<u8>>(32);
    let writer = tokio::spawn(async move {
        while let Some(frame) = queue.recv().await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut session = Session {
        netns,
        pod,
        out,
        inflate: Decompress::new(true),
        deflate: Compress::new(Compression::default(), true),
        deflate_ready: false,
        inputs: HashMap::new(),
        pairs: HashMap::new(),
        forwards: tokio::task::JoinSet::new(),
    };
    let mut buffer = Vec::new();
    'read: while let Some(message) = incoming.next().await {
        match message {
            Ok(Message::Binary(bytes)) => buffer.extend_from_slice(&bytes),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        }
        while let Some(frame) = next_frame(&mut buffer) {
            match frame {
                Ok(frame) => {
                    if !session.handle(frame).await {
                        break 'read;
                    }
                }
                Err(e) => {
                    tracing::debug!("port-forward SPDY stream: {e}");
                    break 'read;
                }
            }
        }
    }
    session.forwards.abort_all();
    drop(session);
    writer.abort();
}

enum Frame {
    Control {
        kind: u16,
        data: Vec<u8>,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
}

/// Takes one whole frame off the front of `buffer`, if there is one.
fn next_frame(buffer: &mut Vec<u8>) -> Option<Result<Frame, String>> {
    if buffer.len() < 8 {
        return None;
    }
    let length = u32::from_be_bytes([0, buffer[5], buffer[6], buffer[7]]) as usize;
    if length > MAX_FRAME {
        return Some(Err(format!("a frame of {length} bytes")));
    }
    if buffer.len() < 8 + length {
        return None;
    }
    let head: Vec<u8> = buffer.drain(..8).collect();
    let data: Vec<u8> = buffer.drain(..length).collect();
    let flags = head[4];
    Some(Ok(if head[0] & 0x80 != 0 {
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Some(Err(format!("SPDY version {version}")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        Frame::Control { kind, data }
    } else {
        let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        Frame::Data {
            stream,
            flags,
            data,
        }
    }))
}

fn control_frame(kind: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<(u32, mpsc::UnboundedReceiver<Vec<u8>>)>,
    port: Option<String>,
}

struct Session {
    netns: PathBuf,
    pod: String,
    out: Out,
    inflate: Decompress,
    deflate: Compress,
    deflate_ready: bool,
    /// What the client sends on each data stream; dropped at its FIN.
    inputs: HashMap<u32, mpsc::UnboundedSender<Vec<u8>>>,
    pairs: HashMap<String, Pair>,
    forwards: tokio::task::JoinSet<()>,
}

impl Session {
    /// Handles one frame; false ends the session.
    async fn handle(&mut self, frame: Frame) -> bool {
        match frame {
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                if let Some(input) = self.inputs.get(&stream) {
                    if !data.is_empty() {
                        let _ = input.send(data);
                    }
                }
                if flags & FLAG_FIN != 0 {
                    self.inputs.remove(&stream);
                }
                true
            }
            Frame::Control {
                kind: SYN_STREAM,
                data,
                ..
            } => self.syn_stream(&data).await,
            Frame::Control {
                kind: RST_STREAM,
                data,
                ..
            } => {
                if let Some(id) = data.get(..4) {
                    let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]) & 0x7fff_ffff;
                    self.inputs.remove(&id);
                }
                true
            }
            Frame::Control {
                kind: PING, data, ..
            } => self.out.send(control_frame(PING, 0, &data)).await.is_ok(),
            Frame::Control { kind: GOAWAY, .. } => false,
            // SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do.
            Frame::Control { .. } => true,
        }
    }

    async fn syn_stream(&mut self, data: &[u8]) -> bool {
        if data.len() < 10 {
            return false;
        }
        let stream = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) & 0x7fff_ffff;
        let headers = match self.headers(&data[10..]) {
            Ok(headers) => headers,
            Err(e) => {
                tracing::debug!("port-forward SPDY headers: {e}");
                return false;
            }
        };
        let reply = match self.header_block(&[]) {
            Ok(block) => block,
            Err(e) => {
                tracing::debug!("port-forward SPDY reply: {e}");
                return false;
            }
        };
        let mut body = stream.to_be_bytes().to_vec();
        body.extend_from_slice(&reply);
        if self
            .out
            .send(control_frame(SYN_REPLY, 0, &body))
            .await
            .is_err()
        {
            return false;
        }
        let header = |name: &str| headers.get(name).cloned();
        let Some(request) = header("requestid") else {
            return true;
        };
        let pair = self.pairs.entry(request.clone()).or_default();
        if let Some(port) = header("port") {
            pair.port = Some(port);
        }
        match header("streamtype").as_deref() {
            Some("error") => pair.error = Some(stream),
            Some("data") => {
                let (input, receiver) = mpsc::unbounded_channel();
                self.inputs.insert(stream, input);
                pair.data = Some((stream, receiver));
            }
            _ => return true,
        }
        if pair.error.is_some() && pair.data.is_some() {
            let pair = self.pairs.remove(&request).unwrap_or_default();
            let (Some(error), Some((data, input))) = (pair.error, pair.data) else {
                return true;
            };
            let forward = Forward {
                netns: self.netns.clone(),
                pod: self.pod.clone(),
                port: pair.port.unwrap_or_default(),
                error,
                data,
                out: self.out.clone(),
            };
            self.forwards.spawn(forward.run(input));
        }
        true
    }

    /// Decompresses and reads a header block (lowercase names).
    fn headers(&mut self, block: &[u8]) -> Result<HashMap<String, String>, String> {
        let mut plain = Vec::with_capacity(1024);
        let mut rest = block;
        while !rest.is_empty() {
            if plain.len() > MAX_HEADER_BLOCK {
                return Err("header block too large".into());
            }
            plain.reserve(4096);
            let before = self.inflate.total_in();
            let result = self
                .inflate
                .decompress_vec(rest, &mut plain, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before) as usize;
            rest = &rest[used..];
            match result {
                Ok(_) if used == 0 => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| e.to_string())?;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        parse_header_block(&plain)
    }

    /// An encoded, compressed header block of `pairs`.
    fn header_block(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<u8>, String> {
        if !self.deflate_ready {
            self.deflate
                .set_dictionary(DICTIONARY)
                .map_err(|e| e.to_string())?;
            self.deflate_ready = true;
        }
        let mut plain = (pairs.len() as u32).to_be_bytes().to_vec();
        for (name, value) in pairs {
            for text in [name, value] {
                plain.extend_from_slice(&(text.len() as u32).to_be_bytes());
                plain.extend_from_slice(text.as_bytes());
            }
        }
        let mut compressed = Vec::with_capacity(plain.len() + 64);
        let before = self.deflate.total_in();
        self.deflate
            .compress_vec(&plain, &mut compressed, FlushCompress::Sync)
            .map_err(|e| e.to_string())?;
        if (self.deflate.total_in() - before) as usize != plain.len() {
            return Err("header block not compressed whole".into());
        }
        Ok(compressed)
    }
}

/// A SPDY/3 name/value block: a count, then length-prefixed names and values.
fn parse_header_block(plain: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let bytes = plain.get(at..at + n).ok_or("a truncated header block")?;
        at += n;
        Ok(bytes)
    };
    let number = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = number(take(4)?);
    let mut headers = HashMap::new();
    for _ in 0..count.min(256) {
        let name_len = number(take(4)?);
        let name = String::from_utf8_lossy(take(name_len)?).into_owned();
        let value_len = number(take(4)?);
        let value = String::from_utf8_lossy(take(value_len)?).into_owned();
        headers.insert(name, value);
    }
    Ok(headers)
}

/// One forwarded connection.
struct Forward {
    netns: PathBuf,
    pod: String,
    port: String,
    error: u32,
    data: u32,
    out: Out,
}

impl Forward {
    async fn run(self, input: mpsc::UnboundedReceiver<Vec<u8>>) {
        if let Err(e) = self.carry(input).await {
            let message = format!(
                "error forwarding port {} to pod {}: {e}",
                self.port, self.pod
            );
            tracing::debug!("{message}");
            let _ = self
                .out
                .send(data_frame(self.error, 0, message.as_bytes()))
                .await;
        }
        let _ = self.out.send(data_frame(self.data, FLAG_FIN, &[])).await;
        let _ = self.out.send(data_frame(self.error, FLAG_FIN, &[])).await;
    }

    async fn carry(&self, mut input: mpsc::UnboundedReceiver<Vec<u8>>) -> std::io::Result<()> {
        let port: u16 = self
            .port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| std::io::Error::other(format!("invalid port {:?}", self.port)))?;
        let stream = connect_in(Path::new(&self.netns).to_path_buf(), port).await?;
        let (mut read, mut write) = stream.into_split();
        let upstream = async move {
            while let Some(bytes) = input.recv().await {
                write.write_all(&bytes).await?;
            }
            write.shutdown().await
        };
        let (out, data) = (self.out.clone(), self.data);
        let downstream = async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = read.read(&mut buf).await?;
                if n == 0 || out.send(data_frame(data, 0, &buf[..n])).await.is_err() {
                    return Ok::<_, std::io::Error>(());
                }
            }
        };
        tokio::pin!(downstream);
        tokio::select! {
            result = &mut downstream => result,
            result = upstream => {
                result?;
                downstream.await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_from_the_byte_stream() {
        let mut buffer = control_frame(PING, 0, &7u32.to_be_bytes());
        buffer.extend(data_frame(5, FLAG_FIN, b"hi"));
        buffer.extend(&data_frame(7, 0, b"partial")[..5]);
        match next_frame(&mut buffer) {
            Some(Ok(Frame::Control {
                kind: PING, data, ..
            })) => assert_eq!(data, [0, 0, 0, 7]),
            _ => panic!("a PING"),
        }
        match next_frame(&mut buffer) {
            Some(Ok(Frame::Data {
                stream: 5,
                flags: FLAG_FIN,
                data,
            })) => assert_eq!(data, b"hi"),
            _ => panic!("a DATA frame"),
        }
        assert!(next_frame(&mut buffer).is_none(), "half a frame waits");
    }

    #[test]
    fn header_blocks_round_trip_through_the_dictionary() {
        let (out, _queue) = mpsc::channel(1);
        let mut ours = Session {
            netns: PathBuf::new(),
            pod: String::new(),
            out,
            inflate: Decompress::new(true),
            deflate: Compress::new(Compression::default(), true),
            deflate_ready: false,
            inputs: HashMap::new(),
            pairs: HashMap::new(),
            forwards: tokio::task::JoinSet::new(),
        };
        // The session reads what a peer with the same dictionary compressed,
        // block after block on one zlib stream.
        let first = ours
            .header_block(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")])
            .unwrap();
        let second = ours.header_block(&[("streamtype", "data")]).unwrap();
        let headers = ours.headers(&first).unwrap();
        assert_eq!(headers["streamtype"], "error");
        assert_eq!(headers["port"], "80");
        assert_eq!(ours.headers(&second).unwrap()["streamtype"], "data");
    }
}
