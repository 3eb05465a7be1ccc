"""The phantom radiology generator: determinism, label truthfulness, balance, modality physics
and the parquet dataset writer, all on real generated data at 64 px."""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from radisim.curriculum import phantom
from radisim.curriculum.phantom import (
    _NEGATED_PHRASE,
    REGION_WORDS, PhantomCase, catalog, generate_case, mask_region, render_case, write_phantom_dataset,
)
from radisim.curriculum.phases import PHASE_INDEX, PHASES, REGIONS, region_of

N_BALANCE = 1000


@pytest.fixture(scope="module")
def cases() -> list[PhantomCase]:
    return [generate_case(0, i) for i in range(N_BALANCE)]


def _mentions_modality(caption: str, modality: str) -> bool:
    words = catalog()["modality_words"][modality]
    return any(re.search(rf"(?<![A-Za-z]){re.escape(w)}(?![A-Za-z])", caption) for w in words)


def test_pure_function_of_seed_index_size():
    a, b = generate_case(3, 17), generate_case(3, 17)
    assert a.image.dtype == np.uint8 and a.image.shape == (64, 64)
    assert np.array_equal(a.image, b.image)
    for f in ("modality", "anatomy", "view", "organs", "target_organ", "target_region",
              "finding", "finding_region", "subtype", "grade", "captions"):
        assert getattr(a, f) == getattr(b, f), f
    assert not np.array_equal(a.image, generate_case(3, 18).image)
    assert not np.array_equal(a.image, generate_case(4, 17).image)
    big = generate_case(3, 17, size=128)
    assert big.image.shape == (128, 128)
    # the scene and captions do not depend on the size, only the pixels do
    assert (big.modality, big.anatomy, big.view, big.finding, big.subtype) == \
        (a.modality, a.anatomy, a.view, a.finding, a.subtype)


def test_fields_are_in_the_catalog(cases):
    cat = catalog()
    combos = {(c["modality"], c["anatomy"]): c for c in cat["combos"]}
    for c in cases:
        combo = combos[(c.modality, c.anatomy)]
        assert c.view in combo["views"]
        assert c.organs == tuple(sorted(c.organs)) and c.organs
        assert set(c.organs) <= set(combo["organs"])
        assert c.target_organ in c.organs
        assert c.target_region in REGIONS
        assert c.finding in combo["findings"]
        if c.finding == "none":
            assert c.finding_region == c.subtype == c.grade == ""
            assert "grading" not in c.captions
        else:
            assert c.finding_region in REGIONS
            assert "grading" in c.captions
        if c.subtype:
            assert c.subtype in cat["subtypes"][c.finding]
        if c.grade:
            assert c.grade in cat["grades"][c.subtype]
        elif c.subtype in cat["grades"]:
            pytest.fail(f"{c.subtype} without a grade")
        assert set(c.captions) <= set(PHASES)
        assert {"modality", "anatomy", "localization", "abnormality"} <= set(c.captions)


def test_every_combination_view_and_finding_has_a_scene_builder():
    """The builder registry covers the catalogue: every (combo, view, finding, subtype, grade) builds a
    plan whose labelled organs come from the combo's vocabulary and whose lesion, if any, is placed."""
    from radisim.curriculum.phantom.scene import build_plan

    rng = np.random.default_rng(0)
    for combo in phantom.COMBOS:
        for view in combo.views:
            for finding in ("none", *combo.findings):
                subtypes = phantom.SUBTYPES.get(finding, ("",))
                for subtype in subtypes:
                    if (finding, subtype, view) == ("tumor", "pituitary adenoma", "axial"):
                        continue  # not drawn: the sella is not in an axial slice of the phantom head
                    for grade in phantom.GRADES.get(subtype, ("",)):
                        plan = build_plan(rng, combo.modality, combo.anatomy, view, finding, subtype, grade)
                        key = (combo.modality, combo.anatomy, view, finding, subtype, grade)
                        assert plan.present & set(combo.organs), key
                        assert (plan.lesion_center is None) == (finding == "none"), key
                        assert (finding == "none") or plan.details["size"] > 0, key


def test_captions_agree_with_tags(cases):
    for c in cases:
        caps = {k: v.lower() for k, v in c.captions.items()}
        for phase, text in c.captions.items():
            assert _mentions_modality(text, c.modality), (phase, text)
            assert "synthetic" not in text.lower() and "phantom" not in text.lower()
        # modality captions carry modality-level information only
        assert c.anatomy not in caps["modality"] and c.view not in caps["modality"]
        for organ in c.organs:
            assert organ in caps["anatomy"], (organ, caps["anatomy"])
        assert c.view in caps["anatomy"] or (c.view == "frontal" and "pa " in caps["anatomy"])
        assert c.target_organ in caps["localization"]
        assert any(w in caps["localization"] for w in REGION_WORDS[c.target_region]), caps["localization"]
        if c.finding == "none":
            assert re.search(r"\bno\b", caps["abnormality"]), caps["abnormality"]
        else:
            # the finding is stated as present; pertinent negatives ("; no ...") name only others
            stated, _, negatives = caps["abnormality"].partition("; no ")
            phrases = [p.lower() for p in _NEGATED_PHRASE[c.finding]]
            assert any(p in stated for p in phrases) and not re.search(r"\bno\b", stated), caps["abnormality"]
            assert not any(p in negatives for p in phrases), caps["abnormality"]
            g = caps["grading"]
            assert any(w in g for w in REGION_WORDS[c.finding_region]) and re.search(r"\d+ mm", g), g
            for tag in (c.subtype, c.grade):
                assert tag.lower() in g, (tag, g)


def test_normal_studies_state_pertinent_negatives(cases):
    """A normal study names the findings its combo is read for, as reports do ("no pneumonia"), so the
    text tower learns what "no <finding>" looks like, which the stage-4 negative prompts rely on."""
    looked_for = {("CT", "head"): ["hemorrhage"], ("MR", "head"): ["tumor"], ("DR", "chest"): ["pneumonia|consolidation"],
                  ("MR", "knee"): ["acl tear", "meniscus tear"], ("CT", "abdomen"): ["liver", "lymph"],
                  ("CT", "chest"): ["covid-19|ground-glass", "nodule|mass|adenocarcinoma", "lymph"], ("MR", "abdomen"): ["abnormality"]}
    normal = [c for c in cases if c.finding == "none"]
    assert {(c.modality, c.anatomy) for c in normal} == set(looked_for)
    for c in normal:
        text = c.captions["abnormality"].lower()
        for pattern in looked_for[(c.modality, c.anatomy)]:
            assert re.search(rf"\bno\b.*({pattern})", text), (pattern, text)


def test_captions_vary_in_wording(cases):
    for phase in ("anatomy", "localization", "abnormality", "grading"):
        assert len({c.captions[phase] for c in cases if phase in c.captions}) > 40, phase
    for mod in ("CT", "MR", "DR"):
        assert len({c.captions["modality"] for c in cases if c.modality == mod}) >= 4, mod
    # several phrasings of the same scene, not one string per concept
    ab = {c.captions["abnormality"].split(" ")[0] for c in cases if c.finding == "none"}
    assert len(ab) >= 4


def test_regions_are_the_quadrants_of_the_masks():
    for i in range(150):
        case, masks = render_case(1, i)
        assert set(case.organs) <= set(masks)
        target = masks[case.target_organ]
        assert target.shape == case.image.shape and target.sum() > 0
        w = target.sum()
        row = float((target.sum(axis=1) * (np.arange(64) + 0.5)).sum() / w)
        col = float((target.sum(axis=0) * (np.arange(64) + 0.5)).sum() / w)
        assert case.target_region == region_of(row, col, 64, 64) == mask_region(target)
        if case.finding != "none":
            assert masks["lesion"].sum() > 3, case
            assert case.finding_region == mask_region(masks["lesion"])


def test_lesions_have_modality_appropriate_contrast():
    """Hyperdense blood on CT, enhancing meningioma on MR, dark low-grade glioma, GGO brighter
    than lung, hypodense liver tumour, bright fluid in a torn meniscus."""
    seen = Counter()
    for i in range(3000):
        case, masks = render_case(2, i)
        key = case.subtype or case.finding
        if case.finding == "none" or seen[key] >= 5:
            continue
        lesion = masks["lesion"] > 0.9
        if lesion.sum() < 3:
            continue
        inside = case.image[lesion].mean()
        host = {"hemorrhage": "brain", "tumor": "brain", "covid-19 pneumonia": "lungs",
                "liver tumor": "liver", "pneumonia": "lungs"}.get(case.finding)
        if host is None or host not in masks:
            continue
        # median: organ masks are as drawn, other organs may lie over part of them
        around = np.median(case.image[(masks[host] > 0.9) & ~(masks["lesions"] > 0.05)])
        seen[key] += 1
        if case.finding in ("hemorrhage", "covid-19 pneumonia", "pneumonia") or \
                key in ("meningioma", "pituitary adenoma"):
            assert inside > around + 25, (key, inside, around)
        elif key in ("liver tumor",) or case.grade == "low grade":
            assert inside < around - 25, (key, inside, around)
    assert sum(seen.values()) >= 25, seen


def test_label_balance(cases):
    n = len(cases)
    by = {f: Counter(getattr(c, f) for c in cases)
          for f in ("modality", "anatomy", "target_region", "view", "finding")}
    assert set(by["modality"]) == {"CT", "MR", "DR"}
    assert min(by["modality"].values()) > 0.08 * n
    assert set(by["anatomy"]) == {"head", "chest", "abdomen", "knee"}
    assert min(by["anatomy"].values()) > 0.08 * n
    assert set(by["target_region"]) == set(REGIONS)
    assert min(by["target_region"].values()) > 0.18 * n, by["target_region"]
    assert set(by["view"]) == {"axial", "sagittal", "coronal", "frontal", "lateral"}
    assert 0.35 * n < by["finding"]["none"] < 0.65 * n
    assert set(by["finding"]) == set(catalog()["findings"])
    # multi-label variety: the visible organ set varies within a combination
    sets = Counter(c.organs for c in cases if (c.modality, c.anatomy) == ("CT", "abdomen"))
    assert len(sets) >= 8
    # every organ of every combination is the localization target somewhere
    targets = {(c.modality, c.anatomy, c.target_organ) for c in cases}
    for combo in catalog()["combos"]:
        for organ in combo["organs"]:
            assert (combo["modality"], combo["anatomy"], organ) in targets, organ
    # target regions are balanced within each modality too (flips/translations are not leaky)
    for mod in ("CT", "MR", "DR"):
        regs = Counter(c.target_region for c in cases if c.modality == mod)
        assert min(regs.values()) > 0.12 * sum(regs.values()), (mod, regs)


def test_modalities_have_distinct_image_statistics(cases):
    stats = {m: [] for m in ("CT", "MR", "DR")}
    for c in cases:
        im = c.image.astype(np.float32)
        darkest = np.sort(im.ravel())[: im.size // 5]
        stats[c.modality].append((
            darkest.mean(),                          # background level
            (im > 40).mean(),                        # how much of the field holds the body
            np.abs(np.diff(im, axis=1)).mean(),      # pixel-to-pixel roughness (noise)
        ))
    s = {m: np.median(np.array(v), axis=0) for m, v in stats.items()}
    # CT: black air; MR: a Rician noise floor, noisiest texture; DR: a projection filling the field
    assert s["CT"][0] < 1.0 and s["MR"][0] > 4.0, s
    assert s["MR"][2] > 1.5 * max(s["CT"][2], s["DR"][2]), s
    assert s["DR"][1] > s["CT"][1] + 0.12 and s["DR"][1] > s["MR"][1] + 0.12, s
    # per image: the background level alone separates CT from MR almost always
    ct_bg = np.array(stats["CT"])[:, 0]
    mr_bg = np.array(stats["MR"])[:, 0]
    assert (ct_bg < 3.0).mean() > 0.95 and (mr_bg > 3.0).mean() > 0.95


def test_generation_speed_is_reported():
    n = 300
    t0 = time.perf_counter()
    for i in range(n):
        generate_case(7, i)
    rate = n / (time.perf_counter() - t0)
    print(f"\nphantom generation: {rate:,.0f} images/s at 64 px (one core)")


def _read_split(path: Path):
    files = sorted(path.glob("part-*.parquet"))
    assert files
    return files, [r for f in files for r in pq.read_table(f).to_pylist()]


def test_write_phantom_dataset(tmp_path):
    out = tmp_path / "phantom"
    card = write_phantom_dataset(out, n_train_images=40, n_eval_images=12, seed=5, size=64,
                                 rows_per_shard=64, progress=False)
    files, train = _read_split(out / "train")
    assert len(files) >= 3 and all(pq.read_metadata(f).num_rows <= 64 for f in files)
    schema = pq.read_schema(files[0])
    assert str(schema.field("organs").type) == "list<element: string>"
    assert str(schema.field("phase_index").type) == "int8"
    assert str(schema.field("image").type) == "binary"
    ids = sorted({r["image_id"] for r in train})
    assert len(ids) == 40 and ids[0] == "phantom-train-000000"
    expected_rows = 0
    for i in range(40):
        expected_rows += len(generate_case(5, i).captions)
    assert len(train) == expected_rows == card["splits"]["train"]["rows"]
    from PIL import Image
    import io
    for r in train:
        assert r["phase_index"] == PHASE_INDEX[r["phase"]]
        assert r["source"] == "phantom" and r["synthetic"] is True
        assert r["target_organ"] in r["organs"]
    first = train[0]
    case = generate_case(5, 0)
    img = np.array(Image.open(io.BytesIO(first["image"])))
    assert img.dtype == np.uint8 and np.array_equal(img, case.image)
    assert first["caption"] == case.captions[first["phase"]]

    efiles, evals = _read_split(out / "eval")
    assert len(evals) == 12
    ecols = set(pq.read_schema(efiles[0]).names)
    assert {"caption", "phase", "phase_index"}.isdisjoint(ecols)
    assert {f"caption_{p}" for p in PHASES} <= ecols
    ev0 = generate_case(5, phantom.EVAL_INDEX_OFFSET)
    assert evals[0]["caption_modality"] == ev0.captions["modality"]
    for r in evals:
        assert (r["caption_grading"] is None) == (r["finding"] == "none")
    train_imgs = {r["image"] for r in train}
    assert not train_imgs & {r["image"] for r in evals}

    on_disk = json.loads((out / "data_card.json").read_text())
    assert on_disk == json.loads(json.dumps(card))
    assert on_disk["synthetic"] is True and "SYNTHETIC" in on_disk["note"]
    assert on_disk["generator"] == "radisim.curriculum.phantom"
    for split, n_img, rows in (("train", 40, len(train)), ("eval", 12, 12)):
        sp = on_disk["splits"][split]
        assert sp["images"] == n_img and sp["rows"] == rows
        for key in ("by_modality", "by_anatomy", "by_finding", "by_view"):
            assert sum(sp[key].values()) == n_img, key
    assert sum(on_disk["splits"]["train"]["by_phase"].values()) == len(train)
    assert Counter(r["phase"] for r in train) == on_disk["splits"]["train"]["by_phase"]

    # byte-identical on re-run
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    write_phantom_dataset(out, n_train_images=40, n_eval_images=12, seed=5, size=64,
                          rows_per_shard=64, progress=False)
    after = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert before == after


def test_cohort_cases_are_appended_and_leave_the_general_ones_alone(tmp_path):
    """Disease-cohort cases (COHORTS) carry their cohort's finding, come after the general cases of
    each split in their own index range, and do not change one byte of the general cases."""
    plain, mixed = tmp_path / "plain", tmp_path / "mixed"
    write_phantom_dataset(plain, n_train_images=30, n_eval_images=12, seed=5, size=32, progress=False)
    card = write_phantom_dataset(mixed, n_train_images=30, n_eval_images=12, seed=5, size=32, progress=False,
                                 cohort_fraction=0.5)
    assert card["cohort_fraction"] == 0.5 and set(card["cohorts"]) == set(phantom.COHORTS)
    for split, n, extra in (("train", 30, 15), ("eval", 12, 6)):
        sp = card["splits"][split]
        assert (sp["images"], sp["cohort_images"]) == (n, extra)
        assert sp["by_cohort"] == {"general": n, "brain-tumor-mr": (extra + 1) // 2, "lung-adenocarcinoma-ct": extra // 2}
        _, rows = _read_split(mixed / split)
        _, general = _read_split(plain / split)
        assert [r for r in rows if r["source"] == "phantom"] == general
        cohort_rows = [r for r in rows if r["source"] != "phantom"]
        assert len({r["image_id"] for r in cohort_rows}) == extra
        for r in cohort_rows:
            name = r["source"].removeprefix("phantom/")
            modality, anatomy, finding = phantom.COHORTS[name]
            assert (r["modality"], r["anatomy"], r["finding"]) == (modality, anatomy, finding)
            assert r["image_id"].startswith(f"phantom-{split}-cohort-") and r["synthetic"] is True
        if split == "train":  # a cohort case is captioned at every granularity, grading included
            assert {r["phase"] for r in cohort_rows} == set(PHASES)
    # the cohort draw fixes the finding, not its subtype or grade
    tumors = [generate_case(0, phantom.COHORT_INDEX_OFFSET + j, 32, "brain-tumor-mr") for j in range(60)]
    assert {c.finding for c in tumors} == {"tumor"}
    assert {c.subtype for c in tumors} == {"glioma", "meningioma", "pituitary adenoma"}
    assert len({c.grade for c in tumors if c.subtype == "meningioma"}) == 3


def test_grid_preview(tmp_path):
    """Not an assertion on looks: writes /tmp/phantom_grid.png for a human to inspect."""
    from PIL import Image
    tiles = [generate_case(0, i).image for i in range(24)]
    grid = np.vstack([np.hstack(tiles[r * 6:(r + 1) * 6]) for r in range(4)])
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST) \
        .save("/tmp/phantom_grid.png")
    assert grid.shape == (256, 384)
