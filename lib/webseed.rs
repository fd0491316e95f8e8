//! Web seeds (BEP 19, `url-list`): fetching pieces from a plain HTTP server with range
//! requests. The core decides which pieces to ask a web seed for (`swarm::webseed`); this
//! file maps them to files and byte ranges, talks HTTP and hands the blocks back.
//!
//! URL rules (BEP 19): for a single-file torrent a URL ending in `/` gets the torrent's name
//! appended, any other URL is the file itself; for a multi-file torrent the file is at
//! `URL/name/path/to/file` (a `/` is added to the URL when missing). Every path component
//! is percent-encoded. Padding files (BEP 47) are zeros and never asked for.
//!
//! A response is used only when it is exactly the bytes asked for: `206` with a matching
//! `Content-Range`, or `200` when the whole file was asked for; a body that ends early, a
//! server that ignores ranges, 404/5xx, refused connections and stalls (no byte for
//! [`READ_TIMEOUT`]) are failures, which the core answers by backing off. The worker never
//! decides anything else; every piece is still verified by its hash like any other.

use crate::metainfo::{url_encode, Info};
use crate::picker::BlockRef;
use crate::rate::{Bucket, ByteBudget};
use crossbeam::channel::{Receiver, Sender};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Redirects followed per request.
pub const MAX_REDIRECTS: u32 = 5;
/// No byte from the server for this long: the request fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Blocks are handed to the session in batches of about this many bytes.
const BATCH: usize = 256 << 10;

/// What a web seed worker tells its session.
#[derive(Debug)]
pub enum Event {
    Blocks { seed: usize, blocks: Vec<(BlockRef, Vec<u8>)> },
    /// The request of `blocks` failed (those delivered before were sent as `Blocks`).
    Failed { seed: usize, blocks: Vec<BlockRef>, reason: String, retry_after: Option<Duration> },
}

/// Why a request failed (one line), and when the server said to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub retry_after: Option<Duration>,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure { reason: reason.into(), retry_after: None }
    }
}

/// Is `url` one we can fetch from (plain HTTP: the network is internal, and no TLS stack is
/// linked)? Answers why not.
pub fn unsupported(url: &str) -> Option<&'static str> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") && url.len() > "http://".len() {
        None
    } else if lower.starts_with("https://") {
        Some("only http:// web seeds are supported")
    } else {
        Some("not an http:// URL")
    }
}

/// The URL of each file of the torrent under web seed `base` (BEP 19).
pub fn file_urls(base: &str, info: &Info) -> Vec<String> {
    let name = url_encode(info.name.as_bytes());
    if !info.multi_file {
        let url = if base.ends_with('/') { format!("{base}{name}") } else { base.to_string() };
        return vec![url; info.files.len()];
    }
    let slash = if base.ends_with('/') { "" } else { "/" };
    info.files
        .iter()
        .map(|f| {
            let path: Vec<String> = f.path.iter().map(|c| url_encode(c.as_bytes())).collect();
            format!("{base}{slash}{name}/{}", path.join("/"))
        })
        .collect()
}

/// Blocks (in order) grouped into runs of consecutive bytes of the torrent's data:
/// `(start offset, blocks)`.
pub fn runs(piece_length: u64, blocks: &[BlockRef]) -> Vec<(u64, Vec<BlockRef>)> {
    let mut out: Vec<(u64, Vec<BlockRef>)> = Vec::new();
    let mut end = u64::MAX;
    for b in blocks {
        let start = b.index as u64 * piece_length + b.begin as u64;
        match out.last_mut() {
            Some((_, run)) if start == end => run.push(*b),
            _ => out.push((start, vec![*b])),
        }
        end = start + b.length as u64;
    }
    out
}

/// Checks a `Content-Range: bytes FIRST-LAST/TOTAL` against the range asked for.
pub fn content_range_matches(header: &str, first: u64, last: u64) -> bool {
    let Some(rest) = header.trim().strip_prefix("bytes ") else { return false };
    let Some((range, _total)) = rest.split_once('/') else { return false };
    let Some((a, b)) = range.split_once('-') else { return false };
    a.trim().parse::<u64>() == Ok(first) && b.trim().parse::<u64>() == Ok(last)
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the servers we meet).
fn retry_after(header: Option<&str>) -> Option<Duration> {
    header?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Everything a worker needs.
pub struct Worker {
    pub seed: usize,
    pub url: String,
    pub info: Arc<Info>,
    pub events: Sender<Event>,
    /// Received bytes not yet written, shared with the peer connections.
    pub unwritten: Arc<ByteBudget>,
    pub download: Arc<Bucket>,
}

impl Worker {
    /// Serves requests until the session drops the sending side.
    pub fn run(self, requests: Receiver<Vec<BlockRef>>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let urls = file_urls(&self.url, &self.info);
        for blocks in requests {
            let mut batch = Batch { worker: &self, blocks: Vec::new(), bytes: 0 };
            let result = runs(self.info.piece_length, &blocks)
                .into_iter()
                .try_for_each(|(start, run)| self.fetch_run(&agent, &urls, start, &run, &mut batch));
            let sent = batch.flush();
            let outcome = match result {
                Err(f) => Event::Failed { seed: self.seed, blocks, reason: f.reason, retry_after: f.retry_after },
                Ok(()) if sent => continue,
                Ok(()) => return,
            };
            if !sent || self.events.send(outcome).is_err() {
                return; // the session is gone
            }
        }
    }

    /// Fetches one run of consecutive blocks, file by file, and hands the blocks over.
    fn fetch_run(
        &self,
        agent: &ureq::Agent,
        urls: &[String],
        start: u64,
        run: &[BlockRef],
        batch: &mut Batch,
    ) -> Result<(), Failure> {
        let mut cur: Option<(BlockRef, Vec<u8>)> = None;
        let r = self.fetch_spans(agent, urls, start, run, batch, &mut cur);
        if let (Err(_), Some((b, _))) = (&r, cur) {
            self.unwritten.release(b.length as usize);
        }
        r
    }

    /// [`Worker::fetch_run`]'s work; `cur` is the block being filled (it may span files).
    fn fetch_spans(
        &self,
        agent: &ureq::Agent,
        urls: &[String],
        start: u64,
        run: &[BlockRef],
        batch: &mut Batch,
        cur: &mut Option<(BlockRef, Vec<u8>)>,
    ) -> Result<(), Failure> {
        let len: u64 = run.iter().map(|b| b.length as u64).sum();
        let mut blocks = run.iter();
        for (file, offset, n) in self.info.byte_spans(start, len) {
            let f = &self.info.files[file];
            let mut body: Box<dyn Read> = if f.pad {
                Box::new(std::io::repeat(0).take(n))
            } else {
                self.get(agent, &urls[file], offset, n, f.length)?
            };
            let mut left = n;
            while left > 0 {
                let (b, buf) = match cur {
                    Some(c) => c,
                    None => {
                        let b = *blocks.next().ok_or_else(|| Failure::new("internal: run shorter than its spans"))?;
                        self.unwritten.acquire(b.length as usize);
                        cur.insert((b, Vec::with_capacity(b.length as usize)))
                    }
                };
                let want = ((b.length as usize - buf.len()) as u64).min(left) as usize;
                let have = buf.len();
                buf.resize(have + want, 0);
                self.download.take(want);
                if let Err(e) = body.read_exact(&mut buf[have..]) {
                    return Err(Failure::new(match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => format!("{}: response ended early", urls[file]),
                        _ => format!("{}: {e}", urls[file]),
                    }));
                }
                left -= want as u64;
                if buf.len() == b.length as usize {
                    let done = cur.take().unwrap();
                    if !batch.push(done) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// GETs bytes `offset..offset+n` of a file of `file_len` bytes; answers the body.
    fn get(&self, agent: &ureq::Agent, url: &str, offset: u64, n: u64, file_len: u64) -> Result<Box<dyn Read>, Failure> {
        let last = offset + n - 1;
        let resp = agent
            .get(url)
            .header("Range", format!("bytes={offset}-{last}"))
            .call()
            .map_err(|e| {
                Failure::new(match e {
                    ureq::Error::Timeout(_) => format!("{url}: no answer within {}s", READ_TIMEOUT.as_secs()),
                    ureq::Error::TooManyRedirects => format!("{url}: more than {MAX_REDIRECTS} redirects"),
                    ureq::Error::Io(io) => format!("{url}: {io}"),
                    other => format!("{url}: {other}"),
                })
            })?;
        let code = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        match code {
            206 => {
                let cr = header("content-range").unwrap_or_default();
                if !content_range_matches(&cr, offset, last) {
                    return Err(Failure::new(format!(
                        "{url}: asked for bytes {offset}-{last}, got {:?}",
                        crate::sanitize::printable(&cr)
                    )));
                }
            }
            200 if offset == 0 && n == file_len => {}
            200 => return Err(Failure::new(format!("{url}: the server ignores range requests"))),
            429 | 503 => {
                return Err(Failure {
                    reason: format!("{url}: HTTP {code}"),
                    retry_after: retry_after(header("retry-after").as_deref()),
                })
            }
            _ => return Err(Failure::new(format!("{url}: HTTP {code}"))),
        }
        Ok(Box::new(resp.into_body().into_with_config().limit(n).reader()))
    }
}

/// Blocks waiting to be handed to the session.
struct Batch<'a> {
    worker: &'a Worker,
    blocks: Vec<(BlockRef, Vec<u8>)>,
    bytes: usize,
}

impl Batch<'_> {
    /// Adds a block, handing the batch over when big enough; false when the session is gone.
    fn push(&mut self, b: (BlockRef, Vec<u8>)) -> bool {
        self.bytes += b.1.len();
        self.blocks.push(b);
        self.bytes < BATCH || self.flush()
    }

    /// Hands over what is waiting; false when the session is gone.
    fn flush(&mut self) -> bool {
        if self.blocks.is_empty() {
            return true;
        }
        self.bytes = 0;
        let blocks = std::mem::take(&mut self.blocks);
        let n: usize = blocks.iter().map(|b| b.1.len()).sum();
        match self.worker.events.send(Event::Blocks { seed: self.worker.seed, blocks }) {
            Ok(()) => true,
            Err(_) => {
                self.worker.unwritten.release(n);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::FileEntry;

    fn info(multi: bool, files: &[(&[&str], u64, bool)]) -> Info {
        let mut offset = 0;
        let files: Vec<FileEntry> = files
            .iter()
            .map(|(p, len, pad)| {
                let f = FileEntry { path: p.iter().map(|s| s.to_string()).collect(), length: *len, offset, pad: *pad };
                offset += len;
                f
            })
            .collect();
        Info {
            name: "rhel 9.iso".into(),
            piece_length: 32768,
            pieces: vec![[0; 20]; offset.div_ceil(32768) as usize],
            private: false,
            multi_file: multi,
            files,
            total_length: offset,
        }
    }

    #[test]
    fn bep19_url_rules() {
        let single = info(false, &[(&[], 100, false)]);
        assert_eq!(file_urls("http://h/images/", &single), vec!["http://h/images/rhel%209.iso"]);
        assert_eq!(file_urls("http://h/x/latest.iso", &single), vec!["http://h/x/latest.iso"]);
        let multi = info(true, &[(&["a b", "c#.txt"], 10, false), (&["d"], 10, false)]);
        assert_eq!(
            file_urls("http://h/img", &multi),
            vec!["http://h/img/rhel%209.iso/a%20b/c%23.txt", "http://h/img/rhel%209.iso/d"]
        );
        assert_eq!(file_urls("http://h/img/", &multi)[1], "http://h/img/rhel%209.iso/d");
    }

    #[test]
    fn only_plain_http() {
        assert_eq!(unsupported("http://h/x"), None);
        assert_eq!(unsupported("HTTP://h/x"), None);
        assert!(unsupported("https://h/x").is_some());
        assert!(unsupported("ftp://h/x").is_some());
        assert!(unsupported("http://").is_some());
    }

    #[test]
    fn consecutive_blocks_make_one_run() {
        let b = |index, begin, length| BlockRef { index, begin, length };
        let pl = 32768;
        let r = runs(pl, &[b(0, 0, 16384), b(0, 16384, 16384), b(1, 0, 16384), b(3, 0, 16384), b(3, 16384, 100)]);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].0, r[0].1.len()), (0, 3));
        assert_eq!((r[1].0, r[1].1.len()), (3 * pl, 2));
        assert!(runs(pl, &[]).is_empty());
    }

    #[test]
    fn content_range_must_be_what_was_asked() {
        assert!(content_range_matches("bytes 0-99/1000", 0, 99));
        assert!(content_range_matches("bytes 100-199/*", 100, 199));
        assert!(!content_range_matches("bytes 0-99/1000", 0, 98));
        assert!(!content_range_matches("bytes 1-100/1000", 0, 99));
        assert!(!content_range_matches("0-99/1000", 0, 99));
        assert!(!content_range_matches("", 0, 99));
        assert!(!content_range_matches("bytes x-y/z", 0, 99));
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(retry_after(Some(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }
}
