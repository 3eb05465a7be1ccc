"""platform/sizing.py: the data-stream sizing plan, checked against arithmetic done by hand."""
from __future__ import annotations

import math

import pytest

from radisim.platform.sizing import SizingInputs, plan_data_stream

# 4 GPUs on one 8-GPU node of 112 cores; 1,400 samples/s per GPU; 500 images per core-second
FOUR = dict(gpus=4, gpus_per_node=8, cores_per_node=112, decode_images_per_core_s=500.0, pairs_per_epoch=12_000_000,
            epochs=10, gpu_images_per_s=1400.0, fixed_cores_per_node=0.1, headroom=1.25)


def test_four_gpus_are_gpu_bound_with_the_cores_and_epoch_time_worked_by_hand():
    plan = plan_data_stream(SizingInputs(**FOUR))
    assert plan.images_per_s_needed == 5600.0
    assert plan.cores_per_gpu_needed == pytest.approx(1400 / 500 * 1.25)           # 3.5
    assert plan.cores_per_gpu_available == pytest.approx((112 - 0.1 - 4) / 4)       # 26.975
    assert plan.cores_needed_total == pytest.approx(4 * (3.5 + 1) + 0.1)
    assert plan.bottleneck == "GPU step" and plan.images_per_s_achieved == 5600.0
    assert plan.epoch_s == pytest.approx(12e6 / 5600) and plan.total_s == pytest.approx(10 * 12e6 / 5600)
    text = "\n".join(plan.lines())
    assert "4 x 1,400 = 5,600" in text and "(112 - 0.1 fixed - 4 x 1 train) / 4 = 27.0" in text
    assert "0h35m43s" in text  # 2142.9 s per epoch


def test_a_node_short_of_cores_makes_the_data_stream_the_bottleneck():
    plan = plan_data_stream(SizingInputs(**{**FOUR, "gpus": 32, "cores_per_node": 24}))
    # (24 - 0.1 - 8) / 8 = 1.99 decode cores per GPU -> 1.99 * 500 / 1.25 = 795 images/s per GPU
    assert plan.nodes == 4 and plan.bottleneck == "CPU data stream"
    assert plan.images_per_s_achieved == pytest.approx((24 - 0.1 - 8) / 8 * 500 / 1.25 * 32)
    assert plan.epoch_s == pytest.approx(12e6 / plan.images_per_s_achieved)


def test_gpu_rate_from_flops_peak_and_mfu():
    inputs = SizingInputs(**{**FOUR, "gpu_images_per_s": None, "model_flops_per_sample": 300e9,
                             "gpu_peak_flops": 989e12, "mfu": 0.4, "gpu_source": "assumed"})
    plan = plan_data_stream(inputs)
    assert plan.gpu_images_per_s == pytest.approx(989e12 * 0.4 / 300e9)
    assert "300 GFLOP/sample at 40% of 989 TFLOP/s" in plan.lines()[1]


def test_no_cores_left_is_never_not_a_division_by_zero():
    plan = plan_data_stream(SizingInputs(**{**FOUR, "cores_per_node": 4}))
    assert plan.images_per_s_achieved == 0 and math.isinf(plan.epoch_s) and "never" in plan.lines()[-1]


@pytest.mark.parametrize("bad, field", [({"gpus": 0}, "gpus"), ({"decode_images_per_core_s": 0}, "decode_images_per_core_s"),
                                        ({"headroom": 0.5}, "headroom"), ({"gpu_images_per_s": None}, "gpu_images_per_s")])
def test_bad_inputs_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        SizingInputs(**{**FOUR, **bad})


def test_section_for_a_train_plan_with_and_without_a_gpu_rate(tmp_path):
    from types import SimpleNamespace

    from radisim.platform.sizing import Rates, section_for_plan

    plan = SimpleNamespace(gpus=4, total_samples=1_000_000)
    unknown = section_for_plan(plan)
    assert len(unknown) == 1 and "2.5 decode cores" in unknown[0] and "gpu_check.sh" in unknown[0]  # 1000/502*1.25
    rates_file = tmp_path / "rates.json"
    rates_file.write_text('{"gpu_images_per_s": 1000.0, "decode_images_per_core_s": 500.0, "gpu_source": "measured"}')
    lines = section_for_plan(plan, Rates.from_json(str(rates_file)))
    assert "4 x 1,000 = 4,000" in "\n".join(lines) and lines[-1].endswith("1,000,000 / 4,000 = 0h04m10s")
    assert "no GPUs" in section_for_plan(SimpleNamespace(gpus=0, total_samples=10))[0]
    rates_file.write_text('{"gpu_rate": 1}')
    with pytest.raises(ValueError, match="gpu_rate"):
        Rates.from_json(str(rates_file))
