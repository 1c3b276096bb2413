//! HTTP download with resume (HTTP Range on a `.part` file), verified before it is renamed into place.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::progress::Reporter;
use crate::verify::{self, Expected};

/// How long name resolution and connection setup may take; short so that an offline machine fails quickly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a single read may stall before the transfer counts as interrupted.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The pause before a download that was cut off is resumed within the same run.
const RESUME_PAUSE: Duration = Duration::from_secs(1);

/// One download: where from, where to, what the file must look like, and how often to resume within this run.
#[derive(Clone, Debug)]
pub struct Download<'a> {
    /// The `http://` or `https://` address of the archive.
    pub url: &'a str,
    /// The final path of the verified archive; bytes in flight live at [`part_path`] of it.
    pub target: &'a Path,
    /// The size and MD5 the archive must have.
    pub expected: &'a Expected,
    /// How many requests to make in all before an interrupted transfer becomes an error (at least one).
    pub attempts: u32,
    /// Where progress goes.
    pub reporter: Reporter,
    /// What to do instead when this machine is offline, for the error that says so.
    pub offline_hint: &'a str,
}

/// The path of the partial download that belongs to `target`: the same name with `.part` appended.
pub fn part_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// What one request achieved.
enum Step {
    /// The `.part` file holds the whole body; the server reported this total size when it said one.
    Complete(Option<u64>),
    /// The transfer broke off after `have` bytes of the file were on disk; `resumable` says whether the server
    /// showed that it honours Range requests (`None`: it did not say).
    Interrupted { have: u64, total: Option<u64>, cause: io::Error, resumable: Option<bool> },
    /// The partial file was useless and was removed; the next request starts from byte zero.
    Restart,
}

/// Downloads `download.url` to `download.target`, resuming from an existing `.part` file, verifying size and MD5,
/// and renaming the file into place only when it is verified; a file that fails verification is removed.
pub fn download(download: &Download) -> Result<()> {
    let part = part_path(download.target);
    let agent = agent(download.url)?;
    let reporter = download.reporter;
    let (mut attempts, mut restarts) = (1, 0);
    let server_total = loop {
        match request(&agent, download, &part)? {
            Step::Complete(total) => break total,
            Step::Restart if restarts < 2 => restarts += 1,
            Step::Restart => bail!("{}: the server kept refusing to resume the download", download.url),
            Step::Interrupted { have, total, cause, resumable } => {
                let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
                let retry = if resumable == Some(false) { "starting over" } else { "resuming" };
                if attempts < download.attempts {
                    attempts += 1;
                    reporter.say(format!("connection lost after {have}{of} bytes ({cause}); {retry}"));
                    std::thread::sleep(RESUME_PAUSE);
                } else {
                    let next = match resumable {
                        Some(true) => {
                            format!("{} is kept, so running the command again resumes from there", part.display())
                        }
                        Some(false) => "this server ignores requests to resume (HTTP Range), so running the command \
                                        again downloads the whole file over; a mirror that resumes may be given with \
                                        --url"
                            .to_owned(),
                        None => format!(
                            "{} is kept, and running the command again asks the server to resume from there",
                            part.display()
                        ),
                    };
                    bail!("the download of {} was interrupted after {have}{of} bytes: {cause}; {next}", download.url);
                }
            }
        }
    };
    reporter.say(format!("verifying {}", part.display()));
    let expected = download.expected.with_size_fallback(server_total);
    if let Err(err) = verify::check(&part, &expected) {
        remove(&part)?;
        return Err(err.context(format!("the download from {} was removed", download.url)));
    }
    std::fs::rename(&part, download.target)
        .with_context(|| format!("could not rename {} to {}", part.display(), download.target.display()))
}

/// Builds the HTTP agent: short connection timeouts, HTTP statuses as values, and no proxy for loopback hosts.
fn agent(url: &str) -> Result<ureq::Agent> {
    let host = host_of(url)?;
    let loopback =
        host == "localhost" || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(Some(CONNECT_TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(CONNECT_TIMEOUT * 3))
        .timeout_per_read(Some(READ_TIMEOUT));
    if loopback {
        config = config.proxy(None);
    }
    Ok(config.build().into())
}

/// Returns the host of an `http://` or `https://` address.
fn host_of(url: &str) -> Result<String> {
    let uri: ureq::http::Uri = url.parse().with_context(|| format!("`{url}` is not a valid URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        bail!("`{url}` is not an http:// or https:// URL");
    }
    uri.host().map(str::to_owned).ok_or_else(|| anyhow!("`{url}` names no host"))
}

/// Makes one GET request, asking for the rest of the file when part of it is already on disk.
fn request(agent: &ureq::Agent, download: &Download, part: &Path) -> Result<Step> {
    let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if download.expected.size.is_some_and(|size| have > size) {
        remove(part)?;
        have = 0;
    }
    if have > 0 && download.expected.size == Some(have) {
        return Ok(Step::Complete(Some(have)));
    }
    let mut request = agent.get(download.url);
    if have > 0 {
        download.reporter.say(format!("resuming {} from byte {have}", download.url));
        request = request.header("Range", format!("bytes={have}-"));
    } else {
        download.reporter.say(format!("downloading {} to {}", download.url, part.display()));
    }
    let response = request.call().map_err(|err| connection_error(download.url, err, download.offline_hint))?;
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let accepts = header("accept-ranges").map(|v| v.trim().eq_ignore_ascii_case("bytes"));
    let mut resumable = accepts.filter(|_| have == 0);
    let (start, total) = match status {
        200 => {
            if have > 0 {
                download.reporter.say("the server ignored the request to resume (HTTP Range); starting over");
                resumable = Some(false);
            }
            (0, response.body().content_length())
        }
        206 => {
            let range = header("content-range").unwrap_or_default();
            let (start, total) = parse_content_range(&range)
                .ok_or_else(|| anyhow!("{}: unreadable Content-Range `{range}`", download.url))?;
            if start != Some(have) {
                remove(part)?;
                return Ok(Step::Restart);
            }
            resumable = Some(true);
            (have, total)
        }
        416 if have > 0 => {
            let total = header("content-range").and_then(|r| parse_content_range(&r)).and_then(|(_, t)| t);
            if total == Some(have) {
                return Ok(Step::Complete(total));
            }
            remove(part)?;
            return Ok(Step::Restart);
        }
        _ => {
            let reason = response.status().canonical_reason().unwrap_or("");
            bail!("could not download {}: the server answered HTTP {status} {reason}", download.url);
        }
    };
    if let (Some(size), Some(total)) = (download.expected.size, total)
        && size != total
    {
        remove(part)?;
        bail!("size mismatch for {}: expected {size} bytes, the server reports {total} bytes", download.url);
    }
    let mut file = open_part(part, start > 0)?;
    let mut body = response.into_body().into_reader();
    let mut transfer = download.reporter.transfer(total, start);
    let mut position = start;
    let mut buffer = vec![0u8; 1 << 16];
    let outcome = loop {
        match body.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                file.write_all(&buffer[..n]).with_context(|| format!("could not write {}", part.display()))?;
                position += n as u64;
                transfer.set(position);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => break Err(err),
        }
    };
    transfer.finish();
    file.sync_all().with_context(|| format!("could not write {}", part.display()))?;
    match outcome {
        Err(cause) => Ok(Step::Interrupted { have: position, total, cause, resumable }),
        Ok(()) if total.is_some_and(|t| position < t) => {
            let cause = io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended early");
            Ok(Step::Interrupted { have: position, total, cause, resumable })
        }
        Ok(()) => Ok(Step::Complete(total)),
    }
}

/// Opens the partial file, appending to it when resuming and truncating it otherwise.
fn open_part(part: &Path, append: bool) -> Result<File> {
    let mut options = OpenOptions::new();
    if append {
        options.append(true);
    } else {
        options.write(true).create(true).truncate(true);
    }
    options.open(part).with_context(|| format!("could not open {}", part.display()))
}

/// Parses `bytes START-END/TOTAL` (either side may be `*`) into the start and the total, when given.
fn parse_content_range(value: &str) -> Option<(Option<u64>, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = if total.trim() == "*" { None } else { Some(total.trim().parse().ok()?) };
    let start = if range.trim() == "*" { None } else { Some(range.split_once('-')?.0.trim().parse().ok()?) };
    Some((start, total))
}

/// Turns a failed request into an error, spelling out the offline case and, with `hint`, what to do about it.
fn connection_error(url: &str, err: ureq::Error, hint: &str) -> anyhow::Error {
    if !is_unreachable(&err) {
        return anyhow!("could not download {url}: {err}");
    }
    let host = host_of(url).unwrap_or_else(|_| url.to_owned());
    anyhow!("could not reach {host}: {err}. This machine may be offline: {hint}.")
}

/// Tells whether an error means that no connection could be made at all.
fn is_unreachable(err: &ureq::Error) -> bool {
    use io::ErrorKind as K;
    match err {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(timeout) => {
            matches!(timeout, ureq::Timeout::Resolve | ureq::Timeout::Connect)
        }
        ureq::Error::Io(io) => matches!(
            io.kind(),
            K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::TimedOut
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::AddrNotAvailable
        ),
        _ => false,
    }
}

/// Removes a file, treating one that is already gone as removed.
pub(crate) fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("could not remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_gives_start_and_total() {
        assert_eq!(parse_content_range("bytes 100-999/1000"), Some((Some(100), Some(1000))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((Some(5), None)));
        assert_eq!(parse_content_range("bytes */1000"), Some((None, Some(1000))));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn part_path_appends_part() {
        assert_eq!(part_path(Path::new("data/x.tgz")), Path::new("data/x.tgz.part"));
    }

    #[test]
    fn only_web_addresses_are_accepted() {
        assert_eq!(host_of("http://127.0.0.1:8000/a.tgz").unwrap(), "127.0.0.1");
        assert!(host_of("ftp://example.invalid/a.tgz").is_err());
    }
}
