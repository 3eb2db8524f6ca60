"""The service over real HTTP on loopback: API contract, validation, experiments, event log."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from pathlib import Path

import pytest

from botify.events.schema import FIELDS, SCHEMA_VERSION
from botify.service import ServiceSettings
from botify.service.experiments import Experiment
from botify.sim import AgentSpec, SimSettings, Simulation
from botify.world import World
from tests.servers import PATIENCE, ServiceThread, read_events, wait_until


class Client:
    """A plain keep-alive HTTP client, like the course's `requests` calls."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=PATIENCE)

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        self.connection.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None

    def post(self, path: str, document) -> tuple[int, dict]:
        return self.call("POST", path, json.dumps(document).encode())


@pytest.fixture()
def service(small_world_dir: Path, tmp_path: Path):
    experiments = tmp_path / "experiments.toml"
    experiments.write_text(
        'default = "random"\n'
        '[[experiments]]\nname = "AA"\ntreatments = 3\n'
        '[[experiments]]\nname = "STICKY"\ntreatments = ["random", "sticky_artist"]\n'
        '[[experiments]]\nname = "OFF"\nactive = false\ntreatments = 2\n'
    )
    settings = ServiceSettings(catalog=small_world_dir / "tracks.json", log_dir=tmp_path / "log",
                               experiments=experiments)
    with ServiceThread(settings) as running:
        yield running


def _events(service: ServiceThread) -> list[dict]:
    """The events written so far: an answered request's event is in the file before its answer."""
    return read_events(service.settings.log_dir)


def test_course_api_contract(service, small_world: World) -> None:
    client = Client(service.url)
    status, root = client.call("GET", "/")
    assert status == 200 and root["status"] == "alive" and root["tracks"] == small_world.catalog.size
    assert root["message"] == "welcome to botify, the best toy music recommender"  # the course's greeting
    assert root["experiments"] == {"AA": ["C", "T1", "T2"], "STICKY": ["C", "T1"]}
    assert client.call("GET", "/health") == (200, {"status": "ok"})
    status, ready = client.call("GET", "/ready")
    assert status == 200 and ready["ready"] is True
    # The course's Track: the catalog record with its `recommendations` (none in botify's catalogs).
    assert client.call("GET", "/track/5") == (200, {**small_world.catalog.records[5], "recommendations": []})
    status, answer = client.post("/next/17", {"track": 5, "time": 0.5})
    assert status == 200 and set(answer) == {"user", "track"} and answer["user"] == 17
    assert 0 <= answer["track"] < small_world.catalog.size
    assert client.post("/last/17", {"track": answer["track"], "time": 0.0}) == (200, {"user": 17})
    status, document = client.call("GET", "/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    assert {"/", "/track/{track}", "/next/{user}", "/last/{user}", "/health", "/ready"} <= set(document["paths"])
    assert document["components"]["schemas"]["ListenBody"]["required"] == ["track", "time"]


def test_events_in_the_courses_format(service) -> None:
    client = Client(service.url)
    client.post("/next/3", {"track": 1, "time": 1.0})
    client.post("/last/3", {"track": 2, "time": 0.3})
    next_event, last_event = _events(service)
    for event in (next_event, last_event):
        assert set(event) <= set(FIELDS) and event["schema"] == SCHEMA_VERSION
        assert {"message", "timestamp", "user", "track", "time", "latency", "experiments", "request_id",
                "data_version"} <= set(event)
        assert abs(event["timestamp"] / 1000 - time.time()) < 60 and 0 <= event["latency"] < 1
        assert set(event["experiments"]) == {"AA", "STICKY"}
    assert next_event["message"] == "next" and next_event["track"] == 1 and next_event["time"] == 1.0
    assert isinstance(next_event["recommendation"], int) and next_event["recommender"] in ("random", "sticky_artist")
    assert 0 < next_event["propensity"] <= 1 and next_event["candidates"] >= 1 and next_event["schema"] == SCHEMA_VERSION
    assert next_event["propensity"] == pytest.approx(1 / next_event["candidates"])  # both serve uniform draws
    assert last_event["message"] == "last" and "recommendation" not in last_event
    assert next_event["request_id"] != last_event["request_id"]


def test_experiments_route_and_are_logged_with_the_courses_assignment(service, small_world: World) -> None:
    client = Client(service.url)
    aa, sticky = Experiment(name="AA", treatments=3), Experiment(name="STICKY", treatments=2)
    for user in range(60):
        client.post(f"/next/{user}", {"track": 0, "time": 1.0})
    events = _events(service)
    assert len(events) == 60
    artist_of = {r["track"]: r["artist"] for r in small_world.catalog.records}
    for event in events:
        user = event["user"]
        assert event["experiments"] == {"AA": aa.treatment_names[aa.assign(user)],
                                        "STICKY": sticky.treatment_names[sticky.assign(user)]}
        if event["experiments"]["STICKY"] == "T1":
            assert event["recommender"] == "sticky_artist"
            assert artist_of[event["recommendation"]] == artist_of[0]
        else:
            assert event["recommender"] == "random"


BAD_BODIES = [
    (b"not json", 400, "not valid JSON"),
    (b"", 400, "not valid JSON"),
    (b"[1, 2]", 422, "object"),
    (b'{"time": 0.5}', 422, "track: field required"),
    (b'{"track": 1}', 422, "time: field required"),
    (b'{"track": "12", "time": 0.5}', 422, "track: input should be a valid integer, got '12'"),
    (b'{"track": 1.7, "time": 0.5}', 422, "track: input should be a valid integer"),
    (b'{"track": true, "time": 0.5}', 422, "track"),
    (b'{"track": null, "time": 0.5}', 422, "track"),
    (b'{"track": 1, "time": null}', 422, "time: input should be a valid number, got None"),
    (b'{"track": 1, "time": NaN}', 422, "time: input should be a finite number"),
    (b'{"track": 1, "time": Infinity}', 422, "time: input should be a finite number"),
    (b'{"track": 1, "time": 1.5}', 422, "time: input should be less than or equal to 1"),
    (b'{"track": 1, "time": -0.1}', 422, "time: input should be greater than or equal to 0"),
    (b'{"track": -1, "time": 0.5}', 422, "track: input should be greater than or equal to 0"),
    (b'{"track": 99999999, "time": 0.5}', 422, "track 99999999 is not in the catalog"),
    (b'{"track": 123456789012345678901234567890, "time": 0.5}', 422, "track"),
    (b'{"track": 1, "time": 0.5' + b" " * 5000 + b"}", 413, "over the limit"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_BODIES, ids=[b[2] for b in BAD_BODIES])
def test_bad_bodies_get_4xx_and_leave_no_trace(service, body: bytes, status: int, message: str) -> None:
    client = Client(service.url)
    for endpoint in ("next", "last"):
        got, answer = client.call("POST", f"/{endpoint}/5", body)
        assert got == status and message in answer["detail"], answer
    # The rejected requests reached neither the store nor the log; the next good one works.
    store = service.app.service.store
    assert asyncio.run(store.history(5)) == [], store
    assert client.post("/next/5", {"track": 2, "time": 0.5})[0] == 200
    assert [event["track"] for event in _events(service)] == [2]


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", "/next/-1", 422, "user must be an integer id"),
        ("POST", "/next/abc", 422, "user must be an integer id"),
        ("POST", "/next/99999999999", 422, "user must be an integer id"),
        ("POST", "/next/1.5", 422, "user must be an integer id"),
        ("GET", "/next/1", 405, "use POST"),
        ("GET", "/track/999999", 404, "not in the catalog"),
        ("GET", "/track/x", 422, "track must be an integer"),
        ("GET", "/nowhere", 404, "no such endpoint"),
        ("DELETE", "/", 405, "not allowed"),
    ],
)
def test_bad_paths_and_methods(service, method: str, path: str, status: int, message: str) -> None:
    got, answer = Client(service.url).call(method, path, b'{"track": 1, "time": 0.5}')
    assert got == status and message in answer["detail"]


def test_a_bad_request_does_not_poison_the_user(service) -> None:
    """The course's service kept failing a user after one `time: null`."""
    client = Client(service.url)
    assert client.call("POST", "/next/9", b'{"track": 1, "time": null}')[0] == 422
    for track in range(10):
        assert client.post("/next/9", {"track": track, "time": 0.5})[0] == 200


def test_oversized_content_length_is_refused_before_reading(service) -> None:
    client = Client(service.url)
    status, answer = client.call("POST", "/next/1", b"{}", headers={"Content-Length": "10000000"})
    assert status == 413


def test_remote_agent_runs_a_day_against_the_service(service, small_world_dir: Path, small_world: World) -> None:
    spec = AgentSpec(kind="remote", url=service.url, connections=8)
    simulation = Simulation(small_world_dir, spec, SimSettings(episodes=300, seed=5), world=small_world)
    summary = simulation.run_day(1)
    simulation.close()
    events = _events(service)
    assert summary.sessions == 300 and summary.as_dict()["agent_failures"] == 0
    assert sum(e["message"] == "last" for e in events) == 300
    assert sum(e["message"] == "next" for e in events) == summary.result.steps
    # Sticky-artist sessions keep the listener longer than random ones.
    by_user_time = {}
    for e in events:
        by_user_time.setdefault(e["experiments"]["STICKY"], []).append(e["time"])
    assert sum(by_user_time["T1"]) / len(by_user_time["T1"]) > sum(by_user_time["C"]) / len(by_user_time["C"])


def test_service_on_redis_answers_503_during_an_outage_and_recovers(
    small_world_dir: Path, small_world: World, tmp_path: Path, redis_server, redis_url: str
) -> None:
    settings = ServiceSettings(catalog=small_world_dir, log_dir=tmp_path / "log", redis=redis_url, redis_timeout=0.3)
    with ServiceThread(settings) as running:
        client = Client(running.url)
        assert client.post("/next/1", {"track": 4, "time": 1.0})[0] == 200
        assert client.call("GET", "/track/4")[0] == 200
        redis_server.pause()
        try:
            statuses, waited = [], []
            for _ in range(10):
                started = time.monotonic()
                statuses.append(client.post("/next/1", {"track": 5, "time": 1.0}))
                waited.append(time.monotonic() - started)
            # The first call waits out the 0.3 s Redis timeout; then the store is known down and
            # the others are refused at once, not after 0.3 s each.
            assert sum(seconds >= 0.3 for seconds in waited) <= 2, waited
            assert all(status == 503 and "Redis" in answer["detail"] for status, answer in statuses)
            assert client.call("GET", "/ready")[0] == 503
        finally:
            redis_server.resume()
        redis_server.stop()
        redis_server.start()  # back, but empty
        wait_until(lambda: client.post("/next/1", {"track": 6, "time": 1.0})[0] == 200, "the service's recovery",
                   every=0.1)
        assert client.call("GET", "/track/4") == (200, {**small_world.catalog.records[4], "recommendations": []})
        assert client.call("GET", "/ready")[0] == 200
    events = read_events(tmp_path / "log")
    assert [e["track"] for e in events] == [4, 6]  # 503s were not logged


@pytest.mark.parametrize("store", ["embedded", "redis"])
def test_sessions_through_the_api(small_world_dir: Path, tmp_path: Path, store: str, request) -> None:
    """A listener penalises repeats within a session only: by default a track recommended in
    one session may come back in the next (heard = "session"), unlike with heard = "history"."""
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "i2i.jsonl").write_text('{"track": 0, "recommendations": [5, 6], "scores": [0.9, 0.8]}\n')
    (tmp_path / "e.toml").write_text(
        'default = "random"\n[[experiments]]\nname = "HEARD"\ntreatments = [\n'
        '  {recommender = {kind = "i2i", artifact = "i2i.jsonl", ranked = true}},\n'
        '  {recommender = {kind = "i2i", artifact = "i2i.jsonl", ranked = true, heard = "history"}},\n]\n'
    )
    redis = request.getfixturevalue("redis_url") if store == "redis" else None
    settings = ServiceSettings(catalog=small_world_dir, experiments=tmp_path / "e.toml", artifacts=tmp_path / "art",
                               log_dir=tmp_path / "log", redis=redis)
    experiment = Experiment(name="HEARD", treatments=2)
    by_session = next(user for user in range(100) if experiment.assign(user) == 0)
    by_history = next(user for user in range(100) if experiment.assign(user) == 1)
    with ServiceThread(settings) as running:
        client = Client(running.url)

        def session(user: int) -> list[int]:
            answers = [client.post(f"/next/{user}", {"track": 0, "time": 1.0})[1]["track"]]
            answers.append(client.post(f"/next/{user}", {"track": answers[0], "time": 1.0})[1]["track"])
            assert client.post(f"/last/{user}", {"track": answers[1], "time": 1.0})[0] == 200
            return answers

        # Anchored on the session's first track (0): 5, then 6 (5 is heard in this session).
        assert session(by_session) == [5, 6]
        assert session(by_session) == [5, 6]  # a new session: 5 and 6 may come back
        assert session(by_history)[:2] == [5, 6]
        second = session(by_history)  # 5 and 6 are in the long history: the fallback answers
        assert 5 not in second and 6 not in second
        client.post(f"/next/{by_session}", {"track": 0, "time": 1.0})  # opens a third session
        if store == "redis":
            server = request.getfixturevalue("redis_server")
            assert server.command("LLEN", f"botify:session:{by_session}").strip() == "1"
            assert server.command("LLEN", f"botify:session:{by_history}").strip() == "0"  # closed at /last
            assert 0 < int(server.command("PTTL", f"botify:session:{by_session}")) <= 3_600_000
        else:
            store_of = running.app.service.store
            assert [listen.track for listen in asyncio.run(store_of.session(by_session))] == [0]
            assert asyncio.run(store_of.session(by_history)) == []  # closed at /last


LISTEN_BODIES = [
    b'{"track": 1, "time": 0.5}', b'{"track": 1, "time": 1}', b'{"track": 0, "time": 0}', b'{"track": 1, "time": -0.0}',
    b'{"track": 4611686018427387904, "time": 1.0}', b'{"track": 4611686018427387905, "time": 1.0}',
    b'{"track": 1, "time": 1e-400}', b'{"track": 1, "time": 1.0000000001}', b'{"track": 1, "time": true}',
    b'{"track": 1, "time": "0.5"}', b'{"track": 1, "time": 0.5, "extra": [1]}', b'{"track": 1, "time": 0.5, "track": 2}',
    b'{"track": 1.0, "time": 0.5}', b'{"track": false, "time": 0.5}', b'[{"track": 1, "time": 0.5}]', b'7', b'null',
    b'{"track": 1, "time": NaN}', b'{"track": 1}', b'{"track": 1, "time": 0.5', b'\xff', b'{"track": -0, "time": 0.5}',
]


@pytest.mark.parametrize("body", LISTEN_BODIES)
def test_the_fast_body_reader_agrees_with_the_model(body: bytes) -> None:
    """`read_listen` reads well-formed bodies without pydantic: it accepts exactly what
    `ListenBody` accepts, with the same values, and fails with the model's own error otherwise."""
    from pydantic import ValidationError

    from botify.service.models import ListenBody, read_listen

    try:
        expected = ListenBody.model_validate_json(body)
    except ValidationError as error:
        with pytest.raises(ValidationError) as raised:
            read_listen(body)
        assert repr(raised.value.errors()) == repr(error.errors())  # repr: an input NaN equals itself
        return
    track, share = read_listen(body)
    assert (track, share) == (expected.track, expected.time) and type(share) is float and type(track) is int


def test_docs_page_serves_the_openapi_document_without_a_cdn(service) -> None:
    """/docs is Swagger UI from the installed swagger-ui-bundle package, every file from the
    service itself (the page names no other host)."""
    client = Client(service.url)
    client.connection.request("GET", "/docs")
    response = client.connection.getresponse()
    page = response.read().decode()
    assert response.status == 200 and response.getheader("content-type").startswith("text/html")
    assert "://" not in page and "/docs/swagger-ui-bundle.js" in page
    for name, kind, least in (("swagger-ui-bundle.js", "text/javascript", 500_000), ("swagger-ui.css", "text/css", 10_000),
                              ("botify-docs.js", "text/javascript", 50)):
        client.connection.request("GET", f"/docs/{name}")
        response = client.connection.getresponse()
        body = response.read()
        assert response.status == 200 and response.getheader("content-type").startswith(kind) and len(body) > least
    assert b"/openapi.json" in body
    status, answer = client.call("GET", "/docs/../../etc/passwd")
    assert status == 404 and "no such file" in answer["detail"]
