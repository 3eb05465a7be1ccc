import io

import numpy as np
import pytest
from PIL import Image

from radisim.evals.datasets import DatasetNotFoundError, Examples, get_adapter, load_examples
from radisim.evals.tasks import get_subtask, subtasks


def test_each_phantom_subtask_yields_examples_with_more_than_one_class(phantom_root):
    pools = set()
    for task in subtasks():
        ex = load_examples("phantom", phantom_root, task)
        pools.add(id(ex.pool))
        assert len(ex) >= 4, task.id  # the graded lung adenocarcinomas are the rarest (~1% of images)
        if task.kind == "multi-label":
            assert ex.y.shape == (len(ex), len(task.classes))
            assert ((ex.y.sum(0) > 0) & (ex.y.sum(0) < len(ex))).sum() >= 2, task.id  # labels that vary
        else:
            assert len(np.unique(ex.y)) > 1, task.id
            assert ex.y.max() < len(task.classes)
        if task.kind == "localization":
            assert ex.queries is not None and len(ex.queries) == len(ex)
    assert len(pools) == 1  # every subtask reads the same split: one embedding pass


def test_phantom_rules_select_the_right_rows(phantom_root):
    ex = load_examples("phantom", phantom_root, get_subtask("internal_meningioma_grade"))
    assert set(ex.metadata["subtype"]) == {"meningioma"} and set(ex.metadata["modality"]) == {"MR"}
    assert [ex.classes[k] for k in ex.y] == ["WHO " + g for g in ex.metadata["grade"]]
    acl = load_examples("phantom", phantom_root, get_subtask("mrnet_acl"))
    assert set(acl.metadata["anatomy"]) == {"knee"}
    assert set(acl.metadata["finding"][acl.y == 1]) == {"acl tear"}
    assert "acl tear" not in set(acl.metadata["finding"][acl.y == 0])
    loc = load_examples("phantom", phantom_root, get_subtask("chaos_ct"))
    assert set(loc.queries) == {"liver"} and [loc.classes[k] for k in loc.y] == list(loc.metadata["target_region"])


def test_missing_root_names_what_was_expected_where(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"eval/part-\*\.parquet under .*nowhere"):
        load_examples("phantom", tmp_path / "nowhere", get_subtask("modality"))
    with pytest.raises(DatasetNotFoundError, match="class 'no tumor' in no/ under "):
        load_examples("image_folder", tmp_path, get_subtask("br35h"), folders={"no tumor": "no", "tumor": "yes"})
    with pytest.raises(KeyError, match="no dataset adapter named 'no_such_dataset'"):
        get_adapter("no_such_dataset")


def test_image_folder_adapter_reads_class_folders(tmp_path):
    for folder, n in (("no", 2), ("yes", 3)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / folder / f"{i}.png")
    ex = load_examples("image_folder", tmp_path, get_subtask("br35h"), folders={"no tumor": "no", "tumor": "yes"})
    assert list(ex.y) == [0, 0, 1, 1, 1] and ex.image_ids[2] == "yes/0.png"
    assert np.asarray(Image.open(io.BytesIO(ex.pool.images[3]))).max() == 40


def test_pool_fingerprint_changes_with_any_pixel():
    images = [np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8)]
    a = Examples.from_images("x", ["a", "b"], images, [0, 1], ["n", "p"]).pool.fingerprint
    changed = [images[0], images[1].copy()]
    changed[1][2, 2] = 7
    assert a == Examples.from_images("x", ["a", "b"], images, [0, 1], ["n", "p"]).pool.fingerprint
    assert a != Examples.from_images("x", ["a", "b"], changed, [0, 1], ["n", "p"]).pool.fingerprint
