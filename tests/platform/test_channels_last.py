"""The image tower in channels-last memory layout (train.channels_last): same model, same optimizer
steps, standard-layout checkpoints, and a resumed optimizer whose moments follow the weights' layout."""
from __future__ import annotations

import torch

from radisim.platform.models import load_clip, save_checkpoint
from radisim.platform.models.factory import WEIGHTS_FILE
from radisim.platform.train.loop import CLIP_MEAN, CLIP_STD, align_optimizer_state, normalise, use_channels_last

MEAN = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def _model():
    torch.manual_seed(0)
    return load_clip("radisim-tiny").model


def test_channels_last_tower_computes_the_same_features_and_gradients():
    images = torch.randint(0, 256, (4, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    plain, nhwc = _model(), _model()
    layout = use_channels_last(nhwc)
    x = normalise(images, MEAN, STD, layout)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert nhwc.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    a, b = plain.encode_image(normalise(images, MEAN, STD)), nhwc.encode_image(x)
    assert torch.allclose(a, b, atol=1e-5) and a.abs().max() > 0.01
    a.square().sum().backward()
    b.square().sum().backward()
    ga = torch.cat([p.grad.flatten() for p in plain.visual.parameters()])
    gb = torch.cat([p.grad.flatten() for p in nhwc.visual.parameters()])
    assert (ga - gb).norm() <= 1e-5 * ga.norm()  # float sums in another order
    assert nhwc.visual.conv1.weight.grad.is_contiguous(memory_format=torch.channels_last)


def test_checkpoint_of_a_channels_last_model_is_standard_layout_and_loads_back(tmp_path):
    model = _model()
    use_channels_last(model)
    save_checkpoint(model, "radisim-tiny", tmp_path)
    state = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)["state_dict"]
    assert all(t.is_contiguous() for t in state.values())
    assert torch.equal(state["visual.conv1.weight"], model.visual.conv1.weight.detach())
    loaded = load_clip("radisim-tiny", checkpoint=tmp_path).model
    assert torch.equal(loaded.visual.conv1.weight, model.visual.conv1.weight.detach())


def _adamw_steps(weight: torch.nn.Parameter, grads, state_dict=None):
    opt = torch.optim.AdamW([weight], lr=1e-2, fused=True)
    if state_dict is not None:
        opt.load_state_dict(state_dict)
        align_optimizer_state(opt)
    for g in grads:
        weight.grad = torch.empty_like(weight).copy_(g)  # autograd's layout contract: the weight's
        opt.step()
    return opt


def test_resumed_moments_follow_the_weights_layout_so_fused_adamw_steps_them_right():
    """A checkpoint written with channels_last off, resumed with it on (and the reverse): without
    `align_optimizer_state` torch's fused AdamW pairs each weight with another element's moments."""
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(8, 4, 3, 3, generator=g)
    grads = [torch.randn(8, 4, 3, 3, generator=g) for _ in range(4)]
    reference = torch.nn.Parameter(w0.clone())
    _adamw_steps(reference, grads)

    for saved_cl, resumed_cl in ((False, True), (True, False)):
        fmt = {True: torch.channels_last, False: torch.contiguous_format}
        first = torch.nn.Parameter(w0.clone().contiguous(memory_format=fmt[saved_cl]))
        saved = _adamw_steps(first, grads[:1]).state_dict()
        resumed = torch.nn.Parameter(first.detach().clone().contiguous(memory_format=fmt[resumed_cl]))
        opt = _adamw_steps(resumed, grads[1:], saved)
        assert opt.state[resumed]["exp_avg"].stride() == resumed.stride()
        assert torch.allclose(resumed.detach(), reference.detach(), atol=1e-6), (saved_cl, resumed_cl)
