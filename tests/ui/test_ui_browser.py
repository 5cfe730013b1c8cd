"""`llmpipe-tools ui` in headless Chromium (Debian's package, driven by Playwright) over a real two-job sweep
of the tiny demo recipe: the page of a running job updates without a reload; the runs list, a run's stage
graph, lock file and curves; the sweep table (sorted in the browser, best marked) and its plot; the diff of the
two jobs; and the composer: a bad value is refused beside its field, the fixed one passes and the YAML exports.
With LLMPIPE_UI_SHOTS=docs/images/ui the tests refresh the screenshots of docs/ui.md."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ui_support import browser_or_skip, served, shot

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]   # one worker runs the shared sweep

SWEEP = ["-m", "+recipe=demo", "train.learning_rate=1e-3,3e-3", "train.max_steps=4", "data.max_samples=32",
         "train.logging_steps=1", "train.eval_strategy=no", "train.save_steps=2",
         "run.sample=false", "export.dir=null"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A sweep started in the background, the page served over its folders, and a browser."""
    cwd = tmp_path_factory.mktemp("ui")
    store = tmp_path_factory.mktemp("store")
    env = {**os.environ, "LLMPIPE_CACHE": str(store), "PYTHONUNBUFFERED": "1"}
    manager, browser = browser_or_skip()
    proc = subprocess.Popen([sys.executable, "-m", "llmpipe", *SWEEP], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    # beside it, one run that fails: its loss diverges at once (the guard stops the train stage)
    failing = subprocess.Popen([sys.executable, "-m", "llmpipe", *SWEEP[1:2], "train.learning_rate=1e30", *SWEEP[3:]],
                               cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with served([cwd / "outputs", cwd / "multirun"]) as base:
            yield {"cwd": cwd, "proc": proc, "failing": failing, "base": base, "browser": browser, "store": store}
    finally:
        for p in (proc, failing):
            if p.poll() is None:
                p.kill()
            p.wait()
        browser.close()
        manager.__exit__(None, None, None)


def _finished(world) -> None:
    """Wait for the sweep and the failing run (once; later calls reuse what they printed)."""
    if "outputs" not in world:
        world["outputs"] = [p.communicate(timeout=900)[0] for p in (world["proc"], world["failing"])]
    out, failed = world["outputs"]
    assert world["proc"].returncode == 0, out[-4000:]
    assert world["failing"].returncode != 0 and "diverged" in failed, failed[-4000:]


def _page(world, width: int = 1400, height: int = 900):
    page = world["browser"].new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page, errors


def _running_job(cwd: Path, proc: subprocess.Popen) -> Path:
    for _ in range(6000):
        if proc.poll() is not None:   # it ended before a job was seen running: say why, at once
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before a job was seen running:\n"
                        f"{proc.stdout.read()[-4000:]}")
        for lock in (cwd / "multirun").rglob("llmpipe.lock.yaml"):
            try:
                if yaml.safe_load(lock.read_text()).get("status") == "running":
                    return lock.parent
            except (OSError, yaml.YAMLError, AttributeError):
                continue
        time.sleep(0.1)
    pytest.fail("no job of the sweep was seen running")


def test_a_running_job_updates_without_a_reload(world):
    from llmpipe.tools.ui.runs import Catalog

    job = _running_job(world["cwd"], world["proc"])
    key = Catalog([world["cwd"] / "outputs", world["cwd"] / "multirun"]).key_of(job)
    page, errors = _page(world)
    page.goto(f"{world['base']}/run/{key}")
    assert "running" in page.inner_text("#run-status")
    shot(page, "run-live")
    page.evaluate("window.__same_page = 1; window.__first = document.querySelector('#stages').innerHTML")
    # the stage table changes while the page stays the same document (a reload would drop the marker)
    page.wait_for_function("() => window.__same_page === 1 && "
                           "document.querySelector('#stages').innerHTML !== window.__first", timeout=600_000)
    assert errors == []
    page.close()


def test_runs_list_and_a_run_page(world):
    _finished(world)
    page, errors = _page(world)
    page.goto(world["base"] + "/")
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 3
    assert sorted(page.locator("#runs .badge").all_inner_texts()) == ["complete", "complete", "failed at train"]
    shot(page, "runs")
    # the sweep's second job reuses load and adapt (same fingerprints) and trains anew
    page.click("#runs tbody tr:has-text('train.learning_rate=0.003') td:nth-child(3) a")
    page.wait_for_selector("#curves .plot")
    status = {n.get_attribute("data-stage"): n.get_attribute("class") for n in page.locator("svg .node").all()}
    assert set(status) == {"load", "adapt", "train"}
    assert "st-cached" in status["load"] and "st-cached" in status["adapt"] and "st-ran" in status["train"]
    assert "train.learning_rate" in page.text_content("details.stage-lock[data-stage=train]")
    snapshot = json.loads(page.inner_text("#snapshot"))
    loss = snapshot["curves"][0]["series"]["loss"]
    assert loss["x"] == [1, 2, 3, 4] and len(page.locator("#curves .plot").all()) >= 2
    assert "eval_loss" in page.inner_text("h2:has-text('Held-out') + table")
    shot(page, "run")
    assert errors == []
    page.close()


def test_a_failed_run_shows_its_error(world):
    _finished(world)   # the failing run must have failed (under load it can still be running)
    page, errors = _page(world)
    page.goto(world["base"] + "/")
    page.click("#runs tbody tr:has(.b-bad) td:nth-child(3) a")
    page.wait_for_selector("svg .node")
    assert "failed at train" in page.inner_text("#run-status")
    assert "st-failed" in page.get_attribute("svg .node[data-stage=train]", "class")
    box = page.inner_text(".error-box")
    assert "train failed" in box and "diverged" in box and "train.learning_rate" in box   # the guard's own words
    shot(page, "run-failed")
    assert errors == []
    page.close()


def test_sweep_table_sorts_and_marks_the_best(world):
    page, errors = _page(world)
    page.goto(world["base"] + "/sweeps")
    page.click("table a")
    page.wait_for_selector("#sweep-plots .plot")
    values = [float(v) for v in page.locator("#sweep tbody td:nth-child(3)").all_inner_texts()]
    best = page.locator("#sweep tbody tr.best")
    assert best.count() == 1 and float(best.locator("td:nth-child(3)").inner_text()) == min(values)
    header = page.locator("#sweep thead th:nth-child(3)")
    header.click()
    assert [float(v) for v in page.locator("#sweep tbody td:nth-child(3)").all_inner_texts()] == sorted(values)
    header.click()
    assert [float(v) for v in page.locator("#sweep tbody td:nth-child(3)").all_inner_texts()] == sorted(values, reverse=True)
    assert page.locator("#sweep-plots .plot").count() == 1       # one swept parameter: the learning rate
    assert "train.learning_rate" in page.inner_text("#sweep-plots")
    shot(page, "sweep")
    page.click("#sweep tbody tr.best a")          # the best job's own page
    page.wait_for_selector("svg .node")
    assert errors == []
    page.close()


def test_diff_of_the_two_jobs(world):
    page, errors = _page(world)
    page.goto(world["base"] + "/")
    assert page.is_disabled("#compare")
    for box in page.locator("#runs tbody tr:has(.b-ok) .pick").all():   # the sweep's two jobs
        box.check()
    page.click("#compare")
    page.wait_for_selector("#stage-diff")
    changed = page.locator("#config-diff tbody tr").all_inner_texts()
    assert len(changed) == 1 and changed[0].startswith("train.learning_rate")   # the one swept value
    rows = {r.locator("td").first.inner_text(): r.inner_text() for r in page.locator("#stage-diff tbody tr").all()}
    assert "same fingerprint" in rows["load"] and "same fingerprint" in rows["adapt"]
    assert "ran again" in rows["train"] and "train.learning_rate" in rows["train"]
    assert page.locator("#metric-diff tr:has-text('eval_loss')").count() >= 1
    shot(page, "diff")
    assert errors == []
    page.close()


def test_composer_refuses_a_bad_value_beside_its_field_and_exports_yaml(world, tmp_path):
    page, errors = _page(world, height=1000)
    page.goto(world["base"] + "/compose?recipe=demo")
    page.wait_for_selector("#check-state.ok", timeout=120_000)
    assert page.locator("#plan svg .node").count() == 5
    page.click("details[data-family=lora] summary")
    page.fill("#f-lora-rank", "0")
    problem = page.locator(".problem[data-for='lora.rank']")
    problem.wait_for(state="visible", timeout=120_000)
    assert "out of range" in problem.inner_text() and ">= 1" in problem.inner_text()
    assert "bad" in page.get_attribute("#check-state", "class")
    page.locator(".field[data-path='lora.rank']").scroll_into_view_if_needed()
    shot(page, "compose-error")
    page.fill("#f-lora-rank", "4")
    page.wait_for_selector("#check-state.ok", timeout=120_000)
    assert problem.is_hidden()
    assert "lora.rank=4" in page.inner_text("#command")
    with page.expect_download() as download:
        page.click("#export")
    path = tmp_path / "recipe.yaml"
    download.value.save_as(path)
    recipe = yaml.safe_load(path.read_text())
    assert recipe["lora"]["rank"] == 4 and recipe["data"]["dataset"] == "demo_learn"   # the demo recipe, changed
    # the sweep's first job, composed against its store: the stages it ran are shown as cached
    values = {"run.cache_root": str(world["store"]), "train.learning_rate": "0.001", "lora.rank": "16"}
    values.update(o.split("=", 1) for o in SWEEP[3:])
    page.evaluate("""(values) => { for (const [k, v] of Object.entries(values)) {
        const c = document.querySelector(`[name="${k}"]`); c.value = v; c.dispatchEvent(new Event("change")); } }""",
                  values)
    page.wait_for_function("() => document.querySelector('#check-state.ok') && "
                           "document.querySelectorAll('#plan .node').length === 3", timeout=120_000)
    assert page.locator("#plan .node.st-cached").count() == 3        # load, adapt and train: nothing would run
    shot(page, "compose")
    assert errors == []
    page.close()
