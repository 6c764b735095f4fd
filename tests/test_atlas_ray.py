"""Both atlas engines give the same atlas (up to float noise) on the planted tiny model; the Ray engine runs on a
local Ray cluster this test starts itself (``ray.init(num_cpus=2)``) and shuts down after."""

from __future__ import annotations

import numpy as np
import pytest
from test_atlas import DEAD, DUPLICATES, check_consistent, planted, run  # noqa: F401  (planted is a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_and_local_engines_give_the_same_atlas(planted, ray_cluster, tmp_path):  # noqa: F811
    model, images = planted
    local = run(model, images, tmp_path / "local")
    # two workers of one CPU each: shards and chunks really are spread and merged in whatever order they finish
    far = run(model, images, tmp_path / "ray", engine="ray", engine_options={"cpus_per_worker": 1})
    head = check_consistent(tmp_path / "ray")
    assert head["engine"] == "ray" and local.header["engine"] == "local"
    assert head["dead"] == local.header["dead"] == DEAD
    assert {(a, b, c) for a, b, c, _ in head["duplicates"]} == DUPLICATES
    assert np.allclose([d[3] for d in head["duplicates"]], [d[3] for d in local.header["duplicates"]], atol=1e-6)
    for a, b in zip(local.kernels, far.kernels):
        assert (a["layer"], a["kernel"], a["dead"], a["duplicate_of"]) == (b["layer"], b["kernel"], b["dead"],
                                                                           b["duplicate_of"])
        assert a["firing_rate"] == b["firing_rate"] and a["histogram"] == b["histogram"]
        assert [(e["image"], e["row"], e["col"]) for e in a["exemplars"]] == \
            [(e["image"], e["row"], e["col"]) for e in b["exemplars"]]
        assert np.allclose([a["mean"], a["std"], a["max"]], [b["mean"], b["std"], b["max"]], rtol=1e-5, atol=1e-7)
        assert [c["kernel"] for c in a["correlated"]] == [c["kernel"] for c in b["correlated"]] or \
            np.allclose([c["corr"] for c in a["correlated"]], [c["corr"] for c in b["correlated"]], atol=1e-5)
        ea, eb = a["explanations"], b["explanations"]
        assert [e["status"] for e in ea] == [e["status"] for e in eb]
        for x, y in zip(ea, eb):
            for key in ("kept", "others_kept", "specificity_after", "mask_area"):
                assert x[key] == pytest.approx(y[key], abs=1e-4), key
