"""The eligibility table: constraints × capability × host policy × prefer_cuda grace."""

from __future__ import annotations

import pytest

from cis490.fleet.capability import GPU, Capability, detect, eligible
from cis490.fleet.manifest import HostPolicy
from cis490.fleet.spec import Constraints, JobSpec

CPU = Capability(host_id="pi", cores=4, ram_gib=4.0)
BIG_CPU = Capability(host_id="thinkpad", cores=8, ram_gib=16.0)
GPU_HOST = Capability(host_id="gamer", cores=16, ram_gib=64.0, cuda=True, gpus=(GPU("RTX", 12.0),))
ANY = HostPolicy()
SUMMARY_ONLY = HostPolicy(allow_jobs=("gbt", "mlp"))
NO_ORACLE = HostPolicy(deny_jobs=("*_oracle",))


def spec(model="cnn", mode="realistic", **c) -> JobSpec:
    return JobSpec(model=model, mode=mode, hyper={}, constraints=Constraints(**c))


@pytest.mark.parametrize("job, cap, policy, kw, ok, why", [
    (spec(), CPU, ANY, {}, True, ""),
    (spec(require_cuda=True), CPU, ANY, {}, False, "requires CUDA"),
    (spec(require_cuda=True), GPU_HOST, ANY, {}, True, ""),
    (spec(min_vram_gib=16), GPU_HOST, ANY, {}, False, "VRAM"),
    (spec(min_vram_gib=8), GPU_HOST, ANY, {}, True, ""),
    (spec(min_ram_gib=8), CPU, ANY, {}, False, "RAM"),
    (spec(min_ram_gib=8), BIG_CPU, ANY, {}, True, ""),
    (spec(allowed_hosts=("gamer",)), BIG_CPU, ANY, {}, False, "allowed_hosts"),
    (spec(allowed_hosts=("gamer",)), GPU_HOST, ANY, {}, True, ""),
    (spec("cnn"), CPU, SUMMARY_ONLY, {}, False, "host policy"),
    (spec("gbt"), CPU, SUMMARY_ONLY, {}, True, ""),
    (spec("gbt", "oracle"), CPU, NO_ORACLE, {}, False, "host policy"),
    (spec("gbt", "realistic"), CPU, NO_ORACLE, {}, True, ""),
    # prefer_cuda: a CPU host leaves it alone while a live CUDA peer could take it…
    (spec(prefer_cuda=True), BIG_CPU, ANY, {"cuda_peer_available": True, "waited_s": 10}, False, "prefers CUDA"),
    # …unless the job has waited past the grace period…
    (spec(prefer_cuda=True), BIG_CPU, ANY, {"cuda_peer_available": True, "waited_s": 4000}, True, ""),
    # …or no CUDA host is live (or eligible) at all.
    (spec(prefer_cuda=True), BIG_CPU, ANY, {"cuda_peer_available": False, "waited_s": 10}, True, ""),
    (spec(prefer_cuda=True), GPU_HOST, ANY, {"cuda_peer_available": True, "waited_s": 0}, True, ""),
])
def test_eligibility_table(job, cap, policy, kw, ok, why):
    verdict = eligible(job, cap, policy, prefer_cuda_grace_s=1800, **kw)
    assert verdict.ok is ok
    assert why in verdict.reason


def test_unknown_kind_is_not_eligible():
    cap = Capability(host_id="old", kinds=("smoke", "gbt"))
    assert not eligible(spec("transformer"), cap, ANY).ok


def test_prefer_cuda_defers_to_a_live_cuda_worker_in_the_spool(spool, tmp_path):
    from cis490.fleet.claim import Claimer, WorkerInfo, register

    m = tmp_path / "m.toml"
    m.write_text('[[jobs]]\nmodel="smoke"\nmode="gpu"\nprefer_cuda=true\n[[jobs]]\nmodel="smoke"\nmode="any"\n')
    spool.reload(m)
    cpu = WorkerInfo.create("cpu", BIG_CPU)
    gpu = WorkerInfo.create("gamer", GPU_HOST)
    c = Claimer(spool, cpu)
    assert len(c.scan()) == 2  # no CUDA worker registered yet: both are fair game
    register(spool, gpu)
    got = Claimer(spool, cpu).scan()
    assert [n.split(".")[0] for n in got] == ["smoke_any"]
    assert Claimer(spool, gpu).scan() and len(Claimer(spool, gpu).scan()) == 2


def test_detect_reports_this_host_without_importing_torch():
    import subprocess
    import sys

    cap = detect("me")
    assert cap.host_id == "me" and cap.cores >= 1 and cap.ram_gib > 0
    assert cap.cuda is False or cap.gpus  # CUDA is only claimed with a GPU seen by nvidia-smi
    code = ("import sys; from cis490.fleet.capability import detect; c = detect(); "
            "print(sorted(m for m in ('torch', 'xgboost', 'pandas', 'pyarrow', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
