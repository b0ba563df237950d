"""The live page (``/``, ``/stream``): the feed in process, its event stream over real HTTP, and
the page in headless Chromium (Selenium with Debian's chromium-driver) against a real daemon on
the talking-head clip with a real Mosquitto: live emotion, eye closure and head pose, an event
the daemon publishes (the same id MQTT carries), the camera going offline at the clip's end,
and no data for a wrong token. The run writes a screenshot of the page (a CI artifact:
``$ARTIFACTS_DIR/live-page.png``, else a temporary folder; the path is printed).
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from broker import Collector, free_port, needs_mosquitto
from conftest import TALKING_HEAD, read_frames, shared_file
from daemon.publish.base import FanOut
from daemon.stats import PipelineStats
from daemon.web.http import HttpConfig, HttpServer, LiveFeed, PreviewSlot, WebView
from daemon_helpers import DaemonProcess, daemon_config, prefix
from test_http import best_correlation, clip_thumbnails, get, wait_listening

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "live-page-token"


def event(i: int, phase: str, alert: str | None = None) -> dict:
    return {"schema": 1, "device": "d", "ts": f"2025-01-01T00:00:{i:02d}.000Z", "id": alert or f"id-{i}",
            "type": "driver_distraction", "rule": "driver_distraction", "phase": phase, "level": "distracted",
            "started_at": "2025-01-01T00:00:00.000Z", "ended_at": None, "details": {"away_s": 3.0}}


# -- the feed, in process ----------------------------------------------------------------------


def test_feed_replays_open_alerts_and_the_newest_of_each_topic():
    feed = LiveFeed("d", events_kept=3)
    fan = FanOut([feed])
    fan.publish_event(event(0, "start", "long-open"))  # stays open past the kept events
    for i in range(1, 6):
        fan.publish_event(event(i, "end"))
    fan.publish_camera_status(False)
    fan.publish_camera_status(True)
    fan.publish_state({"schema": 1, "faces": 1})
    fan.publish_stats({"schema": 1, "fps": 20.0})
    last, msgs = feed.replay()
    assert [(m.topic, m.payload.get("id")) for m in msgs] == [
        ("events", "long-open"), ("events", "id-3"), ("events", "id-4"), ("events", "id-5"),
        ("camera/status", None), ("stats", None), ("state", None)]
    assert msgs[4].payload["online"] is True and msgs[4].payload["device"] == "d"
    assert last == max(m.seq for m in msgs)
    fan.publish_event(event(9, "end", "long-open"))
    assert [m.payload["id"] for m in feed.replay()[1] if m.topic == "events"] == ["id-4", "id-5", "long-open"]
    assert fan.health() == {"broker_connected": False, "backlog": 0, "outputs": {"live": {"viewers": 0}}}


def test_feed_wait_returns_what_is_new_and_none_after_falling_behind():
    feed = LiveFeed("d", ring=4)
    last, _ = feed.replay()
    assert feed.wait(last, timeout=0.01) == []
    feed.publish_state({"n": 1})
    feed.publish_state({"n": 2})
    got = feed.wait(last, timeout=0.01)
    assert [m.payload["n"] for m in got] == [1, 2]
    assert got[0].data == b'event: state\ndata: {"n":1}\n\n'
    for n in range(3, 10):
        feed.publish_state({"n": n})
    assert feed.wait(got[-1].seq, timeout=0.01) is None  # 3..5 left the ring: replay


def test_feed_samples_only_while_watched_and_at_its_rate():
    feed = LiveFeed("d", sample_hz=5.0)
    assert not feed.due(100.0)  # nobody watches: one attribute check per frame, nothing else
    with feed.watching():
        assert feed.viewers == 1 and feed.due(100.0)
        feed.sample(100.0, 0.0, {"schema": 1, "faces": 0}, {"driver_distraction": {"calibrated": False}})
        assert not feed.due(100.1) and feed.due(100.2)
    assert feed.viewers == 0
    topics = [m.topic for m in feed.replay()[1]]
    assert topics == ["rules", "state"]


# -- the stream over HTTP, in process --------------------------------------------------------


def sse_messages(resp: http.client.HTTPResponse, until: str, limit: int = 200) -> list[tuple[str, dict]]:
    """(event, data) of the stream's messages up to and including the first ``until``."""
    out: list[tuple[str, dict]] = []
    name = None
    while len(out) < limit:
        line = resp.fp.readline()
        assert line, f"the stream ended before {until!r}: {out}"
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[6:])))
            if name == until:
                return out
    raise AssertionError(f"no {until!r} in {limit} messages")


@pytest.fixture
def endpoint():
    pytest.importorskip("prometheus_client")
    feed = LiveFeed("unit")
    view = WebView(device="unit", healthy=lambda: (True, "ok"), stats=PipelineStats(), preview=PreviewSlot(), live=feed,
                   snapshot=lambda: {"frames": 0, "camera_online": True, "broker_connected": True, "backlog": 0},
                   page=lambda: {"device": "unit", "labels": ["sad", "happy"], "zones": {}, "seat": {"name": None, "polygon": None}})
    server = HttpServer(HttpConfig(enabled=True, port=free_port(), token=TOKEN), view)
    server.start()
    try:
        yield server, feed
    finally:
        server.stop()


def test_stream_sends_hello_replay_live_payloads_and_the_last_ones_before_bye(endpoint):
    server, feed = endpoint
    feed.publish_event(event(1, "start"))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/stream", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    first = sse_messages(resp, until="stats")
    assert [n for n, _ in first] == ["hello", "events", "stats"]  # the replay, then the health tick
    assert first[0][1]["labels"] == ["sad", "happy"] and first[1][1]["id"] == "id-1"
    assert first[2][1]["camera_online"] is True and "fps" in first[2][1]
    feed.publish_state({"schema": 1, "faces": 1, "primary": {"emotion": "happy"}})
    assert sse_messages(resp, until="state")[-1][1]["primary"]["emotion"] == "happy"
    feed.publish_camera_status(False)  # as the capture thread does at the clip's end, just before the stop
    server.stop()
    tail = sse_messages(resp, until="bye")
    assert tail[-2][0] == "camera/status" and tail[-2][1]["online"] is False and tail[-1][0] == "bye"
    conn.close()


def test_stream_and_page_need_the_token(endpoint):
    server, _ = endpoint
    for path in ("/", "/stream", "/live.js"):
        status, headers, body = get(server.port, path, {"Authorization": "Bearer wrong"})
        assert status == 401 and b"event:" not in body and b"<html" not in body, path
    status, headers, body = get(server.port, "/live.js", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"EventSource" in body


# -- the page in headless Chromium against a real daemon --------------------------------------------


def doubled_clip(path: Path) -> Path:
    """The talking head twice (18 s): time for the browser to start before the clip's end."""
    frames = read_frames(TALKING_HEAD)
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    assert out.isOpened(), "OpenCV cannot write mp4v"
    for frame in frames + frames:
        out.write(frame)
    out.release()
    return path


def chromium(profile: Path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            pytest.skip(f"{path} not installed (apt-get install -y {pkg}; scripts/setup.sh does)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
                 "--window-size=1280,1400", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


def text_of(browser, element_id: str) -> str:
    """An element's text, read in one script call: the page redraws its panels many times a
    second, so a Selenium element reference can go stale between finding and reading it."""
    return browser.execute_script("const e = document.getElementById(arguments[0]); return e ? e.textContent : '';", element_id)


def count(browser, selector: str) -> int:
    return browser.execute_script("return document.querySelectorAll(arguments[0]).length;", selector)


def wait_until(predicate, timeout: float, what: str, browser=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None and value is not False and value != "":  # 0.0 is a reading (eyes wide open)
            return value
        time.sleep(0.2)
    page = browser.find_element("tag name", "body").text[:3000] if browser else ""
    raise AssertionError(f"{what} within {timeout} s; the page shows:\n{page}")


def number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def artifacts_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ARTIFACTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@needs_mosquitto
@pytest.mark.slow
def test_the_live_page_in_headless_chromium(tmp_path, broker, emotion_model, monkeypatch, request):
    pytest.importorskip("prometheus_client")
    shared_file(TALKING_HEAD)  # or skip, saying which file is missing
    clip = doubled_clip(tmp_path / "clip.mp4")
    browser = chromium(tmp_path / "profile")  # started before the daemon: the clip plays 18 s, not more
    monkeypatch.setenv("EMOTIOND_HTTP_TOKEN", TOKEN)
    port = free_port()
    config = daemon_config(
        tmp_path / "d", broker, "live-page", emotion_model, source={"uri": str(clip), "realtime": True},
        eyes={"enabled": True}, head_pose={"enabled": True}, tracker={"primary_zone": "seat"},
        zones={"seat": {"polygon": [[0.3, 0.0], [1.0, 0.0], [1.0, 1.0], [0.3, 1.0]]}},
        rules=[{"type": "driver_distraction"}, {"type": "driver_fatigue"}, {"type": "emotion_summary", "period_s": 2.0}],
        http={"enabled": True, "port": port})
    sub = Collector(broker, [f"{prefix('live-page')}/events"])
    d = DaemonProcess(config)
    try:
        wait_listening(d, port)
        # A wrong token: the page is a 401 (Chromium waits at its login prompt) and the stream gives no data.
        browser.get(f"http://viewer:wrong@127.0.0.1:{port}/")
        assert "Primary face" not in browser.page_source and not browser.find_elements("id", "emotion")
        status, _, body = get(port, "/stream", {"Authorization": "Bearer wrong"})
        assert status == 401 and b"event:" not in body

        browser.get(f"http://viewer:{TOKEN}@127.0.0.1:{port}/")  # Basic auth: the browser's own login
        labels = json.loads(emotion_model.with_suffix(".json").read_text())["labels"]
        wait_until(lambda: text_of(browser, "emotion") in labels, 30, "a live emotion label", browser)
        assert text_of(browser, "stream-state") == "live" and text_of(browser, "device") == "live-page"
        eyes = wait_until(lambda: number(text_of(browser, "sig-eye_closed")), 20, "an eye-closure value", browser)
        assert 0.0 <= eyes <= 1.0
        yaw = wait_until(lambda: number(text_of(browser, "sig-head_pose-yaw")), 20, "a head yaw", browser)
        pitch = number(text_of(browser, "sig-head_pose-pitch"))
        assert abs(yaw) < 45 and pitch is not None and abs(pitch) < 45  # she faces the camera
        assert count(browser, "#pose circle.pose-dot[data-signal=head_pose]") == 1 and count(browser, "#road-zone") == 1
        assert "calibrat" in text_of(browser, "road-calibration")
        assert count(browser, "#zones-svg polygon[data-zone=seat]") == 1
        assert "polygon: [[0.300, 0.000]" in browser.execute_script("return document.querySelector('#zones pre[data-zone=seat]').textContent;")

        # An event the daemon publishes (logged once committed) is in the list, with MQTT's id.
        def listed_event() -> str | None:
            ids = {i for t, _, i in d.events() if t == "emotion_summary"}
            rows = browser.execute_script("return [...document.querySelectorAll('#events tbody tr[data-type=emotion_summary]')]"
                                          ".map((r) => r.dataset.id);")
            return next((i for i in rows if i in ids), None)

        event_id = wait_until(listed_event, 30, "an emotion_summary event the daemon logged", browser)
        assert sub.wait_for(lambda msgs: any(json.loads(m.payload)["id"] == event_id for m in msgs), timeout=10)
        assert number(text_of(browser, "health-fps")) > 0 and text_of(browser, "health-delegate") == "cpu"
        assert text_of(browser, "health-broker") == "connected" and text_of(browser, "health-camera") == "online"
        assert count(browser, "#stages tbody tr") >= 5  # detect, track, classify, eyes, head_pose, ...
        preview = browser.find_element("id", "preview")
        shown = cv2.imdecode(np.frombuffer(preview.screenshot_as_png, np.uint8), cv2.IMREAD_COLOR)
        assert shown is not None and best_correlation(shown, clip_thumbnails()) > 0.8  # the clip, annotated

        shot = artifacts_dir(tmp_path) / "live-page.png"
        browser.save_screenshot(str(shot))
        if reporter := request.config.pluginmanager.get_plugin("terminalreporter"):
            reporter.write_line(f"live page screenshot: {shot}")

        # The clip ends: the camera goes offline on the page, then the daemon says goodbye.
        wait_until(lambda: text_of(browser, "camera") == "camera offline", 40, "the camera offline", browser)
        assert text_of(browser, "health-camera") == "offline"
        wait_until(lambda: text_of(browser, "stream-state") == "daemon stopped", 15, "the stream's end", browser)
        assert d.wait(30) == 0
    finally:
        browser.quit()
        sub.close()
        d.kill()
