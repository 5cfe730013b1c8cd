"""llmpipe.launch without training: launcher argv for one node, several nodes and the DeepSpeed launcher,
the ranks' environment (secrets there, never on argv), the worker spec (redacted config, secrets restored
from the environment), the shipped DeepSpeed presets, TrainingArguments settings of a rank (incl. the FSDP
configuration transformers/accelerate build from it) and the failure report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmpipe.launch.command import deepspeed_argv, launcher_name, torchrun_argv, worker_env
from llmpipe.config.presets import deepspeed_path, load_deepspeed_config, preset_names, zero_stage_of
from llmpipe.launch.spawn import LaunchError, failure_report
from llmpipe.training.launch_args import fsdp_config, launch_arguments
from llmpipe.launch.worker import parse_args

SECRET = "hf_llmpipeTestSecret0123456789"


def _launch(**kw):
    base = dict(kind="ddp", nproc_per_node=2, nnodes=1, node_rank=0, master_addr="127.0.0.1", master_port=29500,
                rdzv_endpoint=None, ddp_timeout=1800, ddp_backend=None, deepspeed=None, fsdp=None, fsdp_config={})
    base.update(kw)
    return SimpleNamespace(**base)


def _opt(argv, name):
    return next(a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}="))


def test_torchrun_single_node_uses_a_free_port_and_logs_every_rank(tmp_path):
    argv = torchrun_argv(_launch(), tmp_path / "spec.json", log_dir=tmp_path / "logs", run_id="r1", python="py")
    assert argv[:3] == ["py", "-m", "torch.distributed.run"]
    assert _opt(argv, "nproc-per-node") == "2" and _opt(argv, "nnodes") == "1"
    assert "--standalone" in argv and not any(a.startswith("--master-port") for a in argv)
    assert _opt(argv, "log-dir") == str(tmp_path / "logs") and _opt(argv, "redirects") == "3"
    assert argv[-3:] == ["-m", "llmpipe.launch.worker", str(tmp_path / "spec.json")]


def test_torchrun_multinode_static_and_rendezvous(tmp_path):
    static = torchrun_argv(_launch(nnodes=4, node_rank=2, master_addr="10.0.0.1", master_port=23456),
                           tmp_path / "s.json", log_dir=tmp_path, run_id="r1")
    assert (_opt(static, "nnodes"), _opt(static, "node-rank"), _opt(static, "master-addr"), _opt(static, "master-port")) \
        == ("4", "2", "10.0.0.1", "23456")
    assert "--standalone" not in static
    rdzv = torchrun_argv(_launch(nnodes=2, rdzv_endpoint="head:29400"), tmp_path / "s.json", log_dir=tmp_path,
                         run_id="llmpipe-abc")
    assert (_opt(rdzv, "rdzv-backend"), _opt(rdzv, "rdzv-endpoint"), _opt(rdzv, "rdzv-id")) == ("c10d", "head:29400", "llmpipe-abc")


def test_deepspeed_launcher_argv_and_choice(tmp_path):
    one = deepspeed_argv(_launch(kind="deepspeed", deepspeed="z3"), tmp_path / "s.json", python="py", port=12345)
    assert one == ["py", "-m", "deepspeed.launcher.runner", "--num_gpus=2", "--master_port=12345", "--module",
                   "llmpipe.launch.worker", str(tmp_path / "s.json")]
    many = deepspeed_argv(_launch(kind="deepspeed", nnodes=2, node_rank=1, master_addr="10.0.0.1"), tmp_path / "s.json")
    assert "--no_ssh" in many and "--node_rank=1" in many and "--master_addr=10.0.0.1" in many
    assert launcher_name(_launch()) == "torchrun"
    assert launcher_name(_launch(kind="deepspeed", launcher="deepspeed")) == "deepspeed"
    with pytest.raises(LaunchError, match="launch.launcher=deepspeed with launch.kind=ddp"):
        launcher_name(_launch(kind="ddp", launcher="deepspeed"))


def test_worker_accepts_the_deepspeed_launchers_local_rank_first():
    args = parse_args(["--local_rank=1", "/x/spec.json"])
    assert args.local_rank == 1 and str(args.spec) == "/x/spec.json"
    assert parse_args(["/x/spec.json"]).local_rank is None


def test_worker_env_carries_secrets_and_shares_cores():
    env = worker_env({"PATH": "/bin"}, {"HF_TOKEN": SECRET}, nproc=2, on_gpu=False, cpu_count=8)
    assert env["HF_TOKEN"] == SECRET and env["OMP_NUM_THREADS"] == "4" and env["DS_ACCELERATOR"] == "cpu"
    gpu = worker_env({"OMP_NUM_THREADS": "3"}, {}, nproc=8, on_gpu=True, cpu_count=8)
    assert gpu["OMP_NUM_THREADS"] == "3" and "DS_ACCELERATOR" not in gpu


@pytest.fixture
def secret_ctx(tmp_path, hydra_compose):
    from omegaconf import OmegaConf

    from llmpipe import secrets
    from llmpipe.stages.kinds import TRAIN

    cfg = hydra_compose("+recipe=demo", "launch=ddp", f"model.hf_hub_token={SECRET}")
    secret_env = secrets.take_from_config(cfg)
    return SimpleNamespace(node_id="train", kind=TRAIN, cfg=cfg, obj=OmegaConf.to_object(cfg),
                           inputs={"load": tmp_path / "load"}, out=tmp_path / "out", work=tmp_path / "work",
                           fingerprint="f" * 64, cache_root=tmp_path, job_dir=None, secret_env=secret_env)


def test_spec_is_redacted_and_the_worker_gets_the_secret_from_its_environment(tmp_path, secret_ctx):
    from llmpipe.launch.spec import context_from_spec, read_spec, write_spec

    spec_path = write_spec(secret_ctx, tmp_path / "node0", launch_dir=tmp_path)
    spec = read_spec(spec_path)
    for f in (spec_path, Path(spec["config"])):
        assert SECRET not in f.read_text(), f
    assert "<redacted>" in Path(spec["config"]).read_text()
    argv = torchrun_argv(secret_ctx.obj.launch, spec_path, log_dir=tmp_path, run_id="x")
    env = worker_env({}, secret_ctx.secret_env, nproc=2, on_gpu=False)
    assert not any(SECRET in a for a in argv) and env["HF_TOKEN"] == SECRET

    ctx = context_from_spec(spec, log=print, environ=env)
    assert ctx.obj.model.hf_hub_token == SECRET and ctx.secret_env == {"HF_TOKEN": SECRET}
    assert ctx.kind.name == "train" and ctx.kind.distributed and ctx.obj.launch.kind == "ddp"
    assert ctx.obj.train.stage == secret_ctx.obj.train.stage and ctx.inputs == secret_ctx.inputs
    assert context_from_spec(spec, log=print, environ={}).obj.model.hf_hub_token is None


def test_shipped_deepspeed_presets():
    assert preset_names() == ["z0", "z2", "z3", "z3_offload"]
    stages = {n: zero_stage_of(load_deepspeed_config(n)) for n in preset_names()}
    assert stages == {"z0": 0, "z2": 2, "z3": 3, "z3_offload": 3}
    for name in preset_names():
        cfg = load_deepspeed_config(name)
        assert cfg["train_micro_batch_size_per_gpu"] == "auto" and cfg["gradient_accumulation_steps"] == "auto"
        if stages[name] == 3:
            assert cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    off = load_deepspeed_config("z3_offload")["zero_optimization"]
    assert off["offload_optimizer"]["device"] == "cpu" and off["offload_param"]["device"] == "cpu"
    assert deepspeed_path("/some/where/ds.json") == Path("/some/where/ds.json")


def test_a_users_deepspeed_file_overrides_the_presets(tmp_path):
    mine = tmp_path / "ds.json"
    mine.write_text(json.dumps({"zero_optimization": {"stage": 1}, "train_micro_batch_size_per_gpu": "auto"}))
    assert zero_stage_of(load_deepspeed_config(str(mine))) == 1
    with pytest.raises(ValueError, match="cannot read the DeepSpeed config"):
        load_deepspeed_config(str(tmp_path / "missing.json"))


def _cfg(kind="ddp", **launch):
    return SimpleNamespace(launch=_launch(kind=kind, **launch), train=SimpleNamespace(use_cpu=True, finetuning_type="lora"))


def test_training_arguments_of_a_rank():
    assert launch_arguments(_cfg(), environ={}) == {}                       # not under a launcher
    assert launch_arguments(_cfg("local"), environ={"WORLD_SIZE": "2"}) == {}
    ddp = launch_arguments(_cfg(ddp_timeout=60), environ={"WORLD_SIZE": "2"})
    assert ddp == {"ddp_timeout": 60, "ddp_backend": "gloo", "ddp_find_unused_parameters": False}
    ds = launch_arguments(_cfg("deepspeed", deepspeed="z3"), environ={"WORLD_SIZE": "2"})
    assert ds["deepspeed"]["zero_optimization"]["stage"] == 3 and ds["ddp_backend"] == "gloo"


def test_fsdp_options_become_an_fsdp2_config():
    cfg = fsdp_config(_launch(kind="fsdp", fsdp="shard_grad_op offload auto_wrap",
                              fsdp_config={"fsdp_transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]}))
    assert cfg == {"version": 2, "reshard_after_forward": False, "cpu_offload": True,
                   "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "state_dict_type": "FULL_STATE_DICT",
                   "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]}
    plain = fsdp_config(_launch(kind="fsdp", fsdp=None, fsdp_config={"version": 1}))
    assert plain["reshard_after_forward"] is True and plain["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert plain["version"] == 1   # the user's fsdp_config wins


_FSDP_CHECK = r"""
import json, sys
from types import SimpleNamespace as S
from llmpipe.training.launch_args import launch_arguments
launch = S(kind="fsdp", ddp_timeout=60, ddp_backend=None, fsdp="full_shard auto_wrap offload",
           fsdp_config={"transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]}, deepspeed=None)
kw = launch_arguments(S(launch=launch, train=S(use_cpu=False, finetuning_type="lora")))
from transformers import TrainingArguments
from accelerate.utils import FullyShardedDataParallelPlugin
args = TrainingArguments(output_dir=sys.argv[1], report_to="none", **kw)
plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
print(json.dumps({"plugin_args": args.fsdp_plugin_args, "version": plugin.fsdp_version,
                  "reshard": plugin.reshard_after_forward, "offload": type(plugin.cpu_offload).__name__,
                  "state_dict": str(plugin.state_dict_type), "wrap": plugin.auto_wrap_policy.__name__}))
"""


def test_transformers_and_accelerate_build_the_generated_fsdp_configuration(tmp_path):
    """What a GPU rank would hand to accelerate, built by the real TrainingArguments (one process, gloo)."""
    from llmpipe.launch.command import free_port

    env = {**os.environ, "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}
    proc = subprocess.run([sys.executable, "-c", _FSDP_CHECK, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["plugin_args"]["fsdp_version"] == 2 and out["plugin_args"]["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert out["version"] == 2 and out["reshard"] is True and out["offload"] == "CPUOffloadPolicy"
    assert out["state_dict"].endswith("FULL_STATE_DICT") and out["wrap"] == "transformer_auto_wrap_policy"


_ROOT_CAUSE = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
llmpipe.launch.worker FAILED
------------------------------------------------------------
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 11)  (SIGTERM)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-01-01_00:00:00
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 12)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 12
============================================================"""


def test_failure_report_names_the_killed_rank_and_shows_its_log(tmp_path):
    log = tmp_path / "logs" / "run_x" / "attempt_0" / "1"
    log.mkdir(parents=True)
    (log / "stderr.log").write_text("loading\nstep 3 of rank 1\n")
    errors = tmp_path / "errors"
    errors.mkdir()
    (errors / "rank-0.json").write_text(json.dumps({"rank": 0, "local_rank": 0, "time": 1.0, "type": "RuntimeError",
                                                    "message": "Connection closed by peer", "traceback": []}))
    head, details = failure_report(1, _ROOT_CAUSE, tmp_path, tmp_path / "logs")
    assert head.startswith("rank 1 failed: killed by SIGKILL (exit code -9)") and str(tmp_path / "logs") in head
    assert any("step 3 of rank 1" in d for d in details)
    assert any("rank 0: RuntimeError: Connection closed by peer" in d for d in details)


def test_failure_report_shows_the_ranks_exception(tmp_path):
    errors = tmp_path / "errors"
    errors.mkdir()
    (errors / "rank-1.json").write_text(json.dumps({
        "rank": 1, "local_rank": 1, "time": 2.0, "type": "ValueError", "message": f"bad batch {SECRET}",
        "traceback": ["Traceback (most recent call last):", '  File "x.py", line 1', f"ValueError: bad batch {SECRET}"]}))
    from llmpipe import secrets

    secrets.remember([SECRET])
    head, details = failure_report(1, "no summary here", tmp_path, None)
    assert head.startswith("rank 1 failed: ValueError: bad batch") and SECRET not in head
    assert any('File "x.py"' in d for d in details) and not any(SECRET in d for d in details)
    head, details = failure_report(3, "boom\nlast words", tmp_path / "empty", None)
    assert "exited with code 3 before any rank reported" in head and any("last words" in d for d in details)


@pytest.mark.parametrize("option", sorted(p.stem for p in (Path(__file__).resolve().parents[3] / "conf" / "launch").glob("*.yaml")))
def test_every_launch_option_composes_and_passes_preflight_on_a_gpu_machine(hydra_compose, option):
    from llmpipe.config.environment import Environment
    from llmpipe.pipeline.preflight import validate

    cfg = hydra_compose("+recipe=demo", f"launch={option}")
    gpus = 1 if option == "local" else 2   # one process with 2 visible GPUs is refused (launch-local-multigpu)
    validated, problems = validate(cfg, env=Environment(gpu_count=gpus, available_packages=frozenset({"deepspeed"})))
    assert not problems, [p.render() for p in problems]
    launch = validated.obj.launch
    kinds = {"local": "local", "ddp": "ddp", "fsdp": "fsdp", "slurm": "ddp", "ray": "ray"}
    assert launch.kind == kinds.get(option, "deepspeed")
    if launch.kind == "deepspeed":
        assert deepspeed_path(launch.deepspeed).is_file()


def test_the_slurm_option_reads_the_allocation(hydra_compose, monkeypatch):
    from omegaconf import OmegaConf

    for var, value in {"SLURM_GPUS_ON_NODE": "8", "SLURM_NNODES": "4", "SLURM_NODEID": "3", "MASTER_ADDR": "10.1.2.3"}.items():
        monkeypatch.setenv(var, value)
    launch = OmegaConf.to_object(hydra_compose("+recipe=demo", "launch=slurm")).launch
    assert (launch.nproc_per_node, launch.nnodes, launch.node_rank, launch.master_addr) == (8, 4, 3, "10.1.2.3")
    argv = torchrun_argv(launch, Path("s.json"), log_dir=Path("logs"), run_id="x")
    assert _opt(argv, "node-rank") == "3" and _opt(argv, "master-addr") == "10.1.2.3" and _opt(argv, "nnodes") == "4"
