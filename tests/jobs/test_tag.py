"""`radisim tag`: report texts -> JSONL of phases and tagged sentences; the same phases as prepare-data's rows."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
from PIL import Image

from radisim.curriculum.phases import PHASES
from radisim.jobs.tag import tag_stream
from radisim.platform.data.ingest.records import _rows_for_item
from radisim.platform.data.ingest.sources import Item

REPORTS = [
    "COMPARISON: Chest radiograph on XXXX. INDICATION: Cough, evaluate for pneumonia. FINDINGS: The trachea is "
    "midline. Mild cardiomegaly. No pneumothorax. Pneumonia cannot be excluded. IMPRESSION: Left PICC line.",
    "PA and lateral views of the chest. The lungs are clear. No pleural effusion.",
    "Axial CT of the head: 8 mm subdural hematoma.",
]
KEYS = {"text", "phases", "sentences"}


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8), mode="L").save(buf, "PNG")
    return buf.getvalue()


def test_tag_job_cli_reads_plain_text_and_jsonl(tmp_path):
    plain = tmp_path / "reports.txt"
    plain.write_text("\n".join(REPORTS) + "\n")
    res = subprocess.run([sys.executable, "-m", "radisim.jobs.tag", "--input", str(plain)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["text"] for o in out] == REPORTS and all(set(o) == KEYS for o in out)
    first = out[0]
    assert first["phases"] == ["anatomy", "localization", "abnormality", "grading"]
    assert {s["section"] for s in first["sentences"]} == {"findings", "impression"}  # history sections dropped
    findings = {f["term"]: f for s in first["sentences"] for f in s["findings"]}
    assert set(findings["pneumothorax"]) == {"term", "assertion", "location", "severity"}
    assert [findings[t]["assertion"] for t in ("cardiomegaly", "pneumothorax", "pneumonia", "picc line")] == [
        "present", "absent", "uncertain", "present"]
    assert findings["cardiomegaly"]["severity"] == "mild" and findings["picc line"]["location"] == "left"
    # JSONL with metadata; a bad line is named on stderr, counted, and fails the run; the rest is tagged
    lines = [json.dumps({"text": REPORTS[1], "modality": "CR", "body_part": "CHEST", "view": "PA"}), "[1]",
             json.dumps({"txt": "x"})]
    res = subprocess.run([sys.executable, "-m", "radisim.jobs.cli", "tag"], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "line 2: not an object" in res.stderr and "line 3: missing text" in res.stderr
    assert "tagged 1, rejected 2" in res.stderr
    (only,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert only["phases"] == ["modality", "anatomy", "abnormality"]


def test_tag_and_prepare_data_give_the_same_phases():
    opts = {"max_caption_chars": 4000, "min_side": 8, "max_side": 64}
    png = _png()
    for text in REPORTS:
        rows, rejects = [], []
        _rows_for_item(Item("src:img.png", "image", lambda: png, text), opts, "salt", rows, rejects)
        out = io.StringIO()
        tag_stream(io.StringIO(text + "\n"), out)
        tagged = json.loads(out.getvalue())
        assert not rejects and [r["phase"] for r in rows] == tagged["phases"]
        assert all(r["phase"] in PHASES and r["caption"] for r in rows)
        assert len({r["content_hash"] for r in rows}) == 1  # one image, one row per phase caption
