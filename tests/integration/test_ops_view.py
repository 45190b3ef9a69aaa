"""The ops view in a real browser: headless Chromium against a real ``airflow api-server`` after real runs.

Two real training runs (``airflow dags test loan_default_training``, tuning skipped; the second
forced to promotion) put versions 1 and 2 in the MLflow registry (2 the champion, 1 the previous
champion), a real scoring run and a real monitoring run give the page a monitoring report, and
the api-server (simple auth manager, users ``ops`` (role op) and ``watcher`` (role viewer))
loads the plugin from the repository's plugins folder. The browser logs in through Airflow's
login page and checks the Models page, the nav entry, the step tasks' extra links, a refused
rollback (watcher) and a confirmed one (ops), and the metrics endpoint.

Screenshots go to ``$MLPIPE_TEST_ARTIFACTS/ops_view/`` (default ``.state/test-artifacts/ops_view/``).
Needs the Debian packages ``chromium`` and ``chromedriver`` (skipped without them, failed under ``CI=true``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
import requests

from mlpipe.core import uris
from mlpipe.core.assets import AssetKey, asset_uri
from mlpipe.core.results import Register, Train
from mlpipe.store import audit, runs
from tests import services
from tests.conftest import DATA_PATH, ROOT, airflow_env

pytestmark = pytest.mark.integration
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TRAINING = "loan_default_training"
MLFLOW_UI = "http://mlflow.invalid:5000"
USERS = {"ops": "op", "watcher": "viewer"}


def require_browser() -> None:
    """Fail (under CI) or skip (elsewhere) without the Debian packages chromium and chromedriver."""
    missing = [path.name for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = f"this test needs {', '.join(missing)}: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def artifacts_dir() -> Path:
    folder = Path(os.environ.get("MLPIPE_TEST_ARTIFACTS") or ROOT / ".state" / "test-artifacts") / "ops_view"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Real runs in a fresh Airflow home, store and MLflow; then a running api-server. Yields its facts."""
    require_browser()
    tmp = tmp_path_factory.mktemp("ops_view")
    home, port = tmp / "airflow", services.free_port()
    home.mkdir()
    passwords = {user: secrets.token_urlsafe(10) for user in USERS}
    (home / "passwords.json").write_text(json.dumps(passwords))
    env = airflow_env(
        home,
        MLPIPE_STORE=uris.normalize(tmp / "store"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
        MLPIPE_MLFLOW_ARTIFACTS=uris.normalize(tmp / "mlartifacts"), MLPIPE_PII_KEY="test-key-not-a-secret",
        MLPIPE_MLFLOW_UI=MLFLOW_UI, MLPIPE_RUNTIME="local",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(f"{u}:{r}" for u, r in USERS.items()),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}", AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__SECRET_KEY=secrets.token_hex(16), AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
    )
    for key in [k for k in env if k.startswith(("AWS_", "MLPIPE_SERVER"))]:
        env.pop(key)

    def airflow(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                             timeout=600, cwd=tmp)
        assert out.returncode == 0, f"airflow {' '.join(args)}:\n{(out.stdout + out.stderr)[-5000:]}"
        return out.stdout + out.stderr

    started = time.monotonic()
    airflow("db", "migrate")
    airflow("dags", "reserialize")  # `dags test` of a DAG with deadline alerts needs them in the database
    airflow("dags", "test", TRAINING, "-c", json.dumps({"skip_tuning": True, "notes": "first"}))
    airflow("dags", "test", TRAINING, "-c", json.dumps({"skip_tuning": True, "force_promote": True,
                                                        "notes": "second"}))
    batch = tmp / "batch.csv"
    pd.read_csv(DATA_PATH).drop(columns=["Class"]).sample(2000, random_state=1).to_csv(batch, index=False)
    airflow("dags", "test", "loan_default_scoring", "-c", json.dumps({"input_uri": batch.as_uri()}))
    airflow("dags", "test", "loan_default_monitoring")
    setup_seconds = time.monotonic() - started
    api = services.spawn("airflow api-server", [str(services.BIN / "airflow"), "api-server", "--host", "127.0.0.1",
                                                "--port", str(port), "--workers", "1"],
                         home / "logs" / "api-server.log", env=env, cwd=tmp)
    try:
        api.wait_for(lambda: services.http_ok(f"http://127.0.0.1:{port}/api/v2/monitor/health"),
                     "answering its health check", 180)
        yield {"url": f"http://127.0.0.1:{port}", "env": env, "passwords": passwords, "api": api, "tmp": tmp,
               "setup_seconds": setup_seconds}
    finally:
        api.stop()


@pytest.fixture(scope="module")
def mlflow_env(deployment):
    """This process's MLflow and store settings pointed at the deployment's (to read what the page shows)."""
    with pytest.MonkeyPatch.context() as patch:
        for key in ("MLPIPE_STORE", "MLFLOW_TRACKING_URI"):
            patch.setenv(key, deployment["env"][key])
        yield


def token(deployment, user: str) -> str:
    response = requests.post(f"{deployment['url']}/auth/token", timeout=30,
                             json={"username": user, "password": deployment["passwords"][user]})
    assert response.status_code < 300, response.text
    return response.json()["access_token"]


def aliases() -> dict[str, int]:
    from mlflow import MlflowClient

    return {name: int(v) for name, v in MlflowClient().get_registered_model("loan_default").aliases.items()}


@pytest.fixture(scope="module")
def browser(deployment):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2200"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def showing(driver, text: str, timeout: float = 60) -> None:
    """Wait until the page holds ``text`` (any case); a timeout names it."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda page: text in page.page_source.lower(), f"no {text!r} on the page")


def wait(driver, css: str, timeout: float = 60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def log_in(driver, deployment, user: str, then: str) -> None:
    """Log in as ``user`` through Airflow's login page, on the way to ``then``."""
    driver.delete_all_cookies()
    driver.get(deployment["url"] + then)
    wait(driver, "input[type=password]")
    assert "/auth/login" in driver.current_url
    name = driver.find_element("css selector", "input:not([type=password]):not([type=hidden])")
    name.send_keys(user)
    driver.find_element("css selector", "input[type=password]").send_keys(deployment["passwords"][user])
    driver.find_element("css selector", "button[type=submit]").click()
    wait(driver, "section.pipeline")
    assert driver.find_element("id", "user").text == user


def shot(driver, folder: Path, name: str) -> None:
    driver.save_screenshot(str(folder / f"{name}.png"))


def test_ops_view_end_to_end(deployment, mlflow_env, browser, artifacts_dir):
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    url = deployment["url"]
    second = runs.Run(runs.latest("loan_default"))
    assert aliases() == {"champion": 2, "challenger": 2, "previous-champion": 1}
    from mlflow import MlflowClient

    champion = MlflowClient().get_model_version("loan_default", "2")
    auc = float(champion.tags["mlpipe.analysis_roc_auc"])

    # Not logged in: the page sends the browser to Airflow's login; the API answers 401, Airflow's own too.
    assert requests.get(f"{url}/mlpipe/metrics", timeout=30).status_code == 401
    assert requests.get(f"{url}/api/v2/dags", timeout=30).status_code == 401
    assert requests.get(f"{url}/api/v2/dags", timeout=30,
                        headers={"Authorization": f"Bearer {token(deployment, 'watcher')}"}).status_code == 200
    assert requests.post(f"{url}/mlpipe/rollback", data={"pipeline": "loan_default", "confirm": "yes"},
                         timeout=30).status_code == 401

    # The watcher (viewer) sees the page but may not roll back; a forged confirmation POST is refused too.
    log_in(browser, deployment, "watcher", "/mlpipe/")
    assert "watcher may not roll back loan_default" in browser.find_element(By.CSS_SELECTOR, "p.refused").text
    assert not browser.find_elements(By.CSS_SELECTOR, "form.rollback")
    shot(browser, artifacts_dir, "models-as-watcher")
    refused = requests.post(f"{url}/mlpipe/rollback", timeout=30,
                            headers={"Authorization": f"Bearer {token(deployment, 'watcher')}"},
                            data={"pipeline": "loan_default", "reason": "try", "confirm": "yes", "token": "x"})
    assert refused.status_code == 403 and "permission to trigger the DAG loan_default_training" in refused.text
    assert aliases()["champion"] == 2 and not [e for e in audit.history("loan_default") if e["action"] == "rollback"]

    # The op user: the Models page shows the registry's champion, its ROC AUC, the trend, monitoring, history.
    log_in(browser, deployment, "ops", "/mlpipe/")
    page = browser.find_element(By.CSS_SELECTOR, "section.pipeline[data-pipeline=loan_default]")
    cell = page.find_element(By.CSS_SELECTOR, "td.version[data-role=champion]").text.split()
    assert cell[0] == "v2" and {"champion", "challenger"} <= set(cell[1:]), cell
    shown_auc = page.find_elements(By.CSS_SELECTOR, "td[data-metric='mlpipe.analysis_roc_auc']")[0].text
    assert shown_auc == f"{auc:.4f}"
    assert page.find_element(By.CSS_SELECTOR, "td.version[data-role='previous champion']").text.startswith("v1")
    svg = page.find_element(By.CSS_SELECTOR, "svg.trend")
    assert len(svg.find_elements(By.CSS_SELECTOR, "circle")) == 4  # two versions x (analysis, baseline)
    assert re.search(r"^success", page.find_element(By.CSS_SELECTOR, "p.training").text)
    monitoring = page.find_element(By.CSS_SELECTOR, "p.monitoring").text
    assert re.search(r"status (ok|breach) · champion v2", monitoring), monitoring
    assert len(page.find_elements(By.CSS_SELECTOR, "table.drift tr")) > 10
    events = [row.get_attribute("data-action") for row in page.find_elements(By.CSS_SELECTOR, "tr.event")]
    assert events[:2] == ["promoted", "promoted"], events  # newest first; the first run promoted v1
    assert "register step of run" in page.find_element(By.CSS_SELECTOR, "tr.event td.actor").text
    shot(browser, artifacts_dir, "models-as-ops")
    report_link = page.find_element(By.CSS_SELECTOR, "a.monitoring-report").get_attribute("href")

    # The Models nav entry embeds the page in the Airflow UI.
    browser.get(f"{url}/plugin/mlpipe-models")
    frame = wait(browser, "iframe")
    assert frame.get_attribute("src").endswith("/mlpipe/")
    browser.switch_to.frame(frame)
    wait(browser, "section.pipeline")
    browser.switch_to.default_content()
    time.sleep(1)
    shot(browser, artifacts_dir, "airflow-nav-models")

    # The step tasks' extra links, as the Airflow UI asks for them.
    bearer = {"Authorization": f"Bearer {token(deployment, 'ops')}"}
    run_id = next(r["dag_run_id"] for r in requests.get(
        f"{url}/api/v2/dags/{TRAINING}/dagRuns", headers=bearer, timeout=30).json()["dag_runs"]
        if r["conf"].get("notes") == "second")

    def task_links(task_id: str) -> dict[str, str | None]:
        response = requests.get(f"{url}/api/v2/dags/{TRAINING}/dagRuns/{run_id}/taskInstances/{task_id}/links",
                                headers=bearer, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["extra_links"]

    trained = second.result(Train)
    assert task_links("train_model") == {"MLflow run": f"{MLFLOW_UI}/#/runs/{trained.mlflow_run_id}",
                                         "Model version": None, "Monitoring report": None, "Validation report": None,
                                         "Model card": None}
    registered = task_links("register_model")
    assert registered["Model version"] == f"{MLFLOW_UI}/#/models/loan_default/versions/2"
    assert parse_qs(urlparse(registered["Model card"]).query) == {"uri": [second.result(Register).model_card_html]}
    validation = task_links("validate_data")
    assert [name for name, link in validation.items() if link] == ["Validation report"]
    browser.get(validation["Validation report"])  # served by the ops app, with the browser's login cookie
    showing(browser, "expectation")  # a loaded machine once read the page before it had any
    shot(browser, artifacts_dir, "validation-report")
    browser.get(report_link)
    assert "loan_default" in browser.page_source
    anonymous = requests.get(validation["Validation report"], timeout=30, allow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/auth/login")

    # Metrics for a scraper with a token.
    metrics = requests.get(f"{url}/mlpipe/metrics", headers=bearer, timeout=30)
    assert metrics.status_code == 200
    assert 'mlpipe_champion_version{pipeline="loan_default"} 2.0' in metrics.text
    assert re.search(r'mlpipe_monitoring_breach\{pipeline="loan_default"\} [01]\.0', metrics.text)
    assert 'mlpipe_feature_psi{feature="int_rate",pipeline="loan_default"}' in metrics.text

    # The op rolls back: a reason, the confirmation page, then the champion alias moves back to v1.
    browser.get(f"{url}/mlpipe/")
    wait(browser, "form.rollback input[name=reason]").send_keys("smoke test of the ops view")
    browser.find_element(By.CSS_SELECTOR, "form.rollback button").click()
    wait(browser, "button#confirm")
    assert "from v2 to v1" in browser.find_element(By.CSS_SELECTOR, "p.notice").text
    assert aliases()["champion"] == 2  # nothing moved before the confirmation
    shot(browser, artifacts_dir, "rollback-confirm")
    browser.find_element(By.CSS_SELECTOR, "button#confirm").click()
    message = wait(browser, "p#message").text
    shot(browser, artifacts_dir, "rollback-done")
    assert "champion is now version 1 (was 2)" in message and "done by ops" in message
    assert re.search(r"champion asset event \d+ recorded", message)
    assert aliases()["champion"] == 1 and "previous-champion" not in aliases()
    rollback = audit.history("loan_default")[-1]
    assert (rollback["action"], rollback["actor"], rollback["from_version"], rollback["to_version"],
            rollback["reason"]) == ("rollback", "ops", 2, 1, "smoke test of the ops view")
    # The rollback's champion asset event: the version restored, the one rolled back, who, why, the audit entry.
    champion_uri = asset_uri("loan_default", AssetKey.CHAMPION)
    (asset,) = [found for found in requests.get(f"{url}/api/v2/assets", headers=bearer, timeout=30,
                                                params={"uri_pattern": champion_uri}).json()["assets"]
                if found["uri"] == champion_uri]
    events = requests.get(f"{url}/api/v2/assets/events", headers=bearer, timeout=30,
                          params={"asset_id": asset["id"], "order_by": "timestamp"}).json()["asset_events"]
    assert events[-1]["extra"] == {"model": "loan_default", "version": 1, "previous_version": 2, "rolled_back": True,
                                   "reason": "smoke test of the ops view", "actor": "ops",
                                   "audit": rollback["uri"]}
    browser.get(f"{url}/mlpipe/")
    page = wait(browser, "section.pipeline")
    assert page.find_element(By.CSS_SELECTOR, "td.version[data-role=champion]").text.startswith("v1")
    assert page.find_element(By.CSS_SELECTOR, "tr.event td.actor").text == "ops"
    assert "no previous champion to roll back to" in page.text
    shot(browser, artifacts_dir, "models-after-rollback")
    print(f"ops view: setup (2 trainings, scoring, monitoring) {deployment['setup_seconds']:.0f} s, "
          f"browser checks {time.monotonic() - started:.0f} s; screenshots in {artifacts_dir}")
