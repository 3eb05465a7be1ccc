"""`radisim prepare-data --source`: a folder mixing real DICOMs, NIfTI, PNG, JPEG, a WebDataset shard, a
CSV of captions and corrupt files -> tagged Parquet, a data card that adds up, no PHI anywhere, a no-op
re-run, and a training job that trains from the result."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dicom_factory import PLANTED_PHI, write_dicom
from radisim.curriculum.phases import PHASE_INDEX, PHASES
from radisim.platform.data.ingest.sources import discover, expand_braces
from radisim.platform.data.ingest.records import check_caption

SALT = "test-salt-0f3c"


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpg(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()


def _noise(seed, shape=(48, 48)):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def build_mixed_folder(root: Path) -> dict:
    """Returns the expected accounting: inputs, rows and reject reasons."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_template
    from pydicom.data import get_testdata_file

    d = root / "mixed"
    d.mkdir(parents=True)
    cap = lambda name, text: (d / name).write_text(text)
    # real DICOMs
    shutil.copy(get_testdata_file("CT_small.dcm"), d / "ct_small.dcm")
    cap("ct_small.txt", "Axial CT of the chest: no pleural effusion.")
    shutil.copy(get_testdata_file("MR_small.dcm"), d / "mr_small.dcm")
    cap("mr_small.txt", "MRI of the brain")
    # DICOMs carrying planted PHI: two studies of one patient, one of another patient
    pix = lambda s: (np.random.default_rng(s).random((32, 32)) * 1500).astype(np.uint16)
    for i, (pid, study) in enumerate([("P1", "1.2.3.1"), ("P1", "1.2.3.2"), ("P2", "1.2.3.3")]):
        phi = {**PLANTED_PHI, "PatientID": PLANTED_PHI["PatientID"] + pid}
        write_dicom(d / f"phi{i}.dcm", pix(i), modality="CT", intercept=-1024, phi=phi, study_uid=study,
                    iop=[1, 0, 0, 0, 1, 0], body_part="CHEST")
        cap(f"phi{i}.txt", f"axial CT of the chest with a {10 + i} mm nodule in the right upper lobe")
    write_dicom(d / "dx.dcm", pix(9), modality="DX", photometric="MONOCHROME1", view_position="PA",
                phi=PLANTED_PHI)
    cap("dx.txt", "Frontal chest radiograph: right lower lobe pneumonia.")
    # NIfTI: nibabel-written and the real MNI152 template
    vol = np.random.default_rng(3).random((24, 24, 24)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(d / "vol.nii.gz"))
    cap("vol.txt", "MRI of the head")
    nib.save(load_mni152_template(), str(d / "mni.nii.gz"))
    cap("mni.txt", "T1-weighted MRI of the brain, normal")
    # PNG, JPEG
    (d / "cxr.png").write_bytes(_png(_noise(1)))
    cap("cxr.txt", "PA chest x-ray with moderate cardiomegaly")
    (d / "knee.jpg").write_bytes(_jpg(_noise(2)))
    cap("knee.txt", "sagittal MRI of the knee, meniscus tear of the posterior horn")
    (d / "dup.png").write_bytes(_png(_noise(1)))         # same pixels as cxr.png, another caption: kept
    cap("dup.txt", "chest radiograph")
    (d / "dup2.png").write_bytes(_png(_noise(1)))        # same pixels and caption as cxr.png: a duplicate
    cap("dup2.txt", "PA chest x-ray with moderate cardiomegaly")
    # a WebDataset shard: png+txt, jpg+json, a corrupt png, a sample without caption
    with tarfile.open(d / "shard-000.tar", "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("s1.png", _png(_noise(11)))
        add("s1.txt", b"CT of the abdomen showing the liver and the spleen")
        add("s2.jpg", _jpg(_noise(12)))
        add("s2.json", json.dumps({"caption": "axial MRI of the knee", "phase": "anatomy"}).encode())
        add("s3.png", _png(_noise(13))[:40])
        add("s3.txt", b"chest x-ray")
        add("s4.png", _png(_noise(14)))
        add("s5.cls", b"3")                            # a member no sample can use: counted
    (d / ".DS_Store").write_bytes(b"finder")            # hidden: counted, not silently skipped
    (d / "latin1.png").write_bytes(_png(_noise(15)))
    (d / "latin1.txt").write_bytes("radiographie du thorax, épanchement".encode("latin-1"))
    # a CSV of captions naming images in a subfolder (one missing)
    (d / "csvimg").mkdir()
    (d / "csvimg" / "c1.png").write_bytes(_png(_noise(21)))
    (d / "csvimg" / "c2.png").write_bytes(_png(_noise(22)))
    for i in range(3, 14):
        (d / "csvimg" / f"c{i}.png").write_bytes(_png(_noise(20 + i)))
    (d / "captions.csv").write_text(
        "filepath,title,patient\n"
        "csvimg/c1.png,\"CT of the head, no hemorrhage\",A\n"
        "csvimg/c2.png,coronal CT of the abdomen,A\n"
        "csvimg/missing.png,MRI of the knee,B\n"
        "csvimg/c3.png,Non-contrast CT,A\n"
        "csvimg/c4.png,Chest X-ray,C\n"
        "csvimg/c5.png,\"MRI, T2-weighted\",D\n"
        "csvimg/c6.png,the liver is in the right upper quadrant on this CT,C\n"
        "csvimg/c7.png,CT of the chest: the heart is in the lower left of the image,D\n"
        "csvimg/c8.png,CT image,C\n"
        "csvimg/c9.png,MRI scan,D\n"
        "csvimg/c10.png,digital radiograph,A\n"
        "csvimg/c11.png,computed tomography,D\n"
        "csvimg/c12.png,the spleen is in the upper left quadrant,A\n"
        "csvimg/c13.png,the kidneys lie in the lower right quadrant,C\n")
    # corrupt and bad inputs
    (d / "trunc.png").write_bytes(_png(_noise(31))[:60])
    cap("trunc.txt", "chest x-ray")
    (d / "trunc.jpg").write_bytes(_jpg(_noise(32))[:150])
    cap("trunc.txt".replace("trunc", "trunc"), "chest x-ray")
    (d / "junk.dcm").write_bytes(b"not a dicom at all" * 10)
    cap("junk.txt", "CT of the chest")
    write_dicom(d / "nopix.dcm", np.zeros((8, 8), np.uint16), with_pixels=False, phi=PLANTED_PHI)
    cap("nopix.txt", "CT of the chest")
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5, 2), np.float32), np.eye(4)), str(d / "fourd.nii"))
    cap("fourd.txt", "MRI of the brain")
    (d / "empty.png").write_bytes(_png(_noise(41)))
    cap("empty.txt", "   ")
    (d / "long.png").write_bytes(_png(_noise(42)))
    cap("long.txt", "CT of the chest " * 300)
    (d / "nocap.png").write_bytes(_png(_noise(43)))
    cap("orphan.txt", "caption without an image")
    (d / "notes.docx").write_bytes(b"binary")
    return {
        "rejected": {"image_corrupt": 3, "dicom_unreadable": 1, "dicom_no_pixels": 1, "nifti_bad_dims": 1,
                     "caption_empty": 1, "caption_too_long": 1, "caption_missing": 2, "missing_file": 1,
                     "orphan_caption": 1, "unsupported_file": 1, "hidden_path": 1, "caption_not_utf8": 1,
                     "tar_member_unsupported": 1,
                     # dup2.png (same pixels and caption as cxr.png), and the MNI152 (symmetric) template's
                     # sagittal slices at 20% and 80% mirror; counted per row: an image has one row per phase
                     # caption (curriculum/reports.py), and dedup is on (image content, caption)
                     "duplicate": None},
        # 2 real + 3 phi + dx, 2 nifti x 9 slices, cxr, knee, dup, dup2, 2 wds, 13 csv
        "images_before_dedup": 6 + 18 + 4 + 2 + 13, "duplicate_images": 2,
    }


def _run_prepare(tmp: Path, src, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/m.db", "RADISIM_PHI_SALT": SALT,
           "PYTHONWARNINGS": "ignore"}
    sources = [a for s in ([src] if isinstance(src, (str, Path)) else src) for a in ("--source", str(s))]
    return subprocess.run([sys.executable, "-m", "radisim.jobs.cli", "prepare-data", *sources,
                           "--out", str(out), "--set", "ray.num_cpus=4", "--set", "ray.object_store_mb=300",
                           "--set", "ray.include_dashboard=false", "--set", "data.ingest.eval_fraction=0.3",
                           "--set", f"data.ingest.key_map={tmp / 'keymap'}", *extra],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=400)


def key_map(tmp: Path) -> dict[str, str]:
    """The user's private mapping: public key (label:hash) -> original key (label:path)."""
    out = {}
    for f in (tmp / "keymap").glob("*.jsonl"):
        for line in f.read_text().splitlines():
            entry = json.loads(line)
            out[entry["key"]] = entry["path"]
    return out


def original(mapping: dict, row_or_key) -> str:
    """The original path (after the label) of a row or a reject sample key."""
    key = row_or_key if isinstance(row_or_key, str) else f"{row_or_key['source']}:{row_or_key['source_key']}"
    return mapping[key.split("[", 1)[0]].split(":", 1)[1] + (("[" + key.split("[", 1)[1]) if "[" in key else "")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ingest")
    expected = build_mixed_folder(tmp)
    out = tmp / "out"
    first = _run_prepare(tmp, tmp / "mixed", out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return tmp, out, expected, first


@pytest.mark.slow
def test_card_adds_up(ingested):
    tmp, out, expected, _ = ingested
    card = json.loads((out / "data_card.json").read_text())
    assert card["balanced"]
    got = {r: v["count"] for r, v in card["rejected"].items()}
    assert got["duplicate"] >= expected["duplicate_images"]
    assert {**got, "duplicate": None} == expected["rejected"]
    assert not list((out / "_staging").glob("*.parquet"))  # staged rows cleaned up once written
    assert card["inputs"] + card["expanded"] == card["kept"] + card["rejected_total"]
    mapping = key_map(tmp)
    assert any(original(mapping, k).endswith(("dup2.png", "cxr.png")) for k in card["rejected"]["duplicate"]["sample"])
    assert any("trunc.png" in original(mapping, k) for k in card["rejected"]["image_corrupt"]["sample"])
    rows = [r for split in ("train", "eval") for f in sorted((out / split).glob("*.parquet"))
            for r in pq.read_table(f).to_pylist()]
    assert len(rows) == card["kept"] == sum(c["rows"] for c in card["counts"])
    assert len({(r["content_hash"], r["caption"]) for r in rows}) == len(rows)
    assert not any("mixed" in r["source"] or "/" in r["source_key"] for r in rows)
    # one row per (image, phase caption): each image once per phase, its rows share its hash
    assert len({r["source_key"] for r in rows}) == expected["images_before_dedup"] - expected["duplicate_images"]
    assert len({(r["source_key"], r["phase"]) for r in rows}) == len(rows)
    # dup.png: cxr.png's pixels under another caption, so its own rows (their captions differ)
    assert len({r["content_hash"] for r in rows}) == len({r["source_key"] for r in rows}) - 1
    for r in rows:
        assert r["phase"] in PHASES and r["phase_index"] == PHASE_INDEX[r["phase"]]
        img = Image.open(io.BytesIO(r["image"]))
        assert img.mode == "L" and min(img.size) >= 8
    by_key = {}  # each image's finest phase caption row, by its original path
    for r in sorted(rows, key=lambda r: r["phase_index"]):
        by_key[original(mapping, r).rsplit("!", 1)[-1].split("#")[0]] = r
    assert by_key["ct_small.dcm"]["modality"] == "CT" and by_key["ct_small.dcm"]["phase"] == "abnormality"
    assert by_key["phi0.dcm"]["phase"] == "grading" and by_key["phi0.dcm"]["view"] == "axial"
    assert by_key["dx.dcm"]["modality"] == "DR" and by_key["dx.dcm"]["view"] == "frontal"
    assert {r["view"] for r in rows if original(mapping, r).startswith("mni.nii.gz")} == {"axial", "sagittal", "coronal"}
    assert by_key["dup.png"]["content_hash"] == by_key["cxr.png"]["content_hash"]  # two captions, two rows
    assert by_key["s2"]["phase"] == "anatomy"          # tag from the WebDataset json
    assert [r["phase"] for r in rows if original(mapping, r).endswith("!s2")] == ["anatomy"]  # a given phase: one row
    assert {r["modality"] for r in rows if original(mapping, r) == "ct_small.dcm"} == {"CT"}
    # one patient's studies stay in one split; the salted key is not the raw id
    p1 = {r["patient_key"] for r in rows if original(mapping, r) in ("phi0.dcm", "phi1.dcm")}
    assert len(p1) == 1 and "P1" not in next(iter(p1))
    splits = {r["patient_key"]: set() for r in rows if r["patient_key"]}
    for split in ("train", "eval"):
        for f in (out / split).glob("*.parquet"):
            for r in pq.read_table(f, columns=["patient_key", "group_key"]).to_pylist():
                if r["patient_key"]:
                    splits[r["patient_key"]].add(split)
    assert all(len(s) == 1 for s in splits.values())


@pytest.mark.slow
def test_no_phi_anywhere(ingested):
    tmp, out, _, first = ingested
    planted = [v for v in PLANTED_PHI.values()] + ["Plantedname", "Plantedville", "PHIPATIENTID", "19431127"]
    logs = first.stdout + first.stderr
    for value in planted:
        assert value not in logs
    checked = 0
    for path in tmp.rglob("*"):
        if not path.is_file() or "mixed" in path.relative_to(tmp).parts:
            continue  # the inputs themselves carry the PHI
        data = path.read_bytes()
        checked += 1
        for value in planted:
            assert value.encode() not in data, f"{value} found in {path}"
    assert (tmp / "m.db").is_file() and checked > 5
    # the MLflow run exists and holds the card
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp}/m.db")
    runs = client.search_runs([client.get_experiment_by_name("radisim-cl").experiment_id])
    run = runs[0]
    card = json.loads((out / "data_card.json").read_text())
    assert run.data.metrics["kept"] > 0
    assert run.data.metrics["rejected/duplicate"] == card["rejected"]["duplicate"]["count"] >= 2
    assert "data_card.json" in [a.path for a in client.list_artifacts(run.info.run_id)]
    for value in planted:
        assert value not in json.dumps(run.data.params) + json.dumps(run.data.tags)


@pytest.mark.slow
def test_rerun_is_noop(ingested):
    tmp, out, _, _ = ingested
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = _run_prepare(tmp, tmp / "mixed", out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "up to date" in again.stdout
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert before == after


@pytest.mark.slow
def test_training_job_trains_from_ingested_data(ingested, tmp_path):
    """Train on the ingested train split. The job's final-phase evaluation always runs and reads the
    phantom-style zero-shot suite from <data.root>/eval, which real data does not have: the root given to
    the job pairs the ingested train/ with a small phantom eval/ (the held-out real split is not a suite).
    One phase that trains on the rows of every phase tag (each phase fit costs ~25 s of Ray Train
    start-up; the card above shows that every tag has rows)."""
    from radisim.curriculum.phantom import write_phantom_dataset

    _, out, _, _ = ingested
    write_phantom_dataset(tmp_path / "phantom", n_train_images=10, n_eval_images=240, progress=False)
    root = tmp_path / "root"
    root.mkdir()
    (root / "train").symlink_to(out / "train")
    (root / "eval").symlink_to(tmp_path / "phantom" / "eval")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    phases = json.loads((out / "data_card.json").read_text())["splits"]["train"]["by_phase"]
    assert set(phases) == set(PHASES)
    res = subprocess.run([sys.executable, "-m", "radisim.jobs.train", "--smoke", "--set", f"data.root={root}",
                          "--set", "eval.after_each_phase=false", "--set", "eval.untrained_baseline=false",
                          "--set", "train.batch_size=2", "--set", "data.shuffle_buffer=8",
                          "--set", f"curriculum={{name: ingested, phases: [{{name: all, data: [{', '.join(PHASES)}], "
                                   "steps: 2, warmup_steps: 1}]}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (phases, res.stdout[-3000:], res.stderr[-6000:])
    assert "all[2]" in res.stdout  # the one phase, over every tag


def test_brace_expansion_and_captions():
    assert expand_braces("s-{00..02}.tar") == ["s-00.tar", "s-01.tar", "s-02.tar"]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert check_caption(None, 100) == (None, "caption_missing")
    assert check_caption("  ", 100) == (None, "caption_empty")
    assert check_caption("x" * 101, 100) == (None, "caption_too_long")
    assert check_caption(" CT  of the   chest ", 100) == ("CT of the chest", None)
    # report sections stay one per line
    assert check_caption("FINDINGS:  clear lungs.\n\n IMPRESSION: normal ", 100) == \
        ("FINDINGS: clear lungs.\nIMPRESSION: normal", None)


def test_discover_folder_counts_everything(tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    (d / "a.png").write_bytes(b"x")
    (d / "a.txt").write_text("CT")
    (d / "b.dcm").write_bytes(b"x")
    (d / "c.txt").write_text("orphan")
    (d / "d.bin").write_bytes(b"x")
    (d / "__MACOSX").mkdir()
    (d / "__MACOSX" / "a.png").write_bytes(b"x")
    opts = {"rows_per_chunk": 10, "files_per_chunk": 1, "image_column": "filepath", "csv_separator": "auto"}
    found = discover("folder-x", str(d), opts)
    assert [len(c["files"]) for c in found.chunks] == [1, 1]
    assert sorted(r for _, r in found.rejects) == ["hidden_path", "orphan_caption", "unsupported_file"]
    assert discover("folder-y", str(tmp_path / "nope"), opts).rejects == [("folder-y", "missing_file")]


def test_parquet_chunks_read_their_row_group_slice_only(tmp_path):
    import pyarrow as pa

    from radisim.platform.data.ingest import manifests as mf

    p = tmp_path / "m.parquet"
    table = pa.table({"filepath": [f"{i}.png" for i in range(10)], "title": [f"c{i}" for i in range(10)],
                      "blob": [b"x" * 100] * 10})
    pq.write_table(table, p, row_group_size=4)
    plan = mf.plan_parquet(str(p), 3)
    assert plan == [(0, 0, 3), (0, 3, 4), (1, 0, 3), (1, 3, 4), (2, 0, 2)]
    rows = [r for g, a, b in plan for r in mf.read_parquet_slice(str(p), g, a, b, ["filepath", "title"])]
    assert [r["filepath"] for r in rows] == [f"{i}.png" for i in range(10)] and "blob" not in rows[0]


def test_tar_members_and_non_utf8_text_are_counted(tmp_path):
    from radisim.platform.data.ingest.sources import Item, iter_items

    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tar:
        def add(name, data, kind=tarfile.REGTYPE):
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, len(data)
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("a.png", _png(_noise(1)))
        add("a.txt", b"CT of the chest")
        add("b.png", _png(_noise(2)))
        add("b.txt", "thorax, \xe9panchement".encode("latin-1"))
        add(".hidden.png", b"x")
        add("c.cls", b"1")
        add("link.png", b"", tarfile.SYMTYPE)
    out = list(iter_items({"kind": "tar", "source": "wds-x", "uri": str(shard)}, {}))
    reasons = sorted(o[1] for o in out if isinstance(o, tuple))
    assert reasons == ["caption_not_utf8", "tar_member_hidden", "tar_member_not_file", "tar_member_unsupported"]
    items = [o for o in out if isinstance(o, Item)]
    assert [i.caption for i in items] == ["CT of the chest"] and items[0].key.endswith("!a")
