"""botify studio in a real browser (headless Chromium driven by Playwright) against real servers.

Each view loads without console errors; a person's listening session goes through the
service's API into the event log; a simulated listener's request queued for a person is
answered from the page and the simulator carries on; the dashboard shows what `botify analyze`
prints on the same logs. `pytest --screenshots docs` saves the README's pictures of the views.
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from botify.cli.main import cli
from botify.errors import BotifyError
from botify.service import Experiment, ServiceSettings
from botify.service.models import PEOPLE_FIRST
from botify.sim import AgentSpec, SimSettings, Simulation
from tests.servers import ADMIN, PATIENCE, ServiceThread, read_events, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LISTEN_EXPERIMENTS = ('default = "random"\n[[experiments]]\nname = "STUDIO"\n'
                      'treatments = ["random", { recommender = { kind = "sticky_artist", fallback = "random" } }]\n')
PERSON_EXPERIMENTS = ('default = "random"\n[[experiments]]\nname = "PEOPLE"\ntreatments = ["random", '
                      '{ recommender = { kind = "botify.studio:Person", params = { timeout = 300 }, '
                      'fallback = "sticky_artist" } }]\n')


def _studio(world_dir: Path, root: Path, experiments: str) -> ServiceThread:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "experiments.toml"
    config.write_text(experiments)
    return ServiceThread(ServiceSettings(catalog=world_dir, experiments=config, log_dir=root / "log", studio=True))


@pytest.fixture(scope="module")
def listen_studio(small_world_dir, tmp_path_factory):
    with _studio(small_world_dir, tmp_path_factory.mktemp("listen"), LISTEN_EXPERIMENTS) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser, request):
    """A page that records console errors and uncaught exceptions; none may happen."""
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    opened = context.new_page()
    opened.set_default_timeout(PATIENCE * 1000)  # a page's waits, on a machine that may be slow
    problems: list[str] = []
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.problems = problems
    yield opened
    context.close()
    assert not problems, f"console errors: {problems}"


def _shoot(page, request, name: str) -> None:
    folder = request.config.getoption("--screenshots")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"studio-{name}.png"), full_page=True)


def _call(url: str, method: str, path: str, body: bytes | None = None, token: str | None = None):
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=PATIENCE)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, json.loads(payload) if payload else None


def _simulate(world, world_dir: Path, agent: AgentSpec, settings: SimSettings) -> threading.Thread:
    """A simulated day in a thread (its client runs an event loop; Playwright's holds this thread's)."""
    day = threading.Thread(daemon=True)
    day.summaries, day.errors = [], []

    def run() -> None:
        simulation = Simulation(world_dir, agent, settings, world=world)
        try:
            day.summaries.append(simulation.run_day(1))
        except BotifyError as error:
            day.errors.append(error)
        finally:
            simulation.close()

    day.run = run
    day.start()
    return day


def test_bad_input_gets_4xx_with_a_message(listen_studio) -> None:
    url = listen_studio.url
    person = json.dumps({"user": PEOPLE_FIRST, "track": 1, "time": 1.0}).encode()
    cases = [
        ("POST", "/studio/api/next", b"not json", None, 400),
        ("POST", "/studio/api/next", b'{"user": 5, "track": 1, "time": 1.0}', None, 422),  # not a person's id
        ("POST", "/studio/api/next", json.dumps({"user": PEOPLE_FIRST, "track": 10**9, "time": 1}).encode(), None, 422),
        ("POST", "/studio/api/next", json.dumps({"user": PEOPLE_FIRST, "track": 1, "time": 1.5}).encode(), None, 422),
        ("POST", "/studio/api/next", b'{"user": 2000000000, "track": "1", "time": 1.0}', None, 422),
        ("POST", "/studio/api/last", b'{"user": 2000000000, "track": 1, "time": NaN}', None, 422),
        ("POST", "/studio/api/next", person[:-1] + b', "extra": 1}', None, 422),
        ("POST", "/studio/api/next", b"x" * 5000, None, 413),
        ("GET", "/studio/api/next", None, None, 405),
        ("GET", "/studio/api/search?q=", None, None, 422),
        ("GET", "/studio/api/search?q=a&limit=0", None, None, 422),
        ("GET", "/studio/api/search?q=a&limit=lots", None, None, 422),
        ("GET", "/studio/api/suggest", None, None, 422),
        ("GET", "/studio/api/suggest?request=99", None, None, 404),
        ("GET", "/studio/api/watch?experiment=NOPE", None, None, 422),
        ("GET", "/studio/api/nothing", None, None, 404),
        ("GET", "/studio/static/../app.py", None, None, 404),
        ("POST", "/studio/api/answer", b'{"request": 1, "track": 1}', None, 401),  # control actions need the token
        ("POST", "/studio/api/reload", b"{}", "wrong", 401),
        ("POST", "/studio/api/answer", b'{"request": 1, "track": 1}', ADMIN, 404),
        ("POST", "/studio/api/answer", b'{"request": 0, "track": 1}', ADMIN, 422),
    ]
    for method, path, body, token, expected in cases:
        status, answer = _call(url, method, path, body, token)
        assert status == expected, (method, path, body, status, answer)
        assert answer["detail"], (method, path)
    status, answer = _call(url, "POST", "/studio/api/reload", b"{}", ADMIN)
    assert status == 200 and answer["reloaded"]
    assert ServiceSettings.model_fields["host"].default == "127.0.0.1"  # the studio is the service's: loopback


def test_command_line_mistakes_are_one_line(small_world_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[[experiments]]\nname = "X"\ntreatments = ["random", { recommender = { kind = '
                      '"botify.studio:Person", params = { timeout = 9999 } } }]\n')
    for args, message in (
        (["studio", "--workers", "2", "--redis", "redis://127.0.0.1:1/0", "--log-dir", str(tmp_path)], "one worker"),
        (["serve", "--studio", "--catalog", str(small_world_dir), "--experiments", str(broken), "--log-dir",
          str(tmp_path), "--port", "0"], "timeout: input should be less than or equal to"),
        (["sim", "run", "--world", str(small_world_dir), "--agent", "studio"], "needs --url"),
        (["sim", "run", "--world", str(small_world_dir), "--agent", "studio", "--url", "http://127.0.0.1:1",
          "--processes", "2"], "one process"),
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output.lower() and "Traceback" not in result.output, result.output
        assert result.output.strip().splitlines()[-1].startswith("error: "), result.output


def test_views_load_without_console_errors(listen_studio, page, request) -> None:
    for view, ready in (("listen", "#listener:not(:empty)"), ("recommend", "#queue li"), ("watch", "#lines")):
        page.goto(f"{listen_studio.url}/studio/#{view}")
        page.wait_for_selector(f"#{view}:not([hidden])")
        page.wait_for_selector(ready)
        assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    assert not page.problems


def test_a_person_listens_through_the_service(listen_studio, small_world, page, request) -> None:
    page.goto(f"{listen_studio.url}/studio/#listen")
    page.wait_for_function("document.querySelector('#listener').textContent.length > 3")
    user = int(page.inner_text("#listener"))
    assert user >= PEOPLE_FIRST
    artist = small_world.catalog.records[0]["artist"]
    page.fill("#listen-search input", artist)
    page.click("#listen-search button")
    page.click("#listen-results li button >> nth=0")
    for share in ("1", "0.5", "0"):
        count = page.locator("#listen-session tbody tr").count()
        page.click(f"[data-share='{share}']")
        page.wait_for_function(f"document.querySelectorAll('#listen-session tbody tr').length > {count}")
        if share == "1":
            assert page.inner_text("#session-total") == "1 track, total time 1.00"
    served = page.inner_text("#now-served")
    assert "STUDIO" in served and ("random" in served or "sticky_artist" in served)
    page.fill("#share", "0.3")
    page.dispatch_event("#share", "input")
    _shoot(page, request, "listen")
    page.click("#leave")
    page.wait_for_selector("#session-over:not([hidden])")
    assert "4 tracks, total time 1.80" in page.inner_text("#session-over")
    rows = page.locator("#listen-session tbody tr")
    assert rows.count() == 4 and "STUDIO" in rows.nth(2).inner_text()

    events = [event for event in read_events(listen_studio.settings.log_dir) if event["user"] == user]
    assert [event["message"] for event in events] == ["next", "next", "next", "last"]
    assert [event["time"] for event in events] == [1.0, 0.5, 0.0, 0.3]
    assert all(event["agent"] == "person" for event in events)
    assert small_world.catalog.records[events[0]["track"]]["artist"] == artist
    from botify.analysis.engine import user_metrics

    users, _ = user_metrics([listen_studio.settings.log_dir], "STUDIO")
    row = list(users["user"]).index(user)
    assert users["sessions"][row] == 1 and users["time"][row] == pytest.approx(1.8)


def test_dashboard_shows_what_botify_analyze_prints(listen_studio, small_world, small_world_dir, page, request):
    day = _simulate(small_world, small_world_dir, AgentSpec(kind="remote", url=listen_studio.url, connections=8),
                    SimSettings(episodes=300, seed=11, chunk_size=100))
    day.join(PATIENCE)
    assert day.summaries, day.errors
    log_dir = listen_studio.settings.log_dir
    result = CliRunner().invoke(cli, ["analyze", str(log_dir), "--experiment", "STUDIO", "--format", "json"])
    assert result.exit_code == 0, result.output
    expected = json.loads(result.stdout)

    page.goto(f"{listen_studio.url}/studio/#watch")
    page.wait_for_function(f"document.querySelector('#lines').dataset.value === '{expected['lines']}'")
    page.wait_for_selector("#verdict tbody tr[data-treatment='T1'] td[data-field='effect']:not(:empty)")
    for treatment, users in expected["users"].items():
        row = page.locator(f"#verdict tbody tr[data-treatment='{treatment}']")
        assert int(row.locator("[data-field='users']").inner_text()) == users
    (comparison,) = [item for item in expected["comparisons"] if item["metric"] == "mean_time_per_session"]
    row = page.locator(f"#verdict tbody tr[data-treatment='{comparison['treatment']}']")
    effect = row.locator("[data-field='effect']")
    assert float(effect.get_attribute("data-value")) == comparison["effect"]
    assert effect.inner_text() == f"{comparison['effect']:+.2f}%"
    ci = row.locator("[data-field='ci']")
    assert float(ci.get_attribute("data-lower")) == comparison["lower"]
    assert float(ci.get_attribute("data-upper")) == comparison["upper"]
    assert ci.inner_text() == f"[{comparison['lower']:+.2f}, {comparison['upper']:+.2f}]"
    assert float(row.locator("[data-field='p_holm']").get_attribute("data-value")) == comparison["p_holm"]
    assert float(row.locator("[data-field='mean']").get_attribute("data-value")) == \
        pytest.approx(comparison["treatment_mean"], rel=1e-12)
    assert float(page.get_attribute("#srm", "data-value")) == expected["srm_p_value"]
    sessions = sum(int(text) for text in page.locator("#verdict [data-field='sessions']").all_inner_texts())
    finished = sum(1 for event in read_events(log_dir) if event["message"] == "last")
    assert sessions == finished  # every finished session of the log is in a treatment of STUDIO
    assert float(page.inner_text("#latency")) > 0 or page.inner_text("#latency") == "–"
    page.click("#recent details >> nth=0")
    assert page.locator("#recent details[open] tr").count() >= 1
    _shoot(page, request, "watch")


def test_a_person_answers_a_simulated_listener(small_world, small_world_dir, tmp_path, page, request) -> None:
    with _studio(small_world_dir, tmp_path, PERSON_EXPERIMENTS) as running:
        people = Experiment(name="PEOPLE", treatments=2)
        listener = next(user for user in range(PEOPLE_FIRST, PEOPLE_FIRST + 100) if people.assign(user) == 1)
        status, served = _call(running.url, "POST", "/studio/api/next",
                               json.dumps({"user": listener, "track": 3, "time": 1.0}).encode())
        assert status == 200 and served["experiments"] == {"PEOPLE": "T1"}  # a person listening is not queued
        assert served["recommender"] == "sticky_artist" and served["fallback"]
        day = _simulate(small_world, small_world_dir, AgentSpec(kind="studio", url=running.url),
                        SimSettings(episodes=8, seed=5))
        page.goto(f"{running.url}/studio/#recommend&token={ADMIN}")
        page.wait_for_selector("#queue li[data-request]")
        page.click("#queue li[data-request] >> nth=0")
        page.wait_for_selector("#suggestions .suggestion button")
        picked = page.locator("#suggestions .suggestion li").first.inner_text()
        _shoot(page, request, "recommend")
        page.click("#suggestions .suggestion button >> nth=0")
        page.wait_for_function("document.querySelector('#answered').textContent === '1'")
        assert page.locator("#error").is_hidden(), page.inner_text("#error")

        deadline = time.monotonic() + 5 * PATIENCE
        answered = 1
        while day.is_alive() and time.monotonic() < deadline:  # answer the rest by the API, quickly
            status, queue = _call(running.url, "GET", "/studio/api/queue")
            for waiting in queue["requests"]:
                track = (waiting["session"][-1]["track"] + 1) % small_world.catalog.size
                body = json.dumps({"request": waiting["request"], "track": track})
                status, _ = _call(running.url, "POST", "/studio/api/answer", body.encode(), ADMIN)
                answered += status == 200
            time.sleep(0.02)
        day.join(PATIENCE)
        page.goto("about:blank")  # before the server stops under the page's polling
        assert day.summaries and day.summaries[0].sessions == 8, f"the simulator did not carry on: {day.errors}"
        events = read_events(running.settings.log_dir)
    by_person = [event for event in events if event.get("recommender") == "person"]
    assert len(by_person) == answered
    assert any(picked.startswith(small_world.catalog.records[event["recommendation"]]["title"]) for event in by_person)
    assert sum(event["message"] == "last" for event in events) == 8


def test_shutdown_hands_held_requests_to_the_fallback(small_world, small_world_dir, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from botify.service.process import ServiceProcess

    config = tmp_path / "experiments.toml"
    config.write_text(PERSON_EXPERIMENTS)
    service = ServiceProcess("--studio", "--catalog", small_world_dir, "--experiments", config,
                             "--log-dir", tmp_path / "log", "--shutdown-timeout", "300",
                             log_file=tmp_path / "service.log")
    with ThreadPoolExecutor(1) as pool:  # its client runs an event loop: off Playwright's, if a browser is open
        pool.submit(service.start).result()
    try:
        day = _simulate(small_world, small_world_dir, AgentSpec(kind="studio", url=service.url, outage=0),
                        SimSettings(episodes=8, seed=5))
        wait_until(lambda: _call(service.url, "GET", "/studio/api/queue")[1]["requests"], "a request held for a person",
                   every=0.05)
        stopping = time.monotonic()
    finally:
        service.stop(timeout=2 * 300)
    assert time.monotonic() - stopping < PATIENCE  # not the 300 s of the graceful-shutdown deadline
    day.join(PATIENCE)
    assert day.errors  # the simulator's service went away under it
    events = read_events(tmp_path / "log")
    held = [event for event in events if event["experiments"]["PEOPLE"] == "T1" and event["message"] == "next"]
    assert held and all(event["recommender"] == "sticky_artist" and event["fallback"] for event in held)
    assert len({event["request_id"] for event in events}) == len(events)
    assert "Cancel" not in (tmp_path / "service.log").read_text()
