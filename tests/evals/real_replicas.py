"""Tiny replicas of the public evaluation datasets, written in their published layouts with the real
formats (pydicom, nibabel, numpy .npz/.npy, PNG/JPEG, CSV). Where a real file ships in a package it
is used: pydicom's CT_small.dcm / MR_small.dcm as DICOM slices, nilearn's MNI152 template as a volume.

Organ volumes are RAS (identity affine, 2 mm voxels along z): the patient's right is +x, anterior +y,
superior +z; displayed radiologically, +x is on the viewer's left and +y / +z at the top.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SHAPE = (32, 32, 16)
#: Box of each organ (x, y, z ranges) in the RAS volume, and its quadrant in axial slices.
ORGANS = {
    "liver": ((18, 30), (18, 30), (3, 13), "upper left"),    # patient's right, anterior
    "spleen": ((2, 12), (18, 30), (3, 13), "upper right"),   # patient's left, anterior
    "kidney": ((2, 12), (2, 12), (3, 13), "lower right"),    # patient's left, posterior
    "right kidney": ((20, 30), (2, 12), (3, 13), "lower left"),  # patient's right, posterior
    "bladder": ((13, 18), (8, 14), (3, 13), "midline"),     # on the midline (x 15.5): never asked about
}


def ct_small() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


def mr_small() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("MR_small.dcm"))


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def jpg(path: Path, value: int, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).convert("RGB").save(path, format="JPEG")
    return path


def nifti(path: Path, volume: np.ndarray, zooms=(1.0, 1.0, 2.0), affine: np.ndarray | None = None) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(volume), np.diag([*zooms, 1.0]) if affine is None else affine), str(path))
    return path


def organ_volumes(labels: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(CT volume in HU, label map) with the ORGANS boxes, organ -> label id as given."""
    ct = np.full(SHAPE, -900.0, np.float32)
    ct[4:28, 4:28, :] = 0.0
    lab = np.zeros(SHAPE, np.int16)
    for organ, label_id in labels.items():
        (x0, x1), (y0, y1), (z0, z1), _ = ORGANS[organ]
        lab[x0:x1, y0:y1, z0:z1] = label_id
        ct[x0:x1, y0:y1, z0:z1] = 60.0 + 10 * label_id
    return ct, lab


# ------------------------------------------------------------------------------------- classification


def br35h(root: Path) -> Path:
    for folder, n in (("no", 2), ("yes", 3)):
        for i in range(n):
            jpg(root / folder / f"{folder}{i}.jpg", 10 * i + len(folder))
    jpg(root / "pred" / "pred0.jpg", 99)  # unlabelled: ignored
    return root


def kaggle_brain_tumor(root: Path) -> Path:
    for split in ("Training", "Testing"):
        for k, folder in enumerate(("glioma", "meningioma", "pituitary", "notumor")):
            for i in range(2):
                jpg(root / split / folder / f"Te-{folder[:2]}_{i}.jpg", 100 * k + i + (split == "Testing"))
    return root


def pneumoniamnist(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 4), ("test", 5)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez_compressed(root / "pneumoniamnist.npz", **arrays)
    return root


def rsna_pneumonia(root: Path) -> Path:
    """3 patients: p1 two boxes (pneumonia), p2 none, p3 none; the real CT_small/MR_small as pixels."""
    (root / "stage_2_train_images").mkdir(parents=True, exist_ok=True)
    rows = ["patientId,x,y,width,height,Target", "p1,10,20,30,40,1", "p1,50,20,30,40,1", "p2,,,,,0", "p3,,,,,0"]
    (root / "stage_2_train_labels.csv").write_text("\n".join(rows) + "\n")
    for pid, src in (("p1", ct_small()), ("p2", mr_small()), ("p3", ct_small())):
        shutil.copy(src, root / "stage_2_train_images" / f"{pid}.dcm")
    return root


def covid_ct(root: Path) -> Path:
    for folder, split_dir, names in (("CT_COVID", "COVID", ["c1.png", "c2.png", "c3.png"]),
                                     ("CT_NonCOVID", "NonCOVID", ["n1.jpg", "n2.jpg"])):
        for i, name in enumerate(names):
            if name.endswith(".png"):
                png(root / "Images-processed" / folder / name, np.full((20, 24), 30 * i, np.uint8))
            else:
                jpg(root / "Images-processed" / folder / name, i)
        split = root / "Data-split" / split_dir
        split.mkdir(parents=True, exist_ok=True)
        (split / f"trainCT_{split_dir}.txt").write_text("\n".join(names[:1]) + "\n")
        (split / f"valCT_{split_dir}.txt").write_text("")
        (split / f"testCT_{split_dir}.txt").write_text("\n".join(names[1:]) + "\n")
    return root


def ct_ich(root: Path) -> Path:
    """Patients 49 and 50, 6 axial slices each; the csv marks slices 2, 3 of 49 and 5 of 50 bleeding."""
    rng = np.random.default_rng(1)
    for patient in (49, 50):
        nifti(root / "ct_scans" / f"{patient:03d}.nii", rng.normal(40, 20, (24, 24, 6)).astype(np.float32), (1, 1, 5))
        nifti(root / "masks" / f"{patient:03d}.nii", np.zeros((24, 24, 6), np.uint8), (1, 1, 5))
    rows = ["PatientNumber,SliceNumber,Intraventricular,Intraparenchymal,Subarachnoid,Epidural,Subdural,No_Hemorrhage,Fracture_Yes_No"]
    for patient, bleeding in ((49, {2, 3}), (50, {5})):
        for s in range(1, 7):
            rows.append(f"{patient},{s},0,{int(s in bleeding)},0,0,0,{int(s not in bleeding)},0")
    (root / "hemorrhage_diagnosis_raw_ct.csv").write_text("\n".join(rows) + "\n")
    return root


def ct_lymph_nodes(root: Path, n_slices: int = 30) -> Path:
    """One abdominal patient: a 30-slice series made from CT_small.dcm (shuffled file names, real
    positions), one node centred on slice 5 (in position order)."""
    import pydicom

    series = root / "CT Lymph Nodes" / "ABD_LYMPH_001" / "09-14-2014-ABDLYMPH001-30274" / "abdominallymphnodes-26828"
    series.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(2).permutation(n_slices)
    for i in range(n_slices):
        ds = pydicom.dcmread(str(ct_small()))
        ds.ImagePositionPatient = [-158.0, -179.0, -100.0 + 2.0 * i]
        ds.InstanceNumber = n_slices - i  # deliberately reversed: position decides
        ds.PixelData = (ds.pixel_array + np.int16(i)).astype(np.int16).tobytes()
        ds.save_as(str(series / f"1-{order[i]:03d}.dcm"))
    ann = root / "MED_ABD_LYMPH_ANNOTATIONS" / "ABD_LYMPH_001"
    ann.mkdir(parents=True, exist_ok=True)
    (ann / "ABD_LYMPH_001_lymphnodes_indices.txt").write_text("60 70 5\n")
    return root


def lits(root: Path) -> Path:
    """The LiTS release (Bilic et al.; CodaLab competition 17094, as e.g. kaiko-ai/eva documents it):
    `Training Batch 1/volume-0.nii` + `segmentation-0.nii`, `Training Batch 2/volume-28.nii` + ...,
    uncompressed NIfTI, labels 0 background, 1 liver, 2 tumour. Volume 0 has a tumour in axial slices
    6-8 inside the liver (slices 3-12); volume 28 has a liver and no tumour."""
    ct, lab = organ_volumes({"liver": 1})
    for batch, n, tumour in (("Training Batch 1", 0, True), ("Training Batch 2", 28, False)):
        seg = lab.copy()
        if tumour:
            seg[22:27, 22:27, 6:9] = 2
        nifti(root / batch / f"volume-{n}.nii", ct + (30.0 * (seg == 2)))
        nifti(root / batch / f"segmentation-{n}.nii", seg.astype(np.uint8))
    return root


def mrnet(root: Path, split: str = "valid") -> Path:
    rng = np.random.default_rng(3)
    exams = ["1130", "1131", "1132"]
    for plane in ("axial", "coronal", "sagittal"):
        (root / split / plane).mkdir(parents=True, exist_ok=True)
        for e in exams:
            np.save(root / split / plane / f"{e}.npy", rng.integers(0, 255, (5, 32, 32), dtype=np.uint8))
    for task, labels in (("abnormal", [1, 1, 0]), ("acl", [1, 0, 0]), ("meniscus", [0, 1, 0])):
        (root / f"{split}-{task}.csv").write_text("".join(f"{e},{y}\n" for e, y in zip(exams, labels)))
    return root


def labelled_csv(root: Path) -> Path:
    """Lung adenocarcinoma set: a CSV of DICOM/PNG paths with subtype and grade (grade empty for AIS/MIA)."""
    (root / "scans").mkdir(parents=True, exist_ok=True)
    shutil.copy(ct_small(), root / "scans" / "p01.dcm")
    png(root / "scans" / "p02.png", np.full((16, 16), 50, np.uint8))
    png(root / "scans" / "p03.png", np.full((16, 16), 90, np.uint8))
    png(root / "scans" / "p04.png", np.full((16, 16), 120, np.uint8))
    rows = ["path,subtype,grade",
            "scans/p01.dcm,invasive adenocarcinoma,G2",
            "scans/p02.png,Adenocarcinoma in situ,",
            "scans/p03.png,minimally invasive adenocarcinoma,",
            "scans/p04.png,invasive adenocarcinoma,3"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


# --------------------------------------------------------------------------------------- segmentation


def chaos(root: Path, n_slices: int = 8) -> Path:
    """CT case 1 (CT_small slices, liver mask on the viewer's left half, top) and MR case 2 (MR_small
    slices, T2SPIR and T1DUAL InPhase/OutPhase; grey-level masks: liver left, spleen right)."""
    ct = root / "Train_Sets" / "CT" / "1"
    for i in range(n_slices):
        (ct / "DICOM_anon").mkdir(parents=True, exist_ok=True)
        shutil.copy(ct_small(), ct / "DICOM_anon" / f"i{i:04d},0000b.dcm")
        mask = np.zeros((128, 128), np.uint8)
        mask[10:60, 5:60] = 255
        png(ct / "Ground" / f"liver_GT_{i:03d}.png", mask)
    mr = root / "Train_Sets" / "MR" / "2"
    for sequence, dicom_dirs in (("T2SPIR", ["DICOM_anon"]), ("T1DUAL", ["DICOM_anon/InPhase", "DICOM_anon/OutPhase"])):
        for i in range(n_slices):
            for d in dicom_dirs:
                (mr / sequence / d).mkdir(parents=True, exist_ok=True)
                shutil.copy(mr_small(), mr / sequence / d / f"IMG-0002-{i:05d}.dcm")
            mask = np.zeros((64, 64), np.uint8)
            mask[4:28, 4:28] = 63      # liver: upper left
            mask[4:28, 40:60] = 252    # spleen: upper right
            mask[40:60, 44:60] = 189   # left kidney: lower right
            png(mr / sequence / "Ground" / f"IMG-0002-{i:05d}.png", mask)
    return root


def amos(root: Path) -> Path:
    labels = {"0": "background", "1": "spleen", "2": "right kidney", "3": "left kidney", "4": "gall bladder",
              "5": "esophagus", "6": "liver", "7": "stomach", "8": "arota", "14": "bladder"}
    (root).mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"name": "AMOS", "labels": labels}))
    ct, lab = organ_volumes({"liver": 6, "spleen": 1, "kidney": 3})
    for case in ("amos_0001", "amos_0005"):
        nifti(root / "imagesTr" / f"{case}.nii.gz", ct)
        nifti(root / "labelsTr" / f"{case}.nii.gz", lab)
    nifti(root / "imagesTr" / "amos_0540.nii.gz", ct)   # an MR case: excluded from the CT subtask
    nifti(root / "labelsTr" / "amos_0540.nii.gz", lab)
    return root


def totalseg(root: Path) -> Path:
    ct, lab = organ_volumes({"liver": 1, "spleen": 2, "kidney": 3})
    for case in ("s0001", "s0002"):
        nifti(root / case / "ct.nii.gz", ct)
        nifti(root / case / "segmentations" / "liver.nii.gz", (lab == 1).astype(np.uint8))
        nifti(root / case / "segmentations" / "spleen.nii.gz", (lab == 2).astype(np.uint8))
        nifti(root / case / "segmentations" / "kidney_left.nii.gz", (lab == 3).astype(np.uint8))
        nifti(root / case / "segmentations" / "gallbladder.nii.gz", np.zeros(SHAPE, np.uint8))  # unused structure
    (root / "meta.csv").write_text("image_id;age;gender;split\ns0001;60;m;train\ns0002;70;f;test\n")
    return root


def ctorg(root: Path, with_mni: bool = False, flip_x: bool = False) -> Path:
    """CT-ORG's joint labels: 4 = both kidneys (two boxes, one per side), 2 = the bladder (midline).
    `flip_x` stores the same array with the first axis running to the patient's LEFT (affine x -1):
    the same pixels then show the mirrored patient."""
    ct, lab = organ_volumes({"liver": 1, "kidney": 4, "right kidney": 4, "bladder": 2})
    affine = np.diag([-1.0 if flip_x else 1.0, 1.0, 2.0, 1.0])
    nifti(root / "OrganSegmentations" / "volume-0.nii.gz", ct, affine=affine)
    nifti(root / "OrganSegmentations" / "labels-0.nii.gz", lab, affine=affine)
    if with_mni:  # the real MNI152 T1 template as a head volume, its brain (template > 0) as label 6
        import nibabel as nib
        from nilearn.datasets import load_mni152_template

        mni = load_mni152_template()
        data = np.asarray(mni.get_fdata(), np.float32)
        nib.save(nib.Nifti1Image(data, mni.affine), str(root / "OrganSegmentations" / "volume-1.nii.gz"))
        nib.save(nib.Nifti1Image((data > 0.2 * data.max()).astype(np.uint8) * 6, mni.affine),
                 str(root / "OrganSegmentations" / "labels-1.nii.gz"))
    return root
