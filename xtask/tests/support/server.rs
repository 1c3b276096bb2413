//! A tiny HTTP/1.1 server on 127.0.0.1: fixed bodies, `Range: bytes=N-`, and connections dropped midway.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One file the server serves.
pub struct Route {
    /// The body.
    pub body: Vec<u8>,
    /// When set, the first response for this path breaks off after this many body bytes.
    pub drop_after: Option<usize>,
    /// When set, `Range` is ignored (every answer is the whole body, `200 OK`) and every response breaks off.
    pub no_ranges: bool,
    dropped: AtomicBool,
}

impl Route {
    /// A route that always serves `body` whole.
    pub fn new(body: Vec<u8>) -> Route {
        Route { body, drop_after: None, no_ranges: false, dropped: AtomicBool::new(false) }
    }

    /// A route whose first response breaks off after `bytes` body bytes.
    pub fn dropping_after(body: Vec<u8>, bytes: usize) -> Route {
        Route { body, drop_after: Some(bytes), no_ranges: false, dropped: AtomicBool::new(false) }
    }

    /// A route whose server ignores `Range`, and whose every response breaks off after `bytes` body bytes.
    pub fn ignoring_ranges(body: Vec<u8>, bytes: usize) -> Route {
        Route { body, drop_after: Some(bytes), no_ranges: true, dropped: AtomicBool::new(false) }
    }
}

/// A request the server saw: the path and the `Range` header, when there was one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The request path.
    pub path: String,
    /// The value of the `Range` header.
    pub range: Option<String>,
}

/// The running server; its threads live as long as the test process.
pub struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Binds 127.0.0.1 on a free port and serves `routes`; unknown paths get 404.
    pub fn start(routes: Vec<(&str, Route)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let routes: Arc<HashMap<String, Route>> =
            Arc::new(routes.into_iter().map(|(path, route)| (path.to_owned(), route)).collect());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (routes, log) = (Arc::clone(&routes), Arc::clone(&log));
                std::thread::spawn(move || serve(stream, &routes, &log));
            }
        });
        Server { port, seen }
    }

    /// The full address of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("request log").clone()
    }
}

/// Answers one request on `stream`, then closes it.
fn serve(mut stream: TcpStream, routes: &HashMap<String, Route>, log: &Mutex<Vec<Seen>>) {
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let mut lines = head.lines();
    let path = lines.next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("/").to_owned();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("range"))
        .map(|(_, value)| value.trim().to_owned());
    log.lock().expect("request log").push(Seen { path: path.clone(), range: range.clone() });
    let Some(route) = routes.get(&path) else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
        return;
    };
    let len = route.body.len();
    let start = range.as_deref().and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok());
    let start = start.filter(|_| !route.no_ranges);
    let head = match start {
        Some(start) if start >= len => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
            return;
        }
        Some(start) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\n",
            len - 1,
            len - start
        ),
        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n"),
    };
    let start = start.unwrap_or(0);
    let head = head + "Content-Type: application/x-tar\r\nConnection: close\r\n\r\n";
    let mut body = &route.body[start..];
    let dropping = route.drop_after.is_some() && (route.no_ranges || !route.dropped.swap(true, Ordering::SeqCst));
    if dropping {
        body = &body[..route.drop_after.unwrap_or(0).min(body.len())];
    }
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads the request line and headers, up to the blank line.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}
