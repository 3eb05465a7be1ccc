"""Small replicas of the training sources in their published layouts (file names, column headers,
encodings), with identifiers planted in file names, folder names and report text.

Sources of each layout (also in each adapter's docstring):
- MIMIC-CXR-JPG 2.0.0 + MIMIC-CXR 2.0.0 reports: physionet.org/content/mimic-cxr-jpg/2.0.0 (gzipped
  metadata/split/chexpert CSVs, files/pNN/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg, reports at
  files/pNN/pNNNNNNNN/sNNNNNNNN.txt with the "FINAL REPORT" banner and `___` placeholders).
- IU X-ray / OpenI: the NLM release (ecgen-radiology/<n>.xml eCitation records, PNGs named by
  parentImage id) — here the REAL NLMCXR_reports.tgz of torchxrayvision 1.5.7 — and the Kaggle
  version (raddar/chest-xrays-indiana-university: indiana_reports.csv, indiana_projections.csv,
  images/images_normalized/).
- CheXpert v1.0: CheXpert-v1.0-small/train.csv, valid.csv with the REAL header and rows of
  torchxrayvision's chexpert_train.csv.gz; Path values start with the folder's own name.
- PMC-OA: huggingface.co/datasets/axiong/pmc_oa (train.jsonl/valid.jsonl lines with image, caption,
  pmcid, url_name; images/).
- ROCO: github.com/razorx89/roco-dataset (data/<split>/radiology/captions.txt, dlinks.txt, images/
  named <PMCID>_<image name> by scripts/fetch.py); ROCOv2: <split>_captions.csv (ID,Caption),
  <split>_concepts.csv (ID,CUIs), <split>/<ID>.jpg.
- RadImageNet: radiology_ai/<modality>/<anatomy>/<label>/<file>.png (github.com/BMEII-AI/RadImageNet).
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

#: Identifiers planted in report text, file and folder names; none may appear in any output.
PLANTED_TEXT = {
    "name": "Plantedname",
    "physician": "Qwertyphys",
    "date": "03/14/2019",
    "iso_date": "2019-03-14",
    "phone": "617-555-0199",
    "mrn": "88451234",
    "accession": "ACC77123",
}
#: MIMIC ids used in the replica's file names (a real subject_id is 8 digits; these are distinctive).
MIMIC_SUBJECTS = ("19731127", "18650412")
MIMIC_STUDIES = ("57310001", "57310002", "57310003", "57310004")

PHI_SENTENCE = (f" Findings discussed with Dr. {PLANTED_TEXT['physician']} at 10:45 on {PLANTED_TEXT['date']} "
                f"(phone {PLANTED_TEXT['phone']}), MRN {PLANTED_TEXT['mrn']}, accession {PLANTED_TEXT['accession']}.")

#: A report with a sentence of every phase (sentences checked against curriculum.reports).
FIVE_PHASE_FINDINGS = ("The heart is in the lower left of the image. Opacity in the right lower lobe. "
                       "Moderate right pleural effusion. No pneumothorax.")


def noise(seed: int, shape=(64, 64)) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def image_bytes(seed: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(noise(seed))
    (img.convert("RGB") if fmt == "JPEG" else img).save(buf, format=fmt)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _csv_bytes(header: list[str], rows: list[list]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def mimic_cxr(root: Path, seed: int = 100) -> dict:
    """Two patients: p19731127 (two studies, train) and p18650412 (one study, test). Returns ids."""
    meta_header = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
                   "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                   "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]
    images = [("a1b2c3d4-0001", MIMIC_SUBJECTS[0], MIMIC_STUDIES[0], "PA", "postero-anterior"),
              ("a1b2c3d4-0002", MIMIC_SUBJECTS[0], MIMIC_STUDIES[0], "LATERAL", "lateral"),
              ("a1b2c3d4-0003", MIMIC_SUBJECTS[0], MIMIC_STUDIES[1], "AP", "antero-posterior"),
              ("a1b2c3d4-0004", MIMIC_SUBJECTS[1], MIMIC_STUDIES[2], "PA", "postero-anterior"),
              ("a1b2c3d4-0005", MIMIC_SUBJECTS[1], MIMIC_STUDIES[3], "PA", "postero-anterior")]
    split = {MIMIC_SUBJECTS[0]: "train", MIMIC_SUBJECTS[1]: "test"}
    meta_rows, split_rows = [], []
    for i, (dicom, subject, study, view, code) in enumerate(images):
        meta_rows.append([dicom, subject, study, "CHEST (PA AND LAT)", view, 64, 64, "21800506", "213014.531",
                          "CHEST (PA AND LAT)", code, "Erect"])
        split_rows.append([dicom, study, subject, split[subject]])
        _write(root / f"files/p{subject[:2]}/p{subject}/s{study}/{dicom}.jpg", image_bytes(seed + i, "JPEG"))
    _write(root / "mimic-cxr-2.0.0-metadata.csv.gz", gzip.compress(_csv_bytes(meta_header, meta_rows)))
    _write(root / "mimic-cxr-2.0.0-split.csv.gz",
           gzip.compress(_csv_bytes(["dicom_id", "study_id", "subject_id", "split"], split_rows)))
    _write(root / "mimic-cxr-2.0.0-chexpert.csv.gz",
           gzip.compress(_csv_bytes(["subject_id", "study_id", "Pleural Effusion"],
                                    [[MIMIC_SUBJECTS[0], MIMIC_STUDIES[0], "1.0"]])))
    reports = {
        MIMIC_STUDIES[0]: ("                                 FINAL REPORT\n"
                           " EXAMINATION:  CHEST (PA AND LAT)\n \n"
                           " INDICATION:  ___F with cough, evaluate for pneumonia.\n \n"
                           f" FINDINGS: \n \n {FIVE_PHASE_FINDINGS}\n \n"
                           f" IMPRESSION: \n \n Severe right lower lobe pneumonia.{PHI_SENTENCE}\n"),
        MIMIC_STUDIES[1]: ("                                 FINAL REPORT\n"
                           " EXAMINATION:  CHEST (PORTABLE AP)\n \n"
                           " FINDINGS: \n \n Moderate cardiomegaly. No pleural effusion.\n \n"
                           f" IMPRESSION: \n \n Moderate cardiomegaly, seen on {PLANTED_TEXT['iso_date']}.\n"),
        MIMIC_STUDIES[2]: ("                                 FINAL REPORT\n"
                           " EXAMINATION:  CHEST (PA)\n \n"
                           " IMPRESSION: \n \n No acute cardiopulmonary process.\n"),
        # MIMIC_STUDIES[3] has no report file: its image is the reject "report_missing"
    }
    for study, text in reports.items():
        subject = next(s for _, s, st, _, _ in images if st == study)
        _write(root / f"files/p{subject[:2]}/p{subject}/s{study}.txt", text.encode())
    return {"images": len(images), "with_report": 4}


def openi_nlm(root: Path, reports_tgz: Path, n_reports: int, seed: int = 200) -> dict:
    """The first `n_reports` real XML reports of NLMCXR_reports.tgz under ecgen-radiology/, and a PNG
    per parentImage id (the NLMCXR_png.tgz names), in a nested folder as that archive unpacks."""
    from radisim.platform.data.ingest.adapters.openi import parse_report_xml

    (root / "ecgen-radiology").mkdir(parents=True)
    n_images = 0
    with tarfile.open(reports_tgz) as tar:
        members = sorted((m for m in tar if m.name.endswith(".xml")), key=lambda m: int(Path(m.name).stem))
        for m in members[:n_reports]:
            data = tar.extractfile(m).read()
            (root / "ecgen-radiology" / Path(m.name).name).write_bytes(data)
            _, _, images = parse_report_xml(data)
            for image_id in images:
                _write(root / "NLMCXR_png" / f"{image_id}.png", image_bytes(seed + n_images, "PNG"))
                n_images += 1
    return {"reports": n_reports, "images": n_images}


def openi_kaggle(root: Path, seed: int = 300) -> dict:
    reports = [["1", "normal", "normal", "Xray Chest PA and Lateral", "Positive TB test", "None.",
                "The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary edema. "
                "There are no XXXX of a pleural effusion.", "Normal chest x-XXXX."],
               ["2", "Cardiomegaly/borderline", "Cardiomegaly", "Chest, 2 views, frontal and lateral",
                f"Preop bariatric surgery. Patient name: John {PLANTED_TEXT['name']}.", "None.",
                FIVE_PHASE_FINDINGS, "Severe cardiomegaly."],
               ["3", "normal", "normal", "PA and lateral chest", "tuberculosis positive PPD", "", "",
                "Heart size is normal and the lungs are clear."]]
    projections = [["1", "1_IM-0001-4001.dcm.png", "Frontal"], ["1", "1_IM-0001-3001.dcm.png", "Lateral"],
                   ["2", "2_IM-0652-1001.dcm.png", "Frontal"], ["2", "2_IM-0652-2001.dcm.png", "Lateral"]]
    _write(root / "indiana_reports.csv", _csv_bytes(["uid", "MeSH", "Problems", "image", "indication", "comparison",
                                                     "findings", "impression"], reports))
    _write(root / "indiana_projections.csv", _csv_bytes(["uid", "filename", "projection"], projections))
    for i, (_, name, _) in enumerate(projections):
        _write(root / "images/images_normalized" / name, image_bytes(seed + i, "PNG"))
    return {"images": len(projections), "reports_without_images": 1}


def chexpert(folder: Path, train_csv_gz: Path, n_train: int, seed: int = 400) -> dict:
    """CheXpert-v1.0-small/: the real header and first `n_train` rows of train.csv, two valid.csv rows."""
    lines = gzip.decompress(train_csv_gz.read_bytes()).decode().splitlines()
    header, rows = lines[0], lines[1: n_train + 1]
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text("\n".join([header] + rows) + "\n")
    valid = ["CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,AP,"
             "0.0,1.0,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
             "CheXpert-v1.0-small/valid/patient64542/study1/view1_frontal.jpg,Male,70,Frontal,PA,"
             "1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0"]
    (folder / "valid.csv").write_text("\n".join([header] + valid) + "\n")
    for i, line in enumerate(rows + valid):
        _write(folder.parent / line.split(",", 1)[0], image_bytes(seed + i, "JPEG"))
    return {"train": len(rows), "valid": len(valid)}


def pmc_oa(root: Path, seed: int = 500) -> dict:
    lines = [{"image": "PMC212319_Fig3_4.jpg", "caption": "Axial CT of the abdomen showing a 3 cm liver lesion in "
              f"the right lobe, imaged on {PLANTED_TEXT['date']}.", "pmcid": "PMC212319", "url_name": "1471-2121-4-13-3.jpg"},
             {"image": "PMC212319_Fig3_5.jpg", "caption": "Coronal CT of the same patient.", "pmcid": "PMC212319",
              "url_name": "1471-2121-4-13-4.jpg"},
             {"image": "PMC555555_F1.jpg", "caption": "T2-weighted MRI of the brain with a large glioblastoma.",
              "pmcid": "PMC555555", "url_name": "x.jpg"}]
    (root / "images").mkdir(parents=True)
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines[:2]) + "{not json\n")
    (root / "valid.jsonl").write_text(json.dumps(lines[2]) + "\n")
    for i, r in enumerate(lines):
        _write(root / "images" / r["image"], image_bytes(seed + i, "JPEG"))
    return {"rows": 3, "malformed": 1}


def roco(root: Path, seed: int = 600) -> dict:
    """ROCO v1 under data/ and ROCOv2 CSVs beside it, in one root."""
    v1 = root / "data/validation/radiology"
    v1.mkdir(parents=True)
    (v1 / "captions.txt").write_text(
        "ROCO_00020\t Axial computed tomography scan of the pelvis showing a diffuse infiltration of the bladder wall.\n"
        "ROCO_00027\t Postoperative anteroposterior radiograph of the pelvis.\n"
        "ROCO_09999\t A caption whose image has no download link.\n")
    (v1 / "dlinks.txt").write_text(
        "ROCO_00020\twget -nd ftp://ftp.ncbi.nlm.nih.gov/pub/pmc/ab/cd/PMC3123456.tar.gz\tIJU-27-1-g001.jpg\n"
        "ROCO_00027\twget -nd ftp://ftp.ncbi.nlm.nih.gov/pub/pmc/ef/gh/PMC3222222.tar.gz\tfig2.jpg\n")
    _write(v1 / "images/PMC3123456_IJU-27-1-g001.jpg", image_bytes(seed, "JPEG"))
    _write(v1 / "images/PMC3222222_fig2.jpg", image_bytes(seed + 1, "JPEG"))
    (root / "train_captions.csv").write_text(
        "ID,Caption\nROCOv2_2023_train_000001,\"Head CT demonstrating left parietal intracranial hemorrhage.\"\n"
        "ROCOv2_2023_train_000002,MRI of the knee: ACL tear.\n")
    (root / "train_concepts.csv").write_text(
        "ID,CUIs\nROCOv2_2023_train_000001,C0040405;C0018670\nROCOv2_2023_train_000002,C0024485;C0022742\n")
    _write(root / "train/ROCOv2_2023_train_000001.jpg", image_bytes(seed + 2, "JPEG"))
    _write(root / "train/ROCOv2_2023_train_000002.jpg", image_bytes(seed + 3, "JPEG"))
    return {"v1": 2, "v2": 2, "malformed": 1}


def radimagenet(root: Path, seed: int = 700) -> dict:
    files = ["CT/abd/normal/abd000001.png", "CT/lung/interstitial_lung_disease/lung000123.png",
             "MR/knee/acl_tear/knee004321.png", "US/thyroid/thyroid_nodule/thyroid000042.png"]
    for i, f in enumerate(files):
        _write(root / f, image_bytes(seed + i, "PNG"))
    _write(root / "README.txt", b"notes")
    return {"images": len(files)}
