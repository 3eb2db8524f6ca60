"""Hot reload: new artifacts swap in under load, with no failed request; broken ones are refused."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

from botify.service import ServiceSettings
from tests.servers import ADMIN_HEADERS, PATIENCE, ServiceThread, read_events, wait_until
from tests.test_service import Client


def hammer(port: int, first_user: int, statuses: list[int], stop: threading.Event) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    user = first_user
    while not stop.is_set():
        connection.request("POST", f"/next/{user}", body=b'{"track": 1, "time": 0.5}')
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        user += 1


def test_reload_under_load_drops_nothing(small_world_dir: Path, tmp_path: Path) -> None:
    artifacts = tmp_path / "art"
    (artifacts / "top").mkdir(parents=True)
    (artifacts / "top" / "top_tracks.json").write_text(json.dumps([10, 11, 12]))
    (tmp_path / "e.toml").write_text('default = {kind = "top_pop", artifact = "top/top_tracks.json", k = 3}\n')
    settings = ServiceSettings(catalog=small_world_dir, experiments=tmp_path / "e.toml", artifacts=artifacts,
                               log_dir=tmp_path / "log")
    with ServiceThread(settings) as running:
        client = Client(running.url)
        before = client.call("GET", "/")[1]["data_version"]
        statuses: list[list[int]] = [[] for _ in range(6)]
        stop = threading.Event()
        threads = [threading.Thread(target=hammer, args=(running.port, i * 1_000_000, statuses[i], stop))
                   for i in range(6)]
        answered = lambda: sum(map(len, statuses))  # noqa: E731
        for thread in threads:
            thread.start()
        wait_until(lambda: answered() >= 150, "150 answers before the reload")
        (artifacts / "top" / "top_tracks.json").write_text(json.dumps([20, 21, 22]))
        status, answer = client.call("POST", "/admin/reload", b"", ADMIN_HEADERS)
        assert status == 200 and answer["previous_version"] == before and answer["data_version"] != before
        reloaded = answered()
        time.sleep(1.0)  # reloads are at least reload_interval (1 s) apart
        (artifacts / "top" / "top_tracks.json").write_text("[1, 2, ")  # broken
        status, refused = client.call("POST", "/admin/reload", b"", ADMIN_HEADERS)
        assert status == 422 and "still serving" in refused["detail"]
        wait_until(lambda: answered() >= reloaded + 150, "150 answers after the reloads")
        stop.set()
        for thread in threads:
            thread.join(PATIENCE)
        assert client.call("GET", "/")[1]["data_version"] == answer["data_version"]
    codes = [code for part in statuses for code in part]
    assert len(codes) >= 300 and set(codes) == {200}
    events = read_events(tmp_path / "log")
    versions = {event["data_version"] for event in events}
    assert versions == {before, answer["data_version"]}
    for event in events:
        expected = {10, 11, 12} if event["data_version"] == before else {20, 21, 22}
        assert event["recommendation"] in expected
