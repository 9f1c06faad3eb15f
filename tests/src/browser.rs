//! A real browser for the portal's tests: headless Chromium (Debian's `chromium`) started
//! inside a namespace (a client's), driven over the Chrome `DevTools` Protocol (a WebSocket on
//! that namespace's loopback), so every page it opens is fetched from the client's addresses as a
//! phone's browser fetches it. Opens pages, runs JavaScript in them, clicks, waits for the
//! next page, resizes the window and saves screenshots. Side effects: a Chromium process
//! and a temporary profile folder, both gone on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use crate::Netns;

/// The browser's binary, as Debian installs it.
pub const CHROMIUM: &str = "chromium";

/// How long Chromium may take to start and open its `DevTools` port (a loaded test machine).
const START_TIMEOUT: Duration = Duration::from_mins(1);
/// How long a page may take to load, a script to answer, a screenshot to be taken.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A window size: a phone's (360×740) or a desktop's (1280×800).
#[derive(Clone, Copy, Debug)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    /// Whether the page is laid out as on a phone (its `<meta name="viewport">` honoured).
    pub mobile: bool,
}

pub const PHONE: Viewport = Viewport {
    width: 360,
    height: 740,
    mobile: true,
};
pub const DESKTOP: Viewport = Viewport {
    width: 1280,
    height: 800,
    mobile: false,
};

/// A headless Chromium in a namespace, with one tab under control.
pub struct Browser {
    child: Child,
    /// The browser's `DevTools` WebSocket.
    devtools: WebSocket<TcpStream>,
    /// The `DevTools` session attached to the tab under control.
    session: String,
    next_id: u64,
    /// The profile; removed on drop, after the browser is gone.
    profile: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts Chromium inside `netns` with a new, empty profile and connects to its first
    /// tab. As root Chromium needs `--no-sandbox`; the namespace is the test's isolation.
    pub fn launch(netns: &Netns) -> Result<Browser> {
        let profile = tempfile::Builder::new()
            .prefix("hotspotd-chromium-")
            .tempdir()
            .context("create a profile folder for Chromium")?;
        let log = std::fs::File::create(profile.path().join("chromium.log"))?;
        let child = netns
            .command(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-address=127.0.0.1",
                // Chromium picks a free port and writes it to DevToolsActivePort.
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start chromium (installed by scripts/bootstrap.sh)")?;
        let mut child = KillOnDrop(Some(child));
        let devtools = connect(netns, &mut child, profile.path())?;
        let mut browser = Browser {
            child: child.0.take().context("the browser process")?,
            devtools,
            session: String::new(),
            next_id: 0,
            profile: Some(profile),
        };
        // The tab Chromium opened with about:blank.
        let targets = browser.call("Target.getTargets", &json!({}))?;
        let tab = targets["targetInfos"]
            .as_array()
            .and_then(|targets| targets.iter().find(|target| target["type"] == "page"))
            .and_then(|target| target["targetId"].as_str())
            .with_context(|| format!("chromium has no tab: {targets}"))?
            .to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            &json!({ "targetId": tab, "flatten": true }),
        )?;
        attached["sessionId"]
            .as_str()
            .context("a DevTools session")?
            .clone_into(&mut browser.session);
        Ok(browser)
    }

    fn profile_path(&self) -> &Path {
        self.profile
            .as_ref()
            .map_or(Path::new("/nonexistent"), tempfile::TempDir::path)
    }

    /// What Chromium wrote to stdout and stderr.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile_path().join("chromium.log")).unwrap_or_default()
    }

    /// Sends one `DevTools` command (to the tab, once attached) and returns its result;
    /// events in between are skipped.
    pub fn call(&mut self, method: &str, params: &Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params.clone() });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let message = message.to_string();
        self.devtools
            .send(Message::text(message))
            .with_context(|| format!("send {method}"))?;
        loop {
            let message = self
                .devtools
                .read()
                .with_context(|| format!("read the answer to {method}"))?;
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text)?;
            if answer["id"] != id {
                continue;
            }
            if let Some(error) = answer.get("error") {
                bail!("{method} failed: {error}");
            }
            return Ok(answer["result"].clone());
        }
    }

    /// The value of the JavaScript expression `expression` in the page (a promise is
    /// awaited); an error if it throws.
    pub fn evaluate(&mut self, expression: &str) -> Result<Value> {
        let result = self.call(
            "Runtime.evaluate",
            &json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(thrown) = result.get("exceptionDetails") {
            bail!("{expression} threw: {thrown}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Opens `url` and waits until the page has loaded.
    pub fn open(&mut self, url: &str) -> Result<()> {
        let navigated = self.call("Page.navigate", &json!({ "url": url }))?;
        if let Some(error) = navigated.get("errorText") {
            bail!("opening {url} failed: {error}");
        }
        self.wait_for_load()
    }

    /// Runs `action` (JavaScript that submits a form or follows a link) and waits for the
    /// page it leads to.
    pub fn navigate_by(&mut self, action: &str) -> Result<()> {
        // A mark on the current page: gone once the next one has replaced it.
        self.evaluate("window.hotspotdTestMark = true")?;
        self.evaluate(action)?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            // While the page changes, the expression may fail: its context is gone.
            if let Ok(Value::Bool(true)) = self.evaluate(
                "window.hotspotdTestMark === undefined && document.readyState === 'complete'",
            ) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "no new page within {STEP_TIMEOUT:?} after {action}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the element `selector` names and waits for the page it leads to.
    pub fn click(&mut self, selector: &str) -> Result<()> {
        let selector = serde_json::to_string(selector)?;
        self.navigate_by(&format!("document.querySelector({selector}).click()"))
    }

    fn wait_for_load(&mut self) -> Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Ok(Value::Bool(true)) = self
                .evaluate("document.readyState === 'complete' && location.href !== 'about:blank'")
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the page did not load within {STEP_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's text, as a reader sees it.
    pub fn text(&mut self) -> Result<String> {
        Ok(self
            .evaluate("document.body.innerText")?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The page's address now.
    pub fn url(&mut self) -> Result<String> {
        Ok(self
            .evaluate("location.href")?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Lays the page out in `viewport`.
    pub fn resize(&mut self, viewport: Viewport) -> Result<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            &json!({
                "width": viewport.width,
                "height": viewport.height,
                "deviceScaleFactor": 1,
                "mobile": viewport.mobile,
            }),
        )?;
        Ok(())
    }

    /// Saves what the window shows as a PNG at `path` (its folder is created).
    pub fn screenshot(&mut self, path: &Path) -> Result<()> {
        let shot = self.call("Page.captureScreenshot", &json!({ "format": "png" }))?;
        let png = decode_base64(shot["data"].as_str().context("screenshot data")?)?;
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }

    /// Prints the page as Chromium would on paper (its CSS page size, backgrounds), saves the
    /// PDF at `path` and returns it.
    pub fn pdf(&mut self, path: &Path) -> Result<Vec<u8>> {
        let printed = self.call(
            "Page.printToPDF",
            &json!({ "preferCSSPageSize": true, "printBackground": true }),
        )?;
        let pdf = decode_base64(printed["data"].as_str().context("PDF data")?)?;
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(path, &pdf).with_context(|| format!("write {}", path.display()))?;
        Ok(pdf)
    }

    /// Screenshots of the page as a phone (`NAME-phone.png`) and a desktop
    /// (`NAME-desktop.png`) show it, in `folder`; the window is a phone's again afterwards.
    pub fn screenshots(&mut self, folder: &Path, name: &str) -> Result<Vec<PathBuf>> {
        let mut saved = Vec::new();
        for (viewport, kind) in [(DESKTOP, "desktop"), (PHONE, "phone")] {
            self.resize(viewport)?;
            let path = folder.join(format!("{name}-{kind}.png"));
            self.screenshot(&path)?;
            saved.push(path);
        }
        Ok(saved)
    }
}

/// Kills the browser if starting it fails half-way.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads the `DevTools` port Chromium wrote into `profile` and opens its WebSocket, from inside
/// `netns` (the port is on its loopback).
fn connect(netns: &Netns, child: &mut KillOnDrop, profile: &Path) -> Result<WebSocket<TcpStream>> {
    let active_port = profile.join("DevToolsActivePort");
    let log = || std::fs::read_to_string(profile.join("chromium.log")).unwrap_or_default();
    let deadline = Instant::now() + START_TIMEOUT;
    // Its first line is the port, its second the browser's WebSocket path.
    let (port, path) = loop {
        if let Ok(text) = std::fs::read_to_string(&active_port)
            && let [port, path] = text.lines().collect::<Vec<_>>()[..]
            && let Ok(port) = port.parse::<u16>()
        {
            break (port, path.to_owned());
        }
        if let Some(status) = child.0.as_mut().map(Child::try_wait).transpose()?.flatten() {
            bail!("chromium exited ({status}) before it listened:\n{}", log());
        }
        ensure!(
            Instant::now() < deadline,
            "chromium did not open its DevTools port within {START_TIMEOUT:?}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let devtools = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let url = format!("ws://{devtools}{path}");
    netns.run(move || -> Result<WebSocket<TcpStream>> {
        let stream = TcpStream::connect(devtools).context("connect to `DevTools`")?;
        stream.set_read_timeout(Some(STEP_TIMEOUT))?;
        let (socket, _) = tungstenite::client(url.as_str(), stream)
            .map_err(|error| anyhow::anyhow!("open `DevTools`' WebSocket {url}: {error}"))?;
        Ok(socket)
    })?
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.profile.take());
    }
}

/// Standard base64 (RFC 4648, with padding), as `DevTools` sends screenshots.
fn decode_base64(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut count) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => bail!("not base64: byte {byte:#04x}"),
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).unwrap_or(0));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() -> Result<()> {
        assert_eq!(decode_base64("aGVsbG8=")?, b"hello");
        assert_eq!(decode_base64("aGk=")?, b"hi");
        assert_eq!(decode_base64("")?, b"");
        assert!(decode_base64("a*b").is_err());
        Ok(())
    }
}
