"""`llmpipe-tools ui` without a browser or a training run: the host and token guards, every asset served
locally (plotly from the installed package), addresses that cannot leave the given folders, the composer's
checks and YAML (the exported recipe composes to the same values), the stage graph, and a running job's
stages (ran, running, waiting) from its lock file and the plan rebuilt from its config."""
from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from ui_support import served

from llmpipe.tools.cli import main
from llmpipe.tools.ui import composer, detail, graph
from llmpipe.tools.ui.app import plotly_js
from llmpipe.tools.ui.runs import Job


def _get(url: str, opener=None, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=60) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def test_another_host_needs_expose(capsys):
    assert main(["ui", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--expose" in err and "0.0.0.0" in err


def test_a_missing_folder_is_refused(tmp_path, capsys):
    assert main(["ui", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_token_protects_every_page(tmp_path):
    with served([tmp_path], token="s3cret-token") as base:
        for path in ("/", "/compose", "/static/ui.css", "/api/run/0"):
            assert _get(base + path)[0] == 401, path
        assert _get(base + "/?token=wrong")[0] == 401
        assert _get(base + "/", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        status, body = _get(base + "/sweeps?token=s3cret-token", browser)   # once, then the cookie
        assert status == 200 and "<h1>Sweeps</h1>" in body
        assert _get(base + "/", browser)[0] == 200


def test_a_local_page_answers_only_to_local_host_names(tmp_path):
    with served([tmp_path], hosts=["127.0.0.1", "localhost"]) as base:
        assert _get(base + "/")[0] == 200
        assert _get(base + "/", headers={"Host": "localhost"})[0] == 200
        assert _get(base + "/", headers={"Host": "attacker.example"})[0] == 400   # DNS rebinding


def test_assets_are_local_and_addresses_stay_inside_the_folders(tmp_path):
    (tmp_path / "secret").mkdir()
    with served([tmp_path / "outputs"]) as base:
        for path in ("/", "/sweeps", "/diff", "/compose?recipe=demo"):
            status, page = _get(base + path)
            assert status == 200, path
            refs = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
            assert refs and all(r.startswith("/static/") for r in refs), refs   # no CDN
        status, js = _get(base + "/static/plotly.min.js")
        assert status == 200 and len(js.encode()) == plotly_js().stat().st_size
        for key in ("0/../secret", "0/..", "7/x", "../secret"):
            assert _get(f"{base}/run/{key}")[0] == 404, key
            assert _get(f"{base}/sweep/{key}")[0] == 404, key
        assert _get(base + "/static/..%2Fapp.py")[0] == 404


def test_composer_puts_each_problem_on_its_field():
    bad = composer.check("demo", {"lora.rank": "0", "train.learning_rate": "-1"})
    keys = {p["key"]: p for p in bad["problems"]}
    assert keys["lora.rank"]["allowed"] == ">= 1" and keys["train.learning_rate"]["message"] == "out of range"
    assert bad["stages"] == []                                # no plan for a refused configuration
    typo = composer.check("demo", {"lora.rank": "abc"})
    assert [p["key"] for p in typo["problems"]] == ["lora.rank"]   # Hydra refused it before pre-flight
    good = composer.check("demo", {"lora.rank": "4"})
    assert good["problems"] == []
    assert [s["id"] for s in good["stages"]] == ["load", "adapt", "train", "merge", "export"]
    assert {s["status"] for s in good["stages"]} <= {"will run", "cached"}
    assert good["command"] == "python -m llmpipe +recipe=demo lora.rank=4"


def test_exported_yaml_composes_to_the_composed_values(tmp_path):
    from llmpipe.config.compose import compose

    changes = {"lora.rank": "4", "train.learning_rate": "0.001", "data.max_samples": "64"}
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "ui_made.yaml").write_text(composer.check("demo", changes)["yaml"])
    ours = compose([f"hydra.searchpath=[file://{tmp_path}]", "+recipe=ui_made"])
    direct = compose(["+recipe=demo", *(f"{k}={v}" for k, v in changes.items())])
    strip = lambda c: {k: v for k, v in OmegaConf.to_container(c, resolve=False).items() if k != "run"}
    assert strip(ours) == strip(direct)
    assert OmegaConf.select(ours, "lora.rank") == 4


def test_form_lists_every_parameter_with_its_facts():
    from llmpipe.config.flags import flag_table

    families = composer.form("demo")
    params = {p["path"]: p for f in families for p in f["params"]}
    assert set(params) == {p.path for p in flag_table().params()}
    assert params["lora.rank"]["value"] == "16" and params["lora.rank"]["default"] == "8"   # the recipe's, the schema's
    assert "sigmoid" in params["pref.loss"]["choices"] and params["lora.rank"]["bounds"] == ">= 1"
    assert all(p["value"] == "" for p in params.values() if p["secret"])   # secrets are never shown


def test_override_text_round_trips_through_hydra():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for value in ("plain", "with space", "a,b", "123", "true", "null", None, 3, 0.5, True, [1, 2], "it's"):
        parsed = parser.parse_override(f"x={composer.override_text(value)}").value()
        assert parsed == value, (value, parsed)


def test_stage_graph_lays_out_by_depth():
    rows = [{"id": i, "status": s} for i, s in (("load", "cached"), ("adapt", "ran"), ("train", "failed"))]
    edges = [("load", "adapt"), ("load", "train"), ("adapt", "train")]
    svg = graph.svg(rows, edges)
    xs = [int(x) for x in re.findall(r'translate\((\d+),', svg)]
    assert xs == sorted(xs) and len(set(xs)) == 3          # one column per depth, left to right
    assert svg.count('class="edge"') == 3 and "st-failed" in svg and "st-cached" in svg
    tall = graph.svg(rows, edges, vertical=True)
    ys = [int(y) for y in re.findall(r'translate\(\d+,(\d+)\)', tall)]
    assert ys == sorted(ys) and len(set(ys)) == 3


def test_a_running_job_shows_ran_running_and_waiting(tmp_path):
    from llmpipe.config.compose import compose

    cfg = OmegaConf.to_container(compose(["+recipe=demo", f"run.cache_root={tmp_path / 'store'}"]), resolve=True)
    lock = {"status": "running", "config": cfg,
            "stages": {"load": {"status": "ran", "fingerprint": "ab" * 32, "seconds": 1.5, "output": "x"}}}
    (tmp_path / "llmpipe.lock.yaml").write_text(yaml.safe_dump(lock))
    rows, edges = detail.stages(Job("0", tmp_path, lock, 0.0))
    assert [(r["id"], r["status"]) for r in rows] == [("load", "ran"), ("adapt", "running"), ("train", "waiting"),
                                                      ("merge", "waiting"), ("export", "waiting")]
    assert ("load", "adapt") in edges and ("train", "merge") in edges
    assert rows[1]["fingerprint"]          # computed, to find the running stage's checkpoints


def test_live_curves_come_from_the_newest_checkpoint(tmp_path):
    import json

    work = tmp_path / "store" / "train" / "fp1.work" / "checkpoints"
    for step, loss in ((2, 3.0), (4, 2.0)):
        (work / f"checkpoint-{step}").mkdir(parents=True)
        history = [{"step": s, "loss": 4.0 - s / 2} for s in range(1, step + 1)]
        (work / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    job = Job("0", tmp_path, {"config": {"run": {"cache_root": str(tmp_path / "store")}}}, 0.0)
    [curve] = detail.curves(job, [{"id": "train", "kind": "train", "status": "running", "fingerprint": "fp1"}])
    assert curve["series"]["loss"]["x"] == [1, 2, 3, 4]     # checkpoint-4, not checkpoint-2 (sorted by number)
    assert Path(curve["source"].split(" ")[0]) == work
