"""A real browser on the ComfyUI page: set a key in Settings -> ImgEdit, and the example workflows
load in the real frontend exactly as the converter reads them.

Debian's ``chromium`` + ``chromium-driver`` (``apt-get install chromium chromium-driver``; never a
downloaded browser) driven by selenium (pip). Headless, fresh profile, all hosts but 127.0.0.1
unresolvable. Skipped when selenium or the browser is missing. ``IMGEDIT_UPDATE_DOCS=1`` copies the
screenshots to ``docs/`` (``settings_keys.png``, ``workflow_remote.png``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from comfyui_server import PACK_ROOT
from comfyui_session import BROWSER_TEST_KEY
from comfyui_workflow import ui_to_api
from test_comfyui_2_workflows import WORKFLOWS  # every example workflow: one list

pytestmark = pytest.mark.comfyui

CHROMIUM = os.environ.get("IMGEDIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("IMGEDIT_CHROMEDRIVER", "/usr/bin/chromedriver")
PAID_SUFFIX = " ($ paid credits)"
PAID_COLOR = "#6b4a12"
REMOTE_NODES = ["ImgEditDezgo", "ImgEditSDAPI", "ImgEditModelsLab", "ImgEditImagePipeline"]
APP = "window.comfyAPI.app.app"


@pytest.fixture(scope="module")
def browser(comfy, tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            pytest.skip(f"{path} is missing: apt-get install chromium chromium-driver")
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1600,1000",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # a first-run user gets the template browser; the minimap would cover the screenshots
    status, _ = comfy.client.post_json("/settings", {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False})
    assert status == 200
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    try:
        open_page(driver, comfy.server.url)
        yield driver
    finally:
        driver.quit()


def open_page(driver, url: str) -> None:
    driver.get(url)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if driver.execute_script(f"const a = {APP.replace('.app.app', '?.app?.app')}; "
                                 "return !!(a && a.graph && a.extensionManager && a.vueAppReady)"):
            return
        time.sleep(0.5)
    raise AssertionError("the ComfyUI page did not become ready in 90 s")


def close_dialogs(driver) -> None:
    driver.execute_script("document.querySelectorAll('.p-dialog-close-button, .p-dialog-header-close')"
                          ".forEach(b => b.click())")
    time.sleep(0.5)


def open_imgedit_settings(driver):
    from selenium.webdriver.common.by import By

    close_dialogs(driver)
    driver.execute_script(f"{APP}.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        items = driver.find_elements(By.XPATH, "//li[normalize-space(.)='ImgEdit']")
        if items:
            items[0].click()
            break
        time.sleep(0.3)
    else:
        raise AssertionError("no ImgEdit category in the settings dialog")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        fields = driver.find_elements(By.CSS_SELECTOR, ".imgedit-key-setting")
        if len(fields) == 3:
            return {f.get_attribute("data-service"): f for f in fields}
        time.sleep(0.3)
    raise AssertionError("the ImgEdit key fields did not render")


def page_state(driver) -> str:
    """Everything the page holds that a key could sit in: DOM, input values, storage, settings."""
    return driver.execute_async_script(f"""
        const done = arguments[arguments.length - 1];
        (async () => {{
          const app = {APP};
          const inputs = [...document.querySelectorAll('input, textarea')].map(i => i.value);
          const storage = JSON.stringify({{...localStorage}}) + JSON.stringify({{...sessionStorage}});
          const settings = await (await fetch('/api/settings', {{cache: 'no-store'}})).text();
          const keys = await (await fetch('/api/imgedit/keys', {{cache: 'no-store'}})).text();
          let workflow = '';
          try {{ workflow = JSON.stringify(app.graph.serialize()); }} catch (e) {{}}
          done([document.documentElement.outerHTML, inputs.join('\\n'), storage, settings, keys, workflow].join('\\n'));
        }})().catch(e => done('ERROR ' + e));
    """)


def shot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    if os.environ.get("IMGEDIT_UPDATE_DOCS") == "1":
        (PACK_ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(path, PACK_ROOT / "docs" / name)
    return path


def test_set_and_clear_a_key_in_settings(comfy, browser, tmp_path):
    from selenium.webdriver.common.by import By

    fields = open_imgedit_settings(browser)
    assert set(fields) == {"dezgo", "modelslab", "imagepipeline"}
    field = fields["dezgo"]
    box = field.find_element(By.CSS_SELECTOR, "input")
    assert box.get_attribute("type") == "password"
    box.send_keys(BROWSER_TEST_KEY)
    field.find_element(By.CSS_SELECTOR, ".imgedit-key-save").click()
    status = field.find_element(By.CSS_SELECTOR, ".imgedit-key-status")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "Saved" not in status.text:
        time.sleep(0.2)
    assert "Saved" in status.text, status.text

    key_file = comfy.server.user_dir / "imgedit" / "keys.json"
    assert json.loads(key_file.read_text())["dezgo"] == BROWSER_TEST_KEY
    assert box.get_attribute("value") == ""
    shot(browser, tmp_path, "settings_keys.png")

    assert BROWSER_TEST_KEY not in page_state(browser)
    for path in comfy.server.user_dir.rglob("*.json"):
        if path != key_file:
            assert BROWSER_TEST_KEY not in path.read_text(encoding="utf-8", errors="replace"), path

    # a fresh page load shows only "a key is set"
    open_page(browser, comfy.server.url)
    fields = open_imgedit_settings(browser)
    assert "key is set" in fields["dezgo"].find_element(By.CSS_SELECTOR, ".imgedit-key-status").text
    assert BROWSER_TEST_KEY not in page_state(browser)

    # Clear removes it from the key file
    fields["dezgo"].find_element(By.CSS_SELECTOR, ".imgedit-key-clear").click()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "dezgo" in json.loads(key_file.read_text()):
        time.sleep(0.2)
    assert "dezgo" not in json.loads(key_file.read_text())
    close_dialogs(browser)


def load_in_frontend(driver, workflow: dict, name: str = "imgedit-test") -> dict:
    """Load a UI workflow into the real frontend; return its own API prompt and re-serialised workflow."""
    result = driver.execute_async_script(f"""
        const [wf, name, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
        (async () => {{
          const app = {APP};
          await app.loadGraphData(wf, true, true, name);
          const p = await app.graphToPrompt();
          const nodes = app.graph.nodes.map(n => ({{id: n.id, type: n.type, title: n.title, color: n.color,
                                                    bgcolor: n.bgcolor}}));
          done(JSON.stringify({{output: p.output, workflow: p.workflow, nodes}}));
        }})().catch(e => done(JSON.stringify({{error: String(e && e.stack || e)}})));
    """, workflow, name)
    data = json.loads(result)
    assert "error" not in data, data.get("error")
    return data


@pytest.mark.parametrize("name", WORKFLOWS)
def test_frontend_reads_workflows_like_the_converter(comfy, browser, name):
    path = PACK_ROOT / "example_workflows" / f"{name}.json"
    if not path.is_file():
        pytest.fail(f"missing {path}")
    workflow = json.loads(path.read_text())
    ours = ui_to_api(workflow, comfy.object_info)
    theirs = load_in_frontend(browser, workflow, name)
    strip = lambda prompt: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}  # noqa: E731
    assert strip(theirs["output"]) == strip(ours)
    # the frontend keeps our widget values as they are (no migration needed)
    saved = {n["id"]: n.get("widgets_values") for n in theirs["workflow"]["nodes"]}
    for node in workflow["nodes"]:
        assert saved[node["id"]] == node["widgets_values"], (name, node["type"])


def test_remote_nodes_are_marked_as_paid(comfy, browser, tmp_path):
    path = PACK_ROOT / "example_workflows" / "inpaint_crop_stitch_remote.json"
    if not path.is_file():
        pytest.fail(f"missing {path}")
    data = load_in_frontend(browser, json.loads(path.read_text()), path.stem)
    remote = [n for n in data["nodes"] if n["type"] in REMOTE_NODES]
    assert remote
    for node in remote:
        assert node["title"].endswith(PAID_SUFFIX), node
        assert node["color"] == PAID_COLOR, node
    local = [n for n in data["nodes"] if n["type"].startswith("ImgEdit") and n["type"] not in REMOTE_NODES]
    assert local and all(not (n["title"] or "").endswith(PAID_SUFFIX) for n in local)
    # every remote node type gets the mark when created from the library
    created = browser.execute_script(f"""
        return {json.dumps(REMOTE_NODES)}.map(t => {{
          const n = LiteGraph.createNode(t); return n ? [t, n.title, n.color] : [t, null, null]; }});
    """)
    for node_type, title, color in created:
        assert title and title.endswith(PAID_SUFFIX) and color == PAID_COLOR, (node_type, title, color)
    close_dialogs(browser)
    browser.execute_script(f"{APP}.canvas.ds.scale = 0.68; {APP}.canvas.ds.offset = [10, 30]; "
                           f"{APP}.canvas.setDirty(true, true);")
    time.sleep(1.0)
    shot(browser, tmp_path, "workflow_remote.png")


def _journal_status(driver, wanted: str):
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        field = driver.find_element(By.CSS_SELECTOR, ".imgedit-journal-setting")
        status = field.find_element(By.CSS_SELECTOR, ".imgedit-journal-status").text
        if status.startswith(wanted):
            return field, status
        time.sleep(0.2)
    raise AssertionError(f"the journal switch never said {wanted!r}; it says {status!r}")


def test_turn_the_journal_off_and_on_in_settings(comfy, browser):
    from selenium.webdriver.common.by import By

    settings = comfy.server.user_dir / "imgedit" / "settings.json"
    open_imgedit_settings(browser)
    field, status = _journal_status(browser, "On:")
    assert "user/imgedit/journal" in status.replace("\\", "/")
    box = field.find_element(By.CSS_SELECTOR, ".imgedit-journal-toggle")
    assert box.is_selected()
    box.click()
    _journal_status(browser, "Off:")
    assert json.loads(settings.read_text()) == {"journal": False}
    assert comfy.client.get_json("/imgedit/journal")["enabled"] is False
    # a fresh page shows the server's state, and switching it on again writes it back
    open_page(browser, comfy.server.url)
    open_imgedit_settings(browser)
    field, _ = _journal_status(browser, "Off:")
    field.find_element(By.CSS_SELECTOR, ".imgedit-journal-toggle").click()
    _journal_status(browser, "On:")
    assert json.loads(settings.read_text()) == {"journal": True}
    close_dialogs(browser)
