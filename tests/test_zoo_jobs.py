"""The zoo v2 job runner (scripts/gpu_zoo.py): plan, priorities, concurrent workers, failure isolation, deadline.

Tiny encoders built from configs stand in for MiniLM-L6 and MPNet-base, placed where the GPU machine gets its
weights ($TOOLKIT_CACHE/models/<name>), on the synthetic GLUE folder: the same code path as the real run.
"""

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, tiny_config
from toolkit.data.tasks import load_split
from toolkit.zoo.jobs import Job, estimate, gpu_busy_seconds, plan, prioritized, run_jobs


def _gpu_zoo():
    spec = importlib.util.spec_from_file_location("gpu_zoo", REPO / "scripts" / "gpu_zoo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def placed_models(tmp_path, monkeypatch, tokenizer_dir):
    """Tiny stand-ins for the two pretrained encoders, as plain folders in $TOOLKIT_CACHE/models."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.setenv("TOOLKIT_CACHE", str(tmp_path / "cache"))
    for name, arch, layers in (("all-MiniLM-L6-v2", "bert", 6), ("all-mpnet-base-v2", "mpnet", 12)):
        torch.manual_seed(0)
        d = tmp_path / "cache" / "models" / name
        AutoModel.from_config(tiny_config(arch, layers)).save_pretrained(d)
        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(d)
    return tmp_path / "cache" / "models"


def test_plan_orders_dependencies_and_shares_members():
    jobs = plan(["mrpc"], ["cascade", "cascade_da"], [42])
    ids = [j.id for j in jobs]
    assert len(ids) == len(set(ids))
    assert ids.count("mrpc/mpnet-s42") == 1  # the last member is shared by both cascades
    pos = {j: i for i, j in enumerate(ids)}
    for j in jobs:
        assert all(pos[n] < pos[j.id] for n in j.needs), j
    da = next(j for j in jobs if j.id == "mrpc/minilm2_da-s42")
    assert da.needs == ("mrpc/minilm2_da-s42/fold0", "mrpc/minilm2_da-s42/fold1")
    collect = next(j for j in jobs if j.id == "mrpc/cascade_da-s42/collect")
    assert collect.needs == ("mrpc/minilm2_da-s42", "mrpc/minilm6_da-s42", "mrpc/mpnet-s42")


def test_priorities_and_estimates():
    jobs = prioritized()
    ids = [j.id for j in jobs]
    assert len(ids) == len(set(ids))
    # the minimum (SST-2 and MRPC, seed 42) comes before the other tasks and before the other seeds
    first_other = min(i for i, j in enumerate(jobs) if j.task not in ("sst2", "mrpc") or j.seed != 42)
    assert all(j.task in ("sst2", "mrpc") and j.seed == 42 for j in jobs[:first_other])
    assert {j.seed for j in jobs} == {42, 43, 44} and {j.task for j in jobs} == {"sst2", "mrpc", "rte", "cola", "agnews"}
    # within a tier the longest training starts first
    tier = [estimate(j) for j in jobs[:first_other] if j.kind != "collect"]
    assert tier == sorted(tier, reverse=True)
    # estimates grow with the model and the data
    e = {j.id: estimate(j) for j in jobs}
    assert e["mrpc/mpnet-s42"] > e["mrpc/minilm6-s42"] > e["mrpc/minilm2-s42"]
    assert estimate(Job("train", "mrpc", "mpnet", 42), "cpu") > 10 * e["mrpc/mpnet-s42"]
    assert gpu_busy_seconds(Job("train", "sst2", "minilm6", 42)) > gpu_busy_seconds(Job("train", "mrpc", "minilm6", 42))
    # restricting to a set outside the tiers still plans it
    assert {j.id for j in prioritized(tasks=["rte"], sets=["cascade_da"], seeds=[43])} == {
        j.id for j in plan(["rte"], ["cascade_da"], [43])}


def test_without_finished_drops_collected_sets_and_their_training(tmp_path):
    from toolkit.zoo import update_manifest
    from toolkit.zoo.jobs import without_finished

    jobs = prioritized(tasks=["mrpc"], sets=["cascade", "cascade_da", "minilm6_me"], seeds=[42])
    for split in ("cal", "test"):  # cascade_da's caches came back from another machine
        (tmp_path / "mrpc").mkdir(exist_ok=True)
        (tmp_path / "mrpc" / f"cascade_da-s42-{split}.parquet").write_bytes(b"")
        update_manifest(tmp_path, f"mrpc/cascade_da-s42-{split}", {"split": split})
    left = {j.id for j in without_finished(jobs, tmp_path)}
    assert left == {j.id for j in plan(["mrpc"], ["cascade", "minilm6_me"], [42])}  # mpnet-s42 stays: cascade needs it
    (tmp_path / "mrpc" / "cascade_da-s42-cal.parquet").unlink()  # a cache missing: its set is planned again
    assert len(without_finished(jobs, tmp_path)) == len(jobs)


def test_dependents_of_a_failed_job_are_skipped_and_the_rest_runs(tmp_path, monkeypatch):
    """In-process (workers=0): a failure is recorded and costs only its dependents."""
    from toolkit.zoo import build as zoo_build

    ran = []
    (tmp_path / "train_meta.json").write_text("{}")

    def fake_member(task, member, seed, where, log=print):
        ran.append(member)
        if member == "minilm6":
            raise RuntimeError("boom")
        return tmp_path

    monkeypatch.setattr(zoo_build, "train_member", fake_member)
    monkeypatch.setattr(zoo_build, "collect_set", lambda task, s, seed, where, splits, log: ran.append(s))
    where = zoo_build.Where(out=tmp_path / "data", runs=tmp_path / "runs", logs=tmp_path / "logs")
    status = run_jobs(plan(["mrpc"], ["cascade", "minilm6_me"], [42]), where, workers=0, log=lambda m: None)
    states = {k: v["state"] for k, v in status.items()}
    assert states["mrpc/minilm6-s42"] == "failed" and "boom" in status["mrpc/minilm6-s42"]["error"]
    assert states["mrpc/cascade-s42/collect"] == "skipped"
    assert states["mrpc/minilm6_me-s42/collect"] == "done" and "minilm6_me" in ran
    assert all(v["cpu_s"] >= 0 for v in status.values() if v["state"] in ("done", "failed"))
    saved = json.loads((tmp_path / "logs" / "status.json").read_text())
    assert saved["counts"] == {"done": 4, "failed": 1, "skipped": 1}
    # a deadline that leaves no room: nothing starts
    status = run_jobs(plan(["mrpc"], ["minilm6_me"], [43]), where, deadline=time.time() + 1, log=lambda m: None)
    assert {v["state"] for v in status.values()} == {"not_started", "skipped"}


@pytest.mark.parametrize("profile", ["v2", "cpu"])
def test_found_complete_and_resumes_look_where_the_job_trains(tmp_path, monkeypatch, profile):
    """A train or fold job's run folder as jobs reads it (finished: ``final/config.json``; resumable:
    ``*/checkpoint-*``) is the ``output_dir`` that run_job really trains in; fails if the two drift apart."""
    import toolkit.nn.encoder.train as nn_train
    from toolkit.zoo import build as zoo_build
    from toolkit.zoo.jobs import _resumes, found_complete

    trained = []
    monkeypatch.setattr(nn_train, "train", lambda cfg: trained.append(Path(cfg.output_dir)) or Path(cfg.output_dir))
    where = zoo_build.Where(out=tmp_path / "data", runs=tmp_path / "runs", profile=profile)
    for job in (Job("fold", "sst2", "minilm6_da", 44, fold=1), Job("train", "sst2", "minilm6", 44)):
        assert not found_complete(job, where) and not _resumes(job, where)
        zoo_build.run_job(job, where, log=lambda m: None)
        folder = trained[-1]
        (folder / "checkpoint" / "checkpoint-8").mkdir(parents=True)
        assert _resumes(job, where) and not found_complete(job, where)
        (folder / "final").mkdir()
        (folder / "final" / "config.json").write_text("{}")
        assert found_complete(job, where), (job.id, folder)
    assert trained == [tmp_path / "runs" / "sst2" / "minilm6_da-s44" / "difficulty" / "fold1",
                       tmp_path / "runs" / "sst2" / "minilm6-s44"]


@pytest.mark.slow
def test_tiny_gpu_zoo_script_end_to_end(tmp_path, placed_models, glue_dir):
    """The whole script in --tiny mode with two worker processes: caches, manifest, logs, curves, difficulty labels;
    then a member whose weights are broken fails alone, and a rerun reuses everything."""
    from toolkit.caches.classification import load_cache
    from toolkit.zoo import check_manifest

    gz = _gpu_zoo()
    out, runs = tmp_path / "out", tmp_path / "runs"
    args = [str(out), "--tiny", "--device", "cpu", "--workers", "2", "--runs", str(runs), "--data-dir", str(glue_dir),
            # the v2 recipes (trains every member, MPNet included) with nothing shipped to borrow or skip
            "--profile", "v2", "--shipped", str(tmp_path / "nothing-shipped"),
            "--task", "mrpc", "--set", "minilm6_me", "cascade_da"]
    assert gz.main([*args, "--seed", "42"]) == 0
    status = json.loads((out / "logs" / "status.json").read_text())
    assert status["counts"] == {"done": 10}, status["jobs"]
    # every attempt is in the ledger with the CPU its worker process reported (toolkit.zoo.ledger)
    from toolkit.zoo.ledger import read_ledger

    ledger = read_ledger(out / "logs" / "ledger.jsonl")
    assert sorted(r["job"] for r in ledger) == sorted(status["jobs"]) and {r["state"] for r in ledger} == {"done"}
    assert all(r["cpu_s"] == status["jobs"][r["job"]]["cpu_s"] > 0 and r["threads"] == 2 and r["device"] == "cpu"
               and r["worker_pid"] == status["jobs"][r["job"]]["worker_pid"] and r["resumed"] in (False, None)
               for r in ledger)
    data = out / "data"
    for s in ("minilm6_me", "cascade_da"):
        for split in ("cal", "test"):
            assert (data / "mrpc" / f"{s}-s42-{split}.parquet").exists()
    assert check_manifest(data) == []
    entry = json.loads((data / "MANIFEST.json").read_text())["caches"]["mrpc/cascade_da-s42-test"]
    assert entry["file"] == "data/mrpc/cascade_da-s42-test.parquet" and entry["train_seed"] == 42
    assert [m["name"] for m in entry["models"]] == ["minilm-l2-da", "minilm-l6-da", "mpnet"]
    assert [m["objective"] for m in entry["models"]] == ["ranking", "ranking", "joint"]
    assert all(m["select_on"] == "cal" and m["curve"] and m["best_epoch"] for m in entry["models"])
    c = load_cache(data / "mrpc" / "cascade_da-s42-test.parquet")
    assert c.stages == ["minilm-l2-da:L2", "minilm-l6-da:L6", "mpnet:L12"]
    meta = json.loads((out / "logs" / "meta" / "mrpc" / "minilm6_da-s42.json").read_text())
    assert meta["config"]["difficulty_file"].endswith("minilm6_da-s42/difficulty/difficulty.npz")
    assert (out / "logs" / "jobs" / "mrpc__minilm6_da-s42__fold1.log").read_text()
    fold = json.loads((runs / "mrpc/minilm6_da-s42/difficulty/fold1/final/train_meta.json").read_text())
    n_train = len(load_split("mrpc", "train", glue_dir))
    assert (fold["config"]["heldout_fold"], fold["config"]["folds"]) == (1, 2) and fold["train_size"] == n_train // 2
    hard = np.load(runs / "mrpc/minilm6_da-s42/difficulty/difficulty.npz")
    assert len(hard["hard"]) == n_train and set(np.unique(hard["fold"])) == {0, 1}

    # broken MPNet weights: its job fails in its worker, the cascade that needs it is skipped, the rest is done
    (placed_models / "all-mpnet-base-v2" / "model.safetensors").write_bytes(b"not a checkpoint")
    assert gz.main([*args[:-2], "minilm6_me", "cascade", "--seed", "43"]) == 1
    jobs = json.loads((out / "logs" / "status.json").read_text())["jobs"]
    assert jobs["mrpc/mpnet-s43"]["state"] == "failed" and jobs["mrpc/cascade-s43/collect"]["state"] == "skipped"
    assert jobs["mrpc/minilm6_me-s43/collect"]["state"] == "done" and jobs["mrpc/minilm2-s43"]["state"] == "done"
    assert "Traceback" in Path(jobs["mrpc/mpnet-s43"]["log"]).read_text()
    assert [r["state"] for r in read_ledger(out / "logs" / "ledger.jsonl") if r["job"] == "mrpc/mpnet-s43"] == ["failed"]

    # rerun of seed 42: every run folder and cache is reused (nothing is retrained)
    before = {p: p.stat().st_mtime for p in data.rglob("*-s42-*.parquet")}
    assert gz.main([*args, "--seed", "42", "--workers", "0"]) == 0
    assert {p: p.stat().st_mtime for p in data.rglob("*-s42-*.parquet")} == before

    # merging the run's caches into another data folder keeps them checkable there
    target = tmp_path / "repo" / "data"
    assert gz.main(["--merge", str(data), "--into", str(target)]) == 0
    assert check_manifest(target) == [] and (target / "mrpc" / "minilm6_me-s43-test.parquet").exists()


def test_deadline_learns_how_far_off_the_estimates_are(tmp_path, monkeypatch):
    """Training takes 3x its estimate: after three such jobs the fourth, which would fit by its estimate, is not
    started, because it would overrun the deadline by what the first three showed."""
    from toolkit.zoo import build as zoo_build
    from toolkit.zoo import jobs as zoo_jobs

    (tmp_path / "train_meta.json").write_text("{}")

    def slow_member(task, member, seed, where, log=print):
        time.sleep(0.6)
        return tmp_path

    monkeypatch.setattr(zoo_build, "train_member", slow_member)
    monkeypatch.setattr(zoo_build, "collect_set", lambda *a, **k: None)
    monkeypatch.setattr(zoo_jobs, "estimate", lambda job, device="cuda", tiny=False, profile="v2": 0.2)
    where = zoo_build.Where(out=tmp_path / "data", runs=tmp_path / "runs", logs=tmp_path / "logs")
    jobs = plan(["mrpc"], ["minilm6_me"], [42, 43, 44, 45])
    status = run_jobs(jobs, where, deadline=time.time() + 2.3, reserve=0.0, safety=1.0, log=lambda m: None)
    assert [status[f"mrpc/minilm6_me-s{s}"]["state"] for s in (42, 43, 44, 45)] == ["done"] * 3 + ["not_started"]
    assert json.loads((tmp_path / "logs" / "status.json").read_text())["slowdown_median"] >= 2.5


@pytest.mark.slow
def test_sigterm_stops_workers_and_saves_status(tmp_path, placed_models, glue_dir):
    """A time limit's SIGTERM: the scheduler stops its workers (no process is left training) and saves the status."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_zoo.py"), str(out), "--tiny", "--device", "cpu", "--workers", "1",
           "--runs", str(tmp_path / "runs"), "--data-dir", str(glue_dir), "--task", "mrpc", "--set", "mpnet_me",
           "--seed", "42"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    status_file, pid = out / "logs" / "status.json", None
    for _ in range(600):  # wait until a job runs in its worker
        time.sleep(0.5)
        if status_file.exists():
            running = [j for j in json.loads(status_file.read_text())["jobs"].values() if j["state"] == "running"]
            if running:
                pid = running[0]["worker_pid"]
                break
    assert pid is not None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    jobs = json.loads(status_file.read_text())["jobs"]
    assert jobs["mrpc/mpnet_me-s42"]["state"] == "stopped" and jobs["mrpc/mpnet_me-s42/collect"]["state"] == "not_started"
    # the stopped attempt is in the ledger, charged the CPU its worker had used (read from /proc before the kill)
    from toolkit.zoo.ledger import read_ledger

    (line,) = read_ledger(out / "logs" / "ledger.jsonl")
    assert (line["job"], line["state"], line["worker_pid"]) == ("mrpc/mpnet_me-s42", "stopped", pid)
    assert line["cpu_s"] > 0 and line["wall_s"] > 0
    time.sleep(1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# ------------------------------------------------------------------------------------ the CPU profile (issue 29)
def test_cpu_profile_recipes_cut_the_minilm_budget_and_keep_v2_elsewhere():
    from toolkit.zoo.recipes import SCHEDULE_CPU, difficulty_recipe, recipe

    v2, cpu = recipe("mrpc", "minilm6", seed=43), recipe("mrpc", "minilm6", seed=43, profile="cpu")
    assert (v2.epochs, v2.patience, v2.bf16) == (10.0, 3, True)  # the GPU recipe is unchanged
    assert (cpu.epochs, cpu.train_limit, cpu.patience, cpu.batch_size, cpu.bf16, cpu.select_on) == (
        3.0, None, 1, 32, False, "cal")
    assert {k: v for k, v in vars(cpu).items() if k not in ("epochs", "patience", "bf16")} == {
        k: v for k, v in vars(v2).items() if k not in ("epochs", "patience", "bf16")}
    sst2 = recipe("sst2", "minilm2_da", profile="cpu", difficulty_file=None, objective="joint")
    assert (sst2.epochs, sst2.train_limit, sst2.batch_size) == (1.0, 20000, 32) == (*SCHEDULE_CPU["sst2"][:2], 32)
    # MRPC's multi-exit MiniLM-L6 was shipped with the v2 recipe (seeds 42-44): the cpu profile keeps it
    assert recipe("mrpc", "minilm6_me", seed=44, profile="cpu") == recipe("mrpc", "minilm6_me", seed=44)
    assert recipe("rte", "minilm6_me", profile="cpu").bf16 is False
    # the difficulty folds of a ranking member train its plain twin's cpu recipe
    fold = difficulty_recipe("mrpc", "minilm6_da", root="r", seed=42, profile="cpu")
    assert (fold.epochs, fold.bf16, fold.objective) == (3.0, False, "joint")
    assert fold.output_dir == str(Path("r") / "mrpc" / "minilm6_da-s42" / "difficulty")
    with pytest.raises(ValueError, match="profile"):
        recipe("mrpc", "minilm6", profile="gpu")


def test_cpu_plan_trains_no_mpnet_and_runs_set_after_set():
    jobs = prioritized(device="cpu", profile="cpu")
    ids = [j.id for j in jobs]
    assert len(ids) == len(set(ids))
    assert not [j for j in jobs if j.kind != "collect" and j.name in ("mpnet", "mpnet_me")]
    assert {j.name for j in jobs if j.kind == "collect"} == {"cascade", "cascade_da", "minilm6_me"}
    by_id = {j.id: j for j in jobs}
    assert by_id["mrpc/cascade-s42/collect"].needs == ("mrpc/minilm2-s42", "mrpc/minilm6-s42")
    # MRPC (all three seeds, both cascades) first, then SST-2; every set's jobs together, its collect last
    tasks = [j.task for j in jobs]
    assert tasks[:tasks.index("sst2")] == ["mrpc"] * 30 and "mrpc" not in tasks[tasks.index("sst2"):]
    collects = [i for i, j in enumerate(jobs) if j.kind == "collect"]
    for start, end in zip([-1, *collects], collects):
        unit = jobs[start + 1:end + 1]
        assert {n for j in unit for n in j.needs} <= {j.id for j in unit}, unit[-1].id
    # the cpu estimates are CPU seconds of the cpu recipes: far below the v2 recipes on the same CPU
    cpu_s = sum(estimate(j, "cpu", profile="cpu") for j in jobs)
    assert 5 * 3600 < cpu_s < sum(estimate(j, "cpu") for j in prioritized(device="cpu")) * 0.5


def _trained_part(c, n_models: int):
    """The first ``n_models`` models of a shipped cascade cache, as the cache of a cascade's trained members."""
    from toolkit.caches.classification import Cache

    keep = [i for i, s in enumerate(c.stage_info) if s["model_index"] < n_models]
    return Cache(logits=c.logits[:, keep], labels=c.labels, flops=c.flops[:, keep], example_ids=c.example_ids,
                 n_tokens=c.n_tokens, stage_info=[c.stage_info[i] for i in keep],
                 meta={**c.meta, "models": c.meta["models"][:n_models]})


@pytest.mark.parametrize("task", ["mrpc", "sst2"])
def test_join_borrowed_appends_the_shipped_mpnet_as_a_complete_model(task):
    """The cpu profile's cascades end in the shipped multi-exit MPNet's L12 exit. Its cost must be what a single-exit
    12-layer MPNet costs: exactly the v1 cascade's own MPNet stage (same architecture and tokenizer)."""
    from toolkit.caches.classification import load_cache
    from toolkit.zoo.build import join_borrowed

    v1 = load_cache(REPO / "data" / task / "cascade-test.parquet", verify_data=False)
    me = load_cache(REPO / "data" / task / "mpnet_me-test.parquet", verify_data=False)
    rows = np.random.default_rng(0).permutation(v1.n_examples)  # the trained cache's row order is kept
    small = _trained_part(v1, 2).subset(rows)
    joined = join_borrowed(small, me, "L12", "mpnet", f"{task}/mpnet_me-test")
    assert joined.stages == ["minilm-l2:L2", "minilm-l6:L6", "mpnet:L12"]
    assert np.array_equal(joined.example_ids, v1.example_ids[rows])
    at = {e: i for i, e in enumerate(me.example_ids)}
    src = np.array([at[e] for e in joined.example_ids])
    assert np.array_equal(joined.logits[:, 2], me.logits[src, -1]) and np.array_equal(joined.logits[:, :2],
                                                                                        small.logits)
    own = joined.flops[:, 2] - joined.flops[:, 1]
    np.testing.assert_allclose(own, (v1.flops[:, 2] - v1.flops[:, 1])[rows], rtol=1e-12)
    assert np.array_equal(joined.flops[:, :2], small.flops)
    assert joined.meta["models"][-1]["borrowed_from"] == f"{task}/mpnet_me-test"
    assert joined.stage_info[-1]["model_index"] == 2
    # the wrong data, labels or examples are refused
    with pytest.raises(ValueError, match="fingerprint"):
        join_borrowed(small, me._derived(meta={**me.meta, "data": {**me.meta["data"], "fingerprint": "x"}}), "L12",
                      "mpnet", "k")
    with pytest.raises(ValueError, match="lacks examples"):
        join_borrowed(small, me.subset(np.arange(1, me.n_examples)), "L12", "mpnet", "k")
    with pytest.raises(ValueError, match="labels"):
        join_borrowed(small, me._derived(labels=1 - me.labels), "L12", "mpnet", "k")


@pytest.mark.slow
def test_tiny_cpu_profile_end_to_end(tmp_path, placed_models, glue_dir):
    """--device cpu: the MiniLM members train with the cpu recipes, no MPNet is trained, the cascade ends in the
    shipped multi-exit MPNet's L12 exit; the caches check against their entries, a rerun reuses them, and a set
    already shipped is not planned again."""
    import shutil

    from toolkit.caches.classification import load_cache
    from toolkit.zoo import check_manifest, update_manifest
    from toolkit.zoo.jobs import without_finished

    gz = _gpu_zoo()
    runs, shipped, out = tmp_path / "runs", tmp_path / "shipped", tmp_path / "out"
    common = ["--tiny", "--device", "cpu", "--workers", "0", "--runs", str(runs), "--data-dir", str(glue_dir),
              "--task", "mrpc", "--seed", "42"]
    # the shipped v1 multi-exit MPNet: a tiny v2 run's cache, under the unsuffixed key
    assert gz.main([str(tmp_path / "v1"), *common, "--profile", "v2", "--set", "mpnet_me",
                    "--shipped", str(tmp_path / "nothing")]) == 0
    v1 = json.loads((tmp_path / "v1" / "data" / "MANIFEST.json").read_text())["caches"]
    (shipped / "mrpc").mkdir(parents=True)
    for split in ("cal", "test"):
        shutil.copyfile(tmp_path / "v1" / "data" / "mrpc" / f"mpnet_me-s42-{split}.parquet",
                        shipped / "mrpc" / f"mpnet_me-{split}.parquet")
        update_manifest(shipped, f"mrpc/mpnet_me-{split}", v1[f"mrpc/mpnet_me-s42-{split}"])

    assert gz.main([str(out), *common, "--set", "cascade", "--shipped", str(shipped)]) == 0
    status = json.loads((out / "logs" / "status.json").read_text())
    assert set(status["jobs"]) == {"mrpc/minilm2-s42", "mrpc/minilm6-s42", "mrpc/cascade-s42/collect"}
    assert all(j["cpu_s"] > 0 for j in status["jobs"].values())
    data = out / "data"
    assert check_manifest(data) == []
    entry = json.loads((data / "MANIFEST.json").read_text())["caches"]["mrpc/cascade-s42-test"]
    assert [m["name"] for m in entry["models"]] == ["minilm-l2", "minilm-l6", "mpnet"]
    assert entry["models"][-1]["borrowed_from"] == "mrpc/mpnet_me-test"
    assert [m["epochs"] for m in entry["models"][:2]] == [3.0, 3.0]  # the cpu recipe (tiny: 8 steps of it)
    c = load_cache(data / "mrpc" / "cascade-s42-test.parquet", data_dir=glue_dir)
    me = load_cache(shipped / "mrpc" / "mpnet_me-test.parquet", data_dir=glue_dir)
    assert c.stages == ["minilm-l2:L2", "minilm-l6:L6", "mpnet:L12"] and np.array_equal(c.example_ids, me.example_ids)
    assert np.array_equal(c.logits[:, -1], me.logits[:, -1])
    # a rerun reuses the caches; once they are shipped, nothing of the set is planned
    before = {p: p.stat().st_mtime for p in data.rglob("*.parquet")}
    assert gz.main([str(out), *common, "--set", "cascade", "--shipped", str(shipped)]) == 0
    assert {p: p.stat().st_mtime for p in data.rglob("*.parquet")} == before
    assert gz.main(["--merge", str(data), "--into", str(shipped)]) == 0
    jobs = prioritized(tasks=["mrpc"], sets=["cascade"], seeds=[42], device="cpu", profile="cpu")
    assert without_finished(jobs, tmp_path / "empty", also=(shipped,)) == []


def test_cpu_run_refuses_up_front_when_a_borrowed_member_is_not_shipped(tmp_path, capsys):
    """The cpu profile's cascades borrow the shipped MPNet: without its cache (no MANIFEST.json, no entry, or no
    file) the runner refuses before training anything, naming the path and the fix, instead of failing at collect."""
    from toolkit.zoo.build import Where, borrowed_problems

    gz = _gpu_zoo()
    shipped, runs = tmp_path / "shipped", tmp_path / "runs"
    shipped.mkdir()
    args = [str(tmp_path / "out"), "--tiny", "--device", "cpu", "--workers", "0", "--runs", str(runs), "--task", "mrpc",
            "--set", "cascade", "--seed", "42", "--shipped", str(shipped)]
    assert gz.main(args) == 2
    err = capsys.readouterr().err
    assert f"{shipped / 'MANIFEST.json'}: missing" in err and "--shipped" in err
    assert not runs.exists() and not (tmp_path / "out" / "logs").exists()  # nothing trained, nothing written
    (shipped / "MANIFEST.json").write_text(json.dumps({"caches": {}}))
    jobs = prioritized(tasks=["mrpc"], sets=["cascade"], seeds=[42], device="cpu", profile="cpu", tiny=True)
    problems = borrowed_problems(jobs, Where(out=tmp_path / "out", runs=runs, profile="cpu", shipped=shipped))
    assert problems == [f"{shipped / 'mrpc' / 'mpnet_me-cal'}.parquet: the shipped cache that 'mpnet' is borrowed "
                        f"from (with its entry in {shipped / 'MANIFEST.json'}) is missing; ship mrpc/mpnet_me first "
                        f"or use --profile v2, which trains it",
                        f"{shipped / 'mrpc' / 'mpnet_me-test'}.parquet: the shipped cache that 'mpnet' is borrowed "
                        f"from (with its entry in {shipped / 'MANIFEST.json'}) is missing; ship mrpc/mpnet_me first "
                        f"or use --profile v2, which trains it"]
    # the repository's shipped caches hold every borrowed member the cpu plan needs
    plan = prioritized(device="cpu", profile="cpu")
    assert borrowed_problems(plan, Where(out=tmp_path / "o", runs=runs, profile="cpu", shipped=REPO / "data")) == []
    assert borrowed_problems(plan, Where(out=tmp_path / "o", runs=runs, profile="v2", shipped=None)) == []


@pytest.mark.slow
def test_the_script_logs_progress_from_its_worker_processes(tmp_path, placed_models, glue_dir, capsys):
    """scripts/gpu_zoo.py with one spawned worker and --cpu-every 0.5 on a tiny multi-exit MiniLM-L6 set: the
    runner's log has progress lines of the jobs it ran (only of those, after their start), rising, none above the
    job's done figure (the lines' parsing and the ledger's use of them: tests/test_zoo_cpu_progress.py)."""
    from toolkit.zoo.ledger import parse_progress

    out = tmp_path / "out"
    assert _gpu_zoo().main([str(out), "--tiny", "--device", "cpu", "--workers", "1", "--runs", str(tmp_path / "runs"),
                            "--data-dir", str(glue_dir), "--profile", "v2", "--shipped", str(tmp_path / "none"),
                            "--task", "mrpc", "--set", "minilm6_me", "--seed", "42", "--cpu-every", "0.5"]) == 0
    said = capsys.readouterr().out.splitlines()
    jobs = json.loads((out / "logs" / "status.json").read_text())["jobs"]
    got = [(i, p) for i, p in enumerate(map(parse_progress, said)) if p is not None]
    assert got and {p[1] for _, p in got} <= set(jobs)
    for job in {p[1] for _, p in got}:
        start = next(i for i, m in enumerate(said) if f"[zoo] start: {job} " in m)
        figures = [p[2] for i, p in got if p[1] == job and i > start]
        assert len(figures) == sum(p[1] == job for _, p in got)
        assert figures == sorted(figures) and figures[-1] <= jobs[job]["cpu_s"], (job, figures, jobs[job])
