"""Source adapters on replicas of the published layouts (tests/platform/ingest_replicas.py) and on the
real CheXpert train.csv and IU X-ray reports of the torchxrayvision 1.5.7 wheel; PHI planted in DICOM
headers, file and folder names and report text never reaches an output, a log line or MLflow."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import ingest_replicas as rep
from dicom_factory import PLANTED_PHI, write_dicom
from radisim.curriculum.phases import PHASES
from radisim.platform.data.ingest import manifests as mf
from radisim.platform.data.ingest.adapters import KINDS, discover_source, parse_source
from radisim.platform.data.ingest.adapters.chexpert import chexpert_row, template_caption
from radisim.platform.data.ingest.phi import PhiPolicyError, resolve_salt, scrub_report

SALT = "sources-test-salt"
OPTS = {"rows_per_chunk": 4096, "files_per_chunk": 64, "image_column": "filepath", "caption_column": "title",
        "csv_separator": "auto", "tag_columns": {}, "chexpert_uncertain": "uncertain"}


@pytest.fixture(scope="session")
def txv_data(tmp_path_factory) -> Path:
    """torchxrayvision 1.5.7's data/ folder, from the wheel that pip downloads (never vendored)."""
    cache = tmp_path_factory.mktemp("txv")
    res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
                          "torchxrayvision==1.5.7"], capture_output=True, text=True, timeout=300)
    wheels = list(cache.glob("torchxrayvision-1.5.7-*.whl"))
    if res.returncode != 0 or not wheels:
        pytest.skip(f"pip cannot fetch torchxrayvision==1.5.7 from the package index: {res.stderr[-300:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        for name in ("torchxrayvision/data/chexpert_train.csv.gz", "torchxrayvision/data/NLMCXR_reports.tgz"):
            z.extract(name, cache)
    return cache / "torchxrayvision" / "data"


def test_registry_and_kind_prefix():
    assert {"mimic-cxr", "openi", "chexpert", "pmc-oa", "roco", "radimagenet", "csv", "folder", "wds"} <= set(KINDS)
    assert parse_source("mimic-cxr:/d/m") == ("mimic-cxr", "/d/m")
    assert parse_source("s3://bucket/x.parquet") == ("auto", "s3://bucket/x.parquet")
    with pytest.raises(ValueError, match="unknown source kind 'mimic'"):
        parse_source("mimic:/d")


def test_real_chexpert_train_csv(txv_data, tmp_path):
    """The real 223,414-row train.csv: planned into byte ranges that together hold every row exactly
    once; patients from the Path; -1 labels follow the stated policy."""
    folder = tmp_path / "CheXpert-v1.0-small"
    folder.mkdir()
    (folder / "train.csv").write_bytes(gzip.decompress((txv_data / "chexpert_train.csv.gz").read_bytes()))
    kind, label, found = discover_source(f"chexpert:{folder}", {**OPTS, "rows_per_chunk": 50_000}, SALT)
    assert kind == "chexpert" and label.startswith("chexpert-") and str(folder) not in label
    assert len(found.chunks) == 5 and all(c["row"] == "chexpert" and c["given"] == {"split": "train"}
                                          for c in found.chunks)
    rows, patients, views = 0, set(), Counter()
    for c in found.chunks:
        part, bad = mf.read_csv_range(c["uri"], *c["range"], c["header"], c["sep"])
        assert bad == 0
        rows += len(part)
        for r in part[:2000]:
            path, caption, given = chexpert_row(r, c)
            patients.add(given["patient"])
            views[given["view"]] += 1
            assert path.startswith("CheXpert-v1.0-small/train/patient") and given["study"].startswith(given["patient"])
    assert rows == 223_414
    assert views["frontal"] > views["lateral"] > 0 and all(p.startswith("patient") for p in patients)
    # row 2 of the real file: Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion -1; Lung Opacity, Fracture 1
    second = mf.read_csv_range(found.chunks[0]["uri"], *found.chunks[0]["range"], found.chunks[0]["header"], ",")[0][1]
    assert template_caption(second) == ("EXAMINATION: Chest radiograph, AP frontal view.\n"
                                        "FINDINGS: Lung opacity. Fracture. Possible cardiomegaly. Possible edema. "
                                        "Possible consolidation. Possible atelectasis. Possible pleural effusion.\n"
                                        "IMPRESSION: Lung opacity, fracture, possible cardiomegaly, possible edema, "
                                        "possible consolidation, possible atelectasis, possible pleural effusion.")
    assert "Possible" not in template_caption(second, "ignore") and "No cardiomegaly" in template_caption(second, "negative")


def test_real_iu_reports(txv_data, tmp_path):
    """The real NLMCXR_reports.tgz, given as the NLM release: 3,955 reports, 7,470 images."""
    shutil.copy(txv_data / "NLMCXR_reports.tgz", tmp_path / "NLMCXR_reports.tgz")
    _, _, found = discover_source(f"openi:{tmp_path}", OPTS, SALT)
    records = [r for c in found.chunks for r in c["records"]]
    assert len(records) == 7470
    assert Counter(r for _, r in found.rejects) == {"report_without_images": 104}
    assert len({r["given"]["patient"] for r in records}) == 3851
    first = records[0]
    assert first["path"] == "CXR1_1_IM-0001-3001.png" and first["given"]["patient"] == "CXR1"
    assert first["caption"].splitlines()[1].startswith("FINDINGS: The cardiac silhouette")
    assert "XXXX" in first["caption"] and scrub_report(first["caption"]) == first["caption"]


def test_csv_byte_ranges_keep_quoted_newlines_and_count_malformed(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text('filepath,title\na.png,"line one\nline two, still one caption"\nb.png,plain\nc.png,x,EXTRA\n'
                 'd.png,"quote ""inside"""\ne.png,last')
    ranges, _ = mf.plan_text(str(p), "csv", 2)
    assert len(ranges) == 3
    rows, bad = [], 0
    for a, b in ranges:
        part, n = mf.read_csv_range(str(p), a, b, ["filepath", "title"], ",")
        rows += part
        bad += n
    assert [r["filepath"] for r in rows] == ["a.png", "b.png", "d.png", "e.png"] and bad == 1
    assert rows[0]["title"] == "line one\nline two, still one caption" and rows[2]["title"] == 'quote "inside"'


def test_report_scrubbing_keeps_placeholders_and_measurements():
    text = (f"INDICATION: ___F with cough. XXXX\nFINDINGS: 2.5 cm nodule, T2 bright, C5-6.{rep.PHI_SENTENCE}\n"
            f"IMPRESSION: Seen on {rep.PLANTED_TEXT['iso_date']} and March 3, 2019. Patient name: John Smith.")
    out = scrub_report(text)
    assert "___F with cough. XXXX" in out and "2.5 cm nodule, T2 bright, C5-6." in out
    for value in list(rep.PLANTED_TEXT.values()) + ["March 3, 2019", "John Smith", "10:45"]:
        assert value not in out, value
    assert out.count("\n") == 2


def test_salt_never_inside_the_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("RADISIM_PHI_SALT", raising=False)
    out = tmp_path / "out"
    with pytest.raises(PhiPolicyError, match="inside the dataset"):
        resolve_salt(None, str(out / "salt"), str(out))
    salt, origin = resolve_salt(None, str(tmp_path / "cfg" / "salt"), str(out))
    assert origin == "file" and (tmp_path / "cfg" / "salt").stat().st_mode & 0o077 == 0
    assert resolve_salt(None, str(tmp_path / "cfg" / "salt"), str(out)) == (salt, "file")
    out.mkdir()
    (out / ".phi_salt").write_text("old")
    with pytest.raises(PhiPolicyError, match="move it out"):
        resolve_salt("x", None, str(out))


# ------------------------------------------------------------------------------ all sources, one run


def _phi_folder(root: Path) -> None:
    """A PACS-style export: folders and files named after the PatientID and the accession number."""
    import numpy as np

    d = root / f"{PLANTED_PHI['PatientID']}_{rep.PLANTED_TEXT['name']}" / PLANTED_PHI["AccessionNumber"]
    d.mkdir(parents=True)
    pix = (np.random.default_rng(5).random((32, 32)) * 1500).astype(np.uint16)
    write_dicom(d / f"{PLANTED_PHI['PatientID']}.dcm", pix, modality="CT", intercept=-1024, phi=PLANTED_PHI,
                iop=[1, 0, 0, 0, 1, 0], body_part="CHEST")
    (d / f"{PLANTED_PHI['PatientID']}.txt").write_text(
        f"Axial CT of the chest with a 12 mm nodule in the right upper lobe.{rep.PHI_SENTENCE}")


@pytest.fixture(scope="module")
def all_sources(txv_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sources")
    src = tmp / "data"
    counts = {"mimic": rep.mimic_cxr(src / "mimic-cxr-jpg"),
              "openi": rep.openi_nlm(src / "iu-nlm", txv_data / "NLMCXR_reports.tgz", 8),
              "kaggle": rep.openi_kaggle(src / "iu-kaggle"),
              "chexpert": rep.chexpert(src / "chexpert" / "CheXpert-v1.0-small", txv_data / "chexpert_train.csv.gz", 12),
              "pmc": rep.pmc_oa(src / "pmc-oa"), "roco": rep.roco(src / "roco"),
              "radimagenet": rep.radimagenet(src / "radiology_ai")}
    _phi_folder(src / "pacs")
    sources = [f"mimic-cxr:{src / 'mimic-cxr-jpg'}", f"openi:{src / 'iu-nlm'}", f"openi:{src / 'iu-kaggle'}",
               f"pmc-oa:{src / 'pmc-oa'}", f"chexpert:{src / 'chexpert' / 'CheXpert-v1.0-small'}",
               f"roco:{src / 'roco'}", f"radimagenet:{src / 'radiology_ai'}", str(src / "pacs")]
    out = tmp / "out"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/m.db", "RADISIM_PHI_SALT": SALT,
           "PYTHONWARNINGS": "ignore"}
    args = [a for s in sources for a in ("--source", s)]
    res = subprocess.run([sys.executable, "-m", "radisim.jobs.cli", "prepare-data", *args, "--out", str(out),
                          "--set", "ray.num_cpus=4", "--set", "ray.object_store_mb=300",
                          "--set", "ray.include_dashboard=false", "--set", "data.ingest.eval_fraction=0.3",
                          "--set", f"data.ingest.key_map={tmp / 'keymap'}"],
                         cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = [dict(r, split=s) for s in ("train", "eval") for f in sorted((out / s).glob("*.parquet"))
            for r in pq.read_table(f).to_pylist()]
    card = json.loads((out / "data_card.json").read_text())
    kinds = {s["label"]: s["kind"] for s in card["sources"]}
    return tmp, out, res, rows, card, kinds, counts


@pytest.mark.slow
def test_every_source_writes_tagged_rows(all_sources):
    _, _, res, rows, card, kinds, _ = all_sources
    assert card["balanced"], card["rejected"]
    by_kind: dict[str, set] = {}
    for r in rows:
        by_kind.setdefault(kinds[r["source"]], set()).add(r["phase"])
    assert set(by_kind) == {"mimic-cxr", "openi", "pmc-oa", "chexpert", "roco", "radimagenet", "auto"}
    # report-bearing sources: every phase; figure captions and templates: what they state
    assert by_kind["mimic-cxr"] == set(PHASES) and by_kind["openi"] == set(PHASES)
    assert set(PHASES) == set().union(*by_kind.values())
    assert {"modality", "anatomy", "abnormality"} <= by_kind["radimagenet"]
    assert {"modality", "anatomy", "abnormality"} <= by_kind["chexpert"]
    rejected = {r: v["count"] for r, v in card["rejected"].items()}
    assert rejected["report_missing"] == 1                      # MIMIC study without its .txt
    assert rejected["manifest_row_malformed"] == 2              # PMC-OA "{not json", ROCO caption without dlink
    assert rejected["report_without_images"] == 1 and rejected["unsupported_file"] == 1   # Kaggle uid 3, README.txt


@pytest.mark.slow
def test_official_splits_and_patients(all_sources):
    tmp, _, _, rows, card, kinds, _ = all_sources
    mapping = {}
    for f in (tmp / "keymap").glob("*.jsonl"):
        mapping.update({e["key"]: e["path"] for e in map(json.loads, f.read_text().splitlines())})
    split_of_patient: dict[str, set] = {}
    for r in rows:
        split_of_patient.setdefault(r["patient_key"] or r["group_key"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_patient.values())
    mimic = [r for r in rows if kinds[r["source"]] == "mimic-cxr"]
    by_subject = {}
    for r in mimic:
        path = mapping[f"{r['source']}:{r['source_key']}"]
        by_subject.setdefault(path.split("/")[2], set()).add((r["split"], r["view"]))
    assert {s for s, _ in by_subject["p" + rep.MIMIC_SUBJECTS[0]]} == {"train"}
    assert {s for s, _ in by_subject["p" + rep.MIMIC_SUBJECTS[1]]} == {"eval"}     # official "test"
    assert {v for _, v in by_subject["p" + rep.MIMIC_SUBJECTS[0]]} == {"frontal", "lateral"}
    # one report per study, shared by its two images (PA and lateral): the same report-derived captions,
    # and an anatomy caption that names each image's own view
    study = [r for r in mimic if mapping[f"{r['source']}:{r['source_key']}"].split("/")[3] == "s" + rep.MIMIC_STUDIES[0]]
    captions = Counter(r["caption"] for r in study if r["phase"] in ("localization", "abnormality", "grading"))
    assert len({r["content_hash"] for r in study}) == 2 and len(captions) == 3 and set(captions.values()) == {2}
    assert {r["caption"] for r in study if r["phase"] == "anatomy"} == {"Chest radiograph, frontal view.",
                                                                      "Chest radiograph, lateral view."}
    chexpert = [r for r in rows if kinds[r["source"]] == "chexpert"]
    assert {r["split"] for r in chexpert if "valid/" in mapping[f"{r['source']}:{r['source_key']}"]} == {"eval"}
    assert {r["split"] for r in chexpert if "/train/" in mapping[f"{r['source']}:{r['source_key']}"]} == {"train"}
    assert card["official_split_overridden"] == 0


@pytest.mark.slow
def test_no_identifier_anywhere(all_sources):
    """Planted in DICOM headers, in folder and file names (PatientID, accession, MIMIC subject/study
    ids, the source folders themselves) and in report text: none in any output file (manifests, card,
    MLflow's database), log line or MLflow value."""
    from mlflow.tracking import MlflowClient

    tmp, out, res, rows, card, _, _ = all_sources
    planted = (list(PLANTED_PHI.values()) + list(rep.PLANTED_TEXT.values()) + list(rep.MIMIC_SUBJECTS)
               + list(rep.MIMIC_STUDIES) + ["Plantedname", "Plantedville", "19431127", "a1b2c3d4", "CXR1_1_IM",
                                            "ROCO_00020", "PMC212319", "patient00001", "mimic-cxr-jpg", "radiology_ai",
                                            str(tmp / "data")])
    logs = res.stdout + res.stderr
    checked = 0
    for path in [p for p in tmp.rglob("*") if p.is_file()]:
        rel = path.relative_to(tmp).parts
        if rel[0] in ("data", "keymap"):
            continue  # the inputs, and the user's private key map (outside the dataset)
        data = path.read_bytes()
        checked += 1
        for value in planted:
            assert value.encode() not in data, f"{value} found in {path}"
    assert checked > 5 and (tmp / "m.db").is_file()
    for value in planted:
        assert value not in logs, value
    client = MlflowClient(f"sqlite:///{tmp}/m.db")
    run = client.search_runs([client.get_experiment_by_name("radisim-cl").experiment_id])[0]
    values = json.dumps([run.data.params, run.data.tags, list(run.data.metrics)])
    for value in planted:
        assert value not in values, value
    # the text itself was scrubbed, placeholders kept
    assert any("___" in r["caption"] for r in rows) and any("XXXX" in r["caption"] for r in rows)
