import pytest
import yaml

from radisim.curriculum.phases import MODALITIES
from radisim.evals import tasks as T
from radisim.evals.zeroshot import PromptBook


def test_registry_has_the_24_subtasks_over_five_stages_and_three_modalities():
    subtasks = T.subtasks()
    assert len(subtasks) == 24 and len({t.id for t in subtasks}) == 24
    per_stage = {s: len(T.subtasks(stage=s)) for s in range(1, 6)}
    assert per_stage == {1: 1, 2: 3, 3: 5, 4: 10, 5: 5}
    assert {m for t in subtasks for m in t.modalities} == set(MODALITIES)
    assert T.get_subtask("br35h").key("auc") == "stage4/br35h/auc"
    assert T.get_subtask("internal_meningioma_grade").metrics[0] == "accuracy"
    assert {t.kind for t in subtasks} == set(T.KINDS)
    with pytest.raises(KeyError, match="unknown subtask 'nope'"):
        T.get_subtask("nope")


def test_every_subtask_has_its_prompts():
    from radisim.curriculum.phantom import catalog

    book = PromptBook()
    for task in T.subtasks():
        if task.kind in ("single-label", "binary"):
            prompts = book.class_prompts(task)
            assert len(prompts) == len(task.classes) and all(prompts)
        elif task.kind == "multi-label":
            assert all(all(book.organ_prompts(c)) for c in task.classes)
    for organ in catalog()["organs"]:  # any phantom organ can be a localization query
        assert len(book.region_prompts(T.get_subtask("totalseg"), organ)) == 4


def test_bad_entry_fails_at_load_with_its_id(tmp_path):
    entries = yaml.safe_load(T.TASKS_FILE.read_text())
    entries["subtasks"][3]["metric"] = "map"  # ct_view is single-label: no mAP
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump(entries))
    with pytest.raises(ValueError, match="subtask 'ct_view'.*metric 'map'"):
        T.load_registry(path)
