"""Each real-dataset adapter on a tiny replica written in the dataset's published layout (see
real_replicas.py), with real DICOM/NIfTI files from pydicom and nilearn where they fit."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

import real_replicas as rr
from radisim.evals.datasets import DatasetNotFoundError, load_examples
from radisim.evals.tasks import get_subtask, subtasks
from radisim.platform.data import imaging


def load(dataset: str, root, subtask_id: str, **options):
    return load_examples(dataset, root, get_subtask(subtask_id), **options)


def decoded(ex, i: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(ex.pool.images[ex.rows[i]])))


def test_every_subtask_dataset_has_an_adapter():
    from radisim.evals.datasets import adapter_names

    assert {t.dataset for t in subtasks()} <= set(adapter_names())


# ---------------------------------------------------------------------------------------- classification


def test_br35h_reads_yes_no_and_ignores_pred(tmp_path):
    ex = load("br35h", rr.br35h(tmp_path), "br35h")
    assert list(ex.y) == [0, 0, 1, 1, 1] and all(not i.startswith("pred") for i in ex.image_ids)


def test_kaggle_brain_tumor_binary_and_subtype_share_one_pool(tmp_path):
    root = rr.kaggle_brain_tumor(tmp_path)
    binary = load("kaggle_brain_tumor", root, "kaggle_brain_tumor")
    subtype = load("kaggle_brain_tumor", root, "kaggle_brain_tumor_subtype")
    assert binary.pool is subtype.pool and len(binary) == 8 and all(i.startswith("Testing/") for i in binary.image_ids)
    assert int(binary.y.sum()) == 6  # glioma, meningioma, pituitary x 2
    names = [subtype.classes[k] for k in subtype.y]
    assert names.count("pituitary adenoma") == 2 and names.count("no tumor") == 2
    assert len(load("kaggle_brain_tumor", root, "kaggle_brain_tumor", split="all")) == 16
    shutil.rmtree(root / "Testing" / "pituitary")
    with pytest.raises(DatasetNotFoundError, match=r"no images for \['pituitary adenoma'\]"):
        load("kaggle_brain_tumor", root, "kaggle_brain_tumor")


def test_pneumoniamnist_npz_splits(tmp_path):
    root = rr.pneumoniamnist(tmp_path)
    ex = load("pneumoniamnist", root, "pneumoniamnist")
    assert list(ex.y) == [0, 1, 0, 1, 0] and decoded(ex, 0).shape == (28, 28)
    with np.load(root / "pneumoniamnist.npz") as npz:
        assert (decoded(ex, 3) == npz["test_images"][3]).all()
    assert len(load("pneumoniamnist", root, "pneumoniamnist", split="val")) == 4
    with pytest.raises(TypeError):
        load("pneumoniamnist", root, "pneumoniamnist", spilt="val")  # unknown options are not ignored


def test_rsna_pneumonia_labels_per_patient_from_boxes(tmp_path):
    root = rr.rsna_pneumonia(tmp_path)
    ex = load("rsna_pneumonia", root, "rsna_pneumonia")
    assert ex.image_ids == ["p1", "p2", "p3"] and list(ex.y) == [1, 0, 0]
    expected, _ = imaging.read_dicom(rr.ct_small())  # CT_small through the shared reader
    assert (decoded(ex, 0) == expected).all()
    assert len(load("rsna_pneumonia", root, "rsna_pneumonia", max_images=2)) == 2
    (root / "stage_2_train_images" / "p3.dcm").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"stage_2_train_images/p3\.dcm"):
        load("rsna_pneumonia", root, "rsna_pneumonia")
    (root / "stage_2_train_labels.csv").write_text("patientId,x,y\np1,1,2\n")
    with pytest.raises(DatasetNotFoundError, match=r"columns \['Target'\] in stage_2_train_labels.csv"):
        load("rsna_pneumonia", root, "rsna_pneumonia")


def test_covid_ct_uses_the_published_split_files(tmp_path):
    root = rr.covid_ct(tmp_path)
    ex = load("covid_ct", root, "covid_ct")
    assert ex.image_ids == ["CT_NonCOVID/n2.jpg", "CT_COVID/c2.png", "CT_COVID/c3.png"] and list(ex.y) == [0, 1, 1]
    assert len(load("covid_ct", root, "covid_ct", split="all")) == 5


def test_ct_ich_slices_from_the_csv_with_the_brain_window(tmp_path):
    import nibabel as nib

    root = rr.ct_ich(tmp_path)
    ex = load("ct_ich", root, "ct_ich")
    assert len(ex) == 12
    positives = {i for i, y in zip(ex.image_ids, ex.y) if y == 1}
    assert positives == {"049/2", "049/3", "050/5"}
    raw = np.asarray(nib.load(str(root / "ct_scans" / "049.nii")).get_fdata(), np.float32)
    k = ex.image_ids.index("049/3")
    expected = imaging.to_uint8(imaging.window_ct(raw[:, :, 2].T[::-1, ::-1], "brain"))
    assert (decoded(ex, k) == expected).all()


def test_ct_lymph_nodes_derives_slices_near_and_far_from_nodes(tmp_path):
    import pydicom

    from radisim.evals.datasets.ct_diagnosis import _sorted_series

    root = rr.ct_lymph_nodes(tmp_path)
    files = sorted((root / "CT Lymph Nodes").rglob("*.dcm"))
    z = [float(pydicom.dcmread(str(f), stop_before_pixels=True).ImagePositionPatient[2]) for f in _sorted_series(files)]
    assert z == sorted(z)  # position order, not file name or InstanceNumber
    ex = load("ct_lymph_nodes", root, "ct_lymph_nodes")
    index = {i: int(i.split("/")[1]) for i in ex.image_ids}
    assert {index[i] for i, y in zip(ex.image_ids, ex.y) if y == 1} <= set(range(3, 8))
    assert min(index[i] for i, y in zip(ex.image_ids, ex.y) if y == 0) >= 15
    assert int(ex.y.sum()) == 4 and len(ex) == 8
    shutil.rmtree(root / "MED_ABD_LYMPH_ANNOTATIONS")
    with pytest.raises(DatasetNotFoundError, match="MED_ABD_LYMPH_ANNOTATIONS/<patient>/<patient>_lymphnodes_indices.txt"):
        load("ct_lymph_nodes", root, "ct_lymph_nodes")


def test_lits_from_its_own_release_label_2_is_tumour(tmp_path):
    """Slices come from LiTS's volumes and masks (label 2 = tumour), not a CSV the release does not have;
    a liver label alone (what MedIMeta's LiTS sets carry) never makes a tumour slice."""
    ex = load("lits", rr.lits(tmp_path), "lits")
    by_id = dict(zip(ex.image_ids, ex.y))
    assert {i for i, y in by_id.items() if y == 1} == {"volume-0/6", "volume-0/7", "volume-0/8"}
    assert all(i.startswith(("volume-0/", "volume-28/")) for i in by_id)
    assert sum(1 for i, y in by_id.items() if y == 0 and i.startswith("volume-28/")) == 4  # liver, no tumour
    assert sorted(set(ex.cases)) == ["volume-0", "volume-28"]  # the volume is the case
    assert set(load("lits", tmp_path, "lits", min_tumor_pixels=26).y) == {0}  # the 25-pixel tumour is too small
    (tmp_path / "Training Batch 2" / "segmentation-28.nii").unlink()
    with pytest.raises(DatasetNotFoundError, match="segmentation-28.nii next to"):
        load("lits", tmp_path, "lits")


def test_mrnet_planes_and_labels(tmp_path):
    root = rr.mrnet(tmp_path)
    acl = load("mrnet", root, "mrnet_acl")
    meniscus = load("mrnet", root, "mrnet_meniscus")
    assert acl.pool is meniscus.pool and len(acl) == 3 * 3 * 3  # 3 exams x 3 planes x 3 slices
    assert set(acl.metadata["view"]) == {"axial", "coronal", "sagittal"}
    assert set(acl.cases) == {"1130", "1131", "1132"} and set(acl.units) == {"valid/1130", "valid/1131", "valid/1132"}
    assert {e for e, y in zip(acl.metadata["exam"], acl.y) if y} == {"1130"}
    assert {e for e, y in zip(meniscus.metadata["exam"], meniscus.y) if y} == {"1131"}
    volume = np.load(root / "valid" / "sagittal" / "1131.npy")
    k = acl.image_ids.index("valid/sagittal/1131/2")
    assert (decoded(acl, k) == volume[2]).all()
    assert len(load("mrnet", root, "mrnet_acl", planes=["sagittal"], slices_per_plane=1)) == 3


def test_mrnet_is_scored_per_exam_as_the_mean_of_per_plane_probabilities(tmp_path):
    acl = load("mrnet", rr.mrnet(tmp_path), "mrnet_acl")
    scores = np.random.default_rng(0).random(len(acl))
    ids, y, cases, exam_scores = acl.unit_scores(scores)
    assert list(ids) == ["valid/1130", "valid/1131", "valid/1132"] and list(y) == [1, 0, 0]
    for exam, score in zip(cases, exam_scores):
        planes = [scores[(acl.cases == exam) & (acl.metadata["view"] == p)].mean() for p in ("axial", "coronal", "sagittal")]
        assert score == pytest.approx(np.mean(planes))


def test_labelled_csv_internal_sets_share_a_pool_and_skip_empty_cells(tmp_path):
    root = rr.labelled_csv(tmp_path)
    subtype = load("internal_lung_adeno", root, "internal_lung_adeno_subtype")
    grade = load("internal_lung_adeno", root, "internal_lung_adeno_grade")
    assert subtype.pool is grade.pool and len(subtype) == 4
    assert [subtype.classes[k] for k in subtype.y] == ["invasive adenocarcinoma", "adenocarcinoma in situ",
                                                       "minimally invasive adenocarcinoma", "invasive adenocarcinoma"]
    assert [grade.classes[k] for k in grade.y] == ["grade 2", "grade 3"]  # "G2", "3"
    assert decoded(subtype, 0).shape == (128, 128)  # the DICOM row went through imaging.read_dicom
    (root / "labels.csv").write_text("path,subtype\nscans/p02.png,squamous\n")
    with pytest.raises(DatasetNotFoundError, match=r"'squamous' in row 1"):
        load("internal_lung_adeno", root, "internal_lung_adeno_subtype")


def test_labelled_class_folders_and_nifti_images(tmp_path):
    import nibabel as nib
    from nilearn.datasets import load_mni152_template

    for k, folder in enumerate(("WHO grade 1", "WHO grade 2", "WHO grade 3")):
        rr.png(tmp_path / "folders" / folder / "a.png", np.full((8, 8), 10 * k, np.uint8))
    ex = load("internal_meningioma", tmp_path / "folders", "internal_meningioma_grade")
    assert list(ex.y) == [0, 1, 2]
    mni = tmp_path / "csv" / "mni.nii.gz"
    mni.parent.mkdir()
    nib.save(load_mni152_template(), str(mni))
    (tmp_path / "csv" / "labels.csv").write_text("path,grade\nmni.nii.gz,WHO grade II\n")
    ex = load("internal_meningioma", tmp_path / "csv", "internal_meningioma_grade")
    assert list(ex.y) == [1] and decoded(ex, 0).shape == (233, 197)  # central axial slice of the real template


# ------------------------------------------------------------------------------------------ segmentation


def regions_by_organ(ex, view: str = "axial") -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for q, y, v in zip(ex.queries, ex.y, ex.metadata["view"]):
        if v == view:
            out.setdefault(str(q), set()).add(ex.classes[y])
    return out


def test_chaos_ct_and_mr_from_dicom_and_ground_pngs(tmp_path):
    root = rr.chaos(tmp_path)
    ct = load("chaos_ct", root, "chaos_ct", slices_per_case=3)
    assert len(ct) == 3 and regions_by_organ(ct) == {"liver": {"upper left"}}
    organs = load("chaos_mr", root, "chaos_mr_organs", slices_per_case=3)
    assert len(organs) == 6 and organs.y.tolist() == [[1, 1, 1]] * 6  # T2SPIR + T1DUAL in-phase
    loc = load("chaos_mr", root, "chaos_mr", slices_per_case=3)
    assert loc.pool is organs.pool
    assert regions_by_organ(loc) == {"liver": {"upper left"}, "spleen": {"upper right"}, "left kidney": {"lower right"}}
    expected, _ = imaging.read_dicom(rr.mr_small())
    assert (decoded(loc, 0) == expected).all()
    (root / "Train_Sets" / "CT" / "1" / "Ground" / "liver_GT_000.png").unlink()
    with pytest.raises(DatasetNotFoundError, match="found 8 slices and 7 masks"):
        load("chaos_ct", root, "chaos_ct")


def test_amos_labels_from_dataset_json_ct_cases_only(tmp_path):
    root = rr.amos(tmp_path)
    ex = load("amos", root, "amos")
    assert set(ex.metadata["case"]) == {"amos_0001", "amos_0005"}  # amos_0540 is MR
    assert regions_by_organ(ex) == {"liver": {"upper left"}, "spleen": {"upper right"}, "left kidney": {"lower right"}}
    assert {i.split("/")[1] for i in ex.pool.image_ids} == {"axial", "coronal", "sagittal"}
    # the organs span z 3-13 of 16 slices: in coronal and sagittal slices their centroid sits on the
    # upper/lower dividing line, so those slices are not asked about (the margin rule)
    assert set(ex.metadata["view"]) == {"axial"}


def test_totalseg_views_organs_and_split(tmp_path):
    root = rr.totalseg(tmp_path)
    views = load("totalseg", root, "ct_view")
    organs = load("totalseg", root, "totalseg_ct_organs")
    loc = load("totalseg", root, "totalseg")
    assert views.pool is organs.pool is loc.pool and len(views) == 2 * 3 * 3
    assert np.bincount(views.y).tolist() == [6, 6, 6]
    present = dict(zip(organs.classes, organs.y.max(0)))
    assert present == {"liver": 1, "spleen": 1, "kidneys": 1, "stomach": 0, "bladder": 0, "spine": 0, "lungs": 0,
                       "heart": 0, "aorta": 0}
    assert regions_by_organ(loc) == {"liver": {"upper left"}, "spleen": {"upper right"}, "left kidney": {"lower right"}}
    coronal = [i for i, v in enumerate(views.metadata["view"]) if v == "coronal"]
    assert decoded(views, coronal[0]).shape == (32, 32)  # 16 slices of 2 mm shown at square pixels
    assert set(load("totalseg", root, "ct_view", split="test").metadata["case"]) == {"s0002"}


def test_ctorg_label_ids_with_the_real_mni_template(tmp_path):
    """CT-ORG labels both kidneys as one structure (4) and the bladder (2) on the midline: localization
    asks about each kidney by its side and never about the bladder or the brain (midline organs)."""
    ex = load("ctorg", rr.ctorg(tmp_path, with_mni=True), "ctorg")
    assert set(ex.queries) == {"liver", "left kidney", "right kidney"}
    regions = regions_by_organ(ex)
    assert regions["liver"] == {"upper left"}
    assert regions["left kidney"] == {"lower right"} and regions["right kidney"] == {"lower left"}  # viewer's sides
    sagittal_brain = [i for i, image_id in enumerate(ex.pool.image_ids) if image_id.startswith("volume-1/sagittal/")]
    image = np.asarray(Image.open(io.BytesIO(ex.pool.images[sagittal_brain[0]])))
    assert image.shape == (189, 233)  # MNI152: 233 (A-P) x 189 (S-I) at 1 mm


def test_flipping_the_affine_mirrors_the_localization_labels(tmp_path):
    """The same voxels with the affine's x axis reversed show the mirrored patient: every left organ
    becomes the right one and every quadrant swaps left and right."""
    mirror = lambda text: text.replace("left", "@").replace("right", "left").replace("@", "right")  # noqa: E731
    plain = load("ctorg", rr.ctorg(tmp_path / "plain"), "ctorg")
    flipped = load("ctorg", rr.ctorg(tmp_path / "flipped", flip_x=True), "ctorg")
    labels = lambda ex: sorted((str(q), v, ex.classes[y]) for q, y, v in zip(ex.queries, ex.y, ex.metadata["view"]))  # noqa: E731
    assert labels(flipped) == sorted((mirror(q), v, mirror(c)) for q, v, c in labels(plain))
    assert {q for q, _, _ in labels(plain)} == {"liver", "left kidney", "right kidney"}


def test_split_sides_uses_components_and_the_patient_midline():
    from radisim.evals.datasets.common import split_sides

    mask = np.zeros((20, 6, 6), bool)
    mask[2:6, 1:4, 1:4] = True      # patient's left (low x)
    mask[14:19, 1:4, 1:4] = True    # patient's right
    left, right = split_sides(mask, midline=10.0)
    assert np.array_equal(left, mask & (np.arange(20) < 10)[:, None, None])
    assert np.array_equal(right, mask & (np.arange(20) >= 10)[:, None, None])
    one = np.zeros_like(mask)
    one[14:19, 1:4, 1:4] = True     # a single kidney keeps its side
    assert np.array_equal(split_sides(one, midline=10.0)[1], one)
    fused = np.zeros_like(mask)
    fused[4:17, 1:4, 1:4] = True    # one structure across the midline: cut at it
    left, right = split_sides(fused, midline=10.0)
    assert np.array_equal(left | right, fused) and not (left & right).any()
    assert np.nonzero(left)[0].max() == 10 and np.nonzero(right)[0].min() == 11


# ------------------------------------------------------------------------------------------ missing roots


@pytest.mark.parametrize("dataset, subtask_id, expected", [
    ("br35h", "br35h", "class 'no tumor' in no/"),
    ("kaggle_brain_tumor", "kaggle_brain_tumor", r"Testing/\{glioma,meningioma,pituitary,notumor\}/\*\.jpg"),
    ("pneumoniamnist", "pneumoniamnist", r"pneumoniamnist\.npz \(MedMNIST\)"),
    ("rsna_pneumonia", "rsna_pneumonia", r"stage_2_train_labels\.csv \(patientId,x,y,width,height,Target\)"),
    ("covid_ct", "covid_ct", "Images-processed/CT_NonCOVID/"),
    ("ct_ich", "ct_ich", r"hemorrhage_diagnosis_raw_ct\.csv"),
    ("ct_lymph_nodes", "ct_lymph_nodes", "MED_ABD_LYMPH_ANNOTATIONS"),
    ("lits", "lits", r"volume-N\.nii with segmentation-N\.nii"),
    ("mrnet", "mrnet_acl", r"valid-acl\.csv"),
    ("chaos_ct", "chaos_ct", "Train_Sets/CT/<case>/"),
    ("chaos_mr", "chaos_mr_organs", "Train_Sets/MR/<case>/"),
    ("amos", "amos", r"imagesTr/amos_\*\.nii\.gz"),
    ("totalseg", "totalseg", r"sNNNN/ct\.nii\.gz"),
    ("ctorg", "ctorg", r"volume-N\.nii\.gz"),
    ("internal_lung_adeno", "internal_lung_adeno_grade", r"labels\.csv \(image path \+ label columns\)"),
])
def test_missing_dataset_says_what_was_expected_where(tmp_path, dataset, subtask_id, expected):
    with pytest.raises(DatasetNotFoundError, match=f"dataset '{dataset}': expected .*{expected}.* under .*"):
        load(dataset, tmp_path / "empty", subtask_id)


def test_internal_adenocarcinoma_uses_the_lung_window_the_lesion_slice_and_salted_ids(tmp_path):
    """A ground-glass nodule (-600 HU) in slice 2 of an 8-slice CT: the lung window shows it, the
    soft-tissue window (W400/L40) clips it to black; the lesion slice comes from `lesion_slice` or the
    `mask`; file names and patient numbers leave the adapter only as salted keys."""
    from radisim.evals.datasets.common import image_file_bytes

    volume = np.full((24, 24, 8), 40.0, np.float32)    # chest wall (soft tissue)
    volume[0:2] = 700.0                                # a rib (bone): the volume reads as CT
    volume[3:21, 3:21, :] = -850.0                     # aerated lung
    volume[8:14, 8:14, 2] = -600.0                     # ground-glass opacity, slice 2 only
    mask = np.zeros(volume.shape, np.uint8)
    mask[8:14, 8:14, 2] = 1
    rr.nifti(tmp_path / "scans" / "MRN1234_ct.nii.gz", volume)
    rr.nifti(tmp_path / "scans" / "MRN1234_mask.nii.gz", mask)
    rows = ["path,patient_id,subtype,lesion_slice,mask",
            "scans/MRN1234_ct.nii.gz,MRN1234,adenocarcinoma in situ,2,",
            "scans/MRN1234_ct.nii.gz,MRN1234,invasive adenocarcinoma,,scans/MRN1234_mask.nii.gz"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ex = load("internal_lung_adeno", tmp_path, "internal_lung_adeno_subtype")
    scan = tmp_path / "scans" / "MRN1234_ct.nii.gz"
    for k in range(2):
        assert ex.pool.images[k] == image_file_bytes(scan, window="lung", slice_index=2)
        nodule = decoded(ex, k)[10:16, 10:16]  # displayed: rows = flipped y, cols = flipped x (24 - 1 - 13 .. 24 - 1 - 8)
        assert nodule.min() > 40  # visible in the lung window
    soft = np.asarray(Image.open(io.BytesIO(image_file_bytes(scan, slice_index=2))))
    assert soft[10:16, 10:16].max() == 0  # the soft-tissue window hides it in the black of the lung
    assert image_file_bytes(scan, window="lung") != ex.pool.images[0]  # the central slice (4) misses it
    assert len(set(ex.cases)) == 1 and all(str(c).startswith("case-") for c in ex.cases)
    assert not any("MRN1234" in s for s in [*ex.pool.image_ids, *map(str, ex.cases)])
