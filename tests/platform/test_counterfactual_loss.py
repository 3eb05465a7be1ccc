"""The counterfactual term of the training loss, and the pipeline columns that feed it."""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from radisim.platform.data.pipeline import caption_groups, preprocess
from radisim.platform.train.loop import (
    _compute_loss, build_loss, counterfactual_hits, counterfactual_loss, same_group_partner,
)


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_clip_term_is_the_true_captions_cross_entropy_among_its_counterfactuals():
    img, txt, neg = _unit(4, 8), _unit(4, 8, seed=1), _unit(4, 2, 8, seed=2)
    mask = torch.tensor([[True, True], [True, False], [False, False], [True, True]])
    scale = torch.tensor(10.0)
    got = counterfactual_loss(img, txt, neg, mask, scale)
    want = []
    for b in range(4):
        logits = [10 * img[b] @ txt[b]] + [10 * img[b] @ neg[b, j] for j in range(2) if mask[b, j]]
        want.append(-torch.log_softmax(torch.stack(logits), 0)[0])
    assert torch.allclose(got, torch.stack(want).mean(), atol=1e-6)
    assert want[2] == 0  # no counterfactual: the row adds nothing


def test_siglip_term_adds_one_negative_pair_per_counterfactual():
    img, txt, neg = _unit(3, 8), _unit(3, 8, seed=1), _unit(3, 2, 8, seed=2)
    mask = torch.tensor([[True, False], [True, True], [False, False]])
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    got = counterfactual_loss(img, txt, neg, mask, scale, bias)
    want = sum(-F.logsigmoid(-(10 * img[b] @ neg[b, j] - 10)) for b in range(3) for j in range(2) if mask[b, j]) / 3
    assert torch.allclose(got, want, atol=1e-6)


def test_compute_loss_splits_captions_from_counterfactuals():
    img, txt, neg = _unit(4, 8), _unit(4, 8, seed=1), _unit(4, 3, 8, seed=2)
    mask = torch.ones(4, 3, dtype=torch.bool)
    out = {"image_features": img, "text_features": torch.cat([txt, neg.flatten(0, 1)]), "logit_scale": torch.tensor(5.0)}
    clip = build_loss("clip", 0, 1, False, False)
    total, part = _compute_loss(clip, out, "clip", mask)
    plain, none = _compute_loss(clip, {**out, "text_features": txt}, "clip")
    assert none is None and torch.allclose(part, counterfactual_loss(img, txt, neg, mask, torch.tensor(5.0)))
    assert torch.allclose(total, plain + part)
    assert math.isfinite(total.item()) and total > plain


def test_the_term_pulls_the_image_towards_its_caption_and_away_from_the_counterfactual():
    torch.manual_seed(0)
    img = torch.randn(1, 8, requires_grad=True)
    txt, neg = _unit(1, 8, seed=1), _unit(1, 1, 8, seed=2)
    opt = torch.optim.SGD([img], lr=0.5)
    for _ in range(50):
        opt.zero_grad()
        counterfactual_loss(F.normalize(img, dim=-1), txt, neg, torch.ones(1, 1, dtype=torch.bool), torch.tensor(10.0)).backward()
        opt.step()
    e = F.normalize(img.detach(), dim=-1)
    assert (e @ txt.T).item() > (e @ neg[0].T).item() + 0.5


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_preprocess_adds_tokenized_counterfactuals_and_their_mask():
    batch = {
        "image_id": np.array(["a", "b", "bad", "c"]),
        "image": np.array([_png(10), _png(20), b"not an image", _png(30)], dtype=object),
        "caption": np.array(["CT of the abdomen with the liver in the upper left", "an image",
                             "a CT", "chest radiograph with no pneumonia"]),
        "phase": np.array(["localization", "grading", "modality", "abnormality"]),
    }
    out = preprocess(batch, image_size=8, model_name="radisim-tiny", hard_negatives=2)
    assert out["image"].shape == (3, 8, 8) and out["text"].shape[0] == 3  # the corrupt row is dropped
    assert out["neg_text"].shape == (3, 2, out["text"].shape[1]) and out["neg_text"].dtype == np.int64
    assert out["neg_mask"].tolist() == [[True, True], [False, False], [True, True]]
    assert out["group"].shape == (3,) and out["group"].dtype == np.int64
    assert not np.array_equal(out["neg_text"][0, 0], out["text"][0])
    plain = preprocess(batch, image_size=8, model_name="radisim-tiny")
    assert set(plain) == {"image", "text"} and np.array_equal(plain["text"], out["text"])
    # a batch whose images are all corrupt is dropped whole, counterfactual columns included
    bad = {k: v[2:3] for k, v in batch.items()}
    empty = preprocess(bad, image_size=8, model_name="radisim-tiny", hard_negatives=2)
    assert empty["neg_text"].shape == (0, 2, out["text"].shape[1]) and empty["neg_mask"].shape == (0, 2)


def test_blind_hits_tell_an_image_grounded_term_from_a_wording_shortcut():
    eye = torch.eye(8)
    mask = torch.tensor([[True], [True], [True], [False]])
    one_group = torch.zeros(4, dtype=torch.int64)
    # grounded: each caption matches its own image only, its counterfactual matches none
    grounded = counterfactual_hits(eye[:4], eye[:4], eye[4:].unsqueeze(1), mask, one_group)
    assert grounded.tolist() == [3, 3, 0, 3]  # hits, pairs, blind hits, blind pairs
    # shortcut: captions share a direction every image has, counterfactuals point away from it, so the
    # true caption wins with any image of the batch
    shared = eye[7]
    images = F.normalize(eye[:4] + shared, dim=-1)
    shortcut = counterfactual_hits(images, shared.expand(4, 8), -shared.expand(4, 1, 8), mask, one_group)
    assert shortcut.tolist() == [3, 3, 3, 3]
    # a shortcut per body part: captions win with any image of their own body part (rows 0 and 2 are
    # one, rows 1 and 3 another); the blind partner is of the same body part, so it is seen
    part = torch.stack([eye[6], eye[7], eye[6], eye[7]])
    images = F.normalize(part + 0.5 * eye[:4], dim=-1)
    all_pairs = torch.ones(4, 1, dtype=torch.bool)
    per_part = counterfactual_hits(images, part, -part.unsqueeze(1), all_pairs, torch.tensor([5, 9, 5, 9]))
    assert per_part.tolist() == [4, 4, 4, 4]
    # rows alone in their group have no blind partner and are not counted blind
    alone = counterfactual_hits(images, part, -part.unsqueeze(1), all_pairs, torch.tensor([5, 9, 3, 9]))
    assert alone.tolist() == [4, 4, 2, 2]


def test_same_group_partner_is_the_next_row_of_the_group():
    partner, has = same_group_partner(torch.tensor([7, 1, 7, 7, 2]))
    assert partner[has].tolist() == [2, 3, 0] and has.tolist() == [True, False, True, True, False]


def test_caption_groups_read_modality_and_body_part_from_the_caption():
    g = caption_groups(["brain MRI: a tumor", "sagittal MR image of the head, no tumor seen",
                        "chest radiograph: pneumonia", "the liver is in the upper left of this axial CT image"])
    assert g.dtype == np.int64 and g[0] == g[1] and len(set(g.tolist())) == 3